"""Code dependencies of the DVC stages, computed from imports: each stage's entry module and every project
module it reaches (imports inside functions included, with their packages' `__init__`).

    python -m tools.stage_deps           # list what each stage in dvc.yaml misses (exit 1 if any)
    python -m tools.stage_deps --write   # rewrite the code deps in dvc.yaml to the computed closure

`tests/test_dag.py` fails when `dvc.yaml` misses a module, so `dvc repro` can never call cached evidence
current after a change to code it ran."""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CODE_DEP = re.compile(r"^\s+- (stages|tools)/\S+\.py\s*$")


def module_file(name: str, root: Path = ROOT, packages: tuple[str, ...] = ("stages",)) -> Path | None:
    """The file of a project module (in `packages`, default `stages.…`), or None for a third-party one."""
    if name.split(".")[0] not in packages:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement anywhere in the file names (`from a import b` also tries `a.b`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_closure(entry: Path, root: Path = ROOT) -> set[Path]:
    """The entry file and every project file it reaches through imports (importing a.b.c runs a/__init__
    and a/b/__init__ too)."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:depth]), root)
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def stage_modules(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, tuple[str, list[str]]]:
    """Stage name → (entry module of its `python -m` command, declared deps) for every stage in dvc.yaml."""
    dag = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))
    out = {}
    for name, body in dag["stages"].items():
        body = body.get("do", body)
        module = body["cmd"].split("python -m ", 1)[1].split()[0]
        out[name] = (module, [str(d) for d in body.get("deps", [])])
    return out


def closure_deps(module: str, root: Path = ROOT) -> list[str]:
    """The sorted repository-relative files a stage's entry module runs."""
    entry = module_file(module, root)
    if entry is None:
        raise SystemExit(f"dvc.yaml: {module} is not a module of this repository")
    return sorted(p.relative_to(root).as_posix() for p in import_closure(entry, root))


def missing_deps(module: str, deps: list[str], root: Path = ROOT) -> list[str]:
    """Files the stage runs that no declared dep (a file, or a folder holding it) covers."""
    declared = [d.rstrip("/") for d in deps]
    return [f for f in closure_deps(module, root) if not any(f == d or f.startswith(d + "/") for d in declared)]


def rewrite(text: str, stages: dict[str, tuple[str, list[str]]], root: Path = ROOT) -> str:
    """dvc.yaml with each stage's listed `stages/…py` deps replaced by its computed closure (data deps kept)."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stage, in_deps = None, False
    for line in lines:
        header = re.match(r"^  (\w+):\s*$", line)
        if header and header.group(1) in stages:
            stage, in_deps = header.group(1), False
        deps = re.match(r"^(\s+)deps:( &\w+)?\s*$", line)
        if deps and stage:
            out.append(line)
            indent = deps.group(1) + "  "
            out.extend(f"{indent}- {f}\n" for f in closure_deps(stages[stage][0], root))
            in_deps = True
            continue
        if in_deps and CODE_DEP.match(line):
            continue
        if in_deps and not re.match(r"^\s+- ", line):
            in_deps = False
        out.append(line)
    return "".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    args = parser.parse_args(argv)
    path = ROOT / "dvc.yaml"
    stages = stage_modules(path)
    if args.write:
        path.write_text(rewrite(path.read_text(encoding="utf-8"), stages), encoding="utf-8")
        stages = stage_modules(path)
    gaps = {name: missing_deps(module, deps) for name, (module, deps) in stages.items()}
    for name, files in gaps.items():
        if files:
            print(f"{name}: misses {', '.join(files)}")
    sys.exit(1 if any(gaps.values()) else 0)


if __name__ == "__main__":
    main()
