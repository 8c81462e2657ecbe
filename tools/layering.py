"""The layering rule of `stages/lib`: no package imports a package that imports it back, and a stage that trains a
model never runs evaluation, gate or reporting code (so mending a metric or a report re-runs evaluation and what
follows, never training).

    python -m tools.layering     # print every violation (exit 1 if any)"""

from __future__ import annotations

import sys
from pathlib import Path

from tools.stage_deps import ROOT, import_closure, imported_modules, module_file, stage_modules

# Stages that fit models; their cached outputs must not depend on how results are judged or shown.
TRAINING_STAGES = ("xgb", "finetune", "train_final", "train_final_transformer")
# What judges and shows results: whole packages, or single modules of a package.
LATE = ("stages/lib/gate/", "stages/lib/reporting/", "stages/lib/scoring/evaluation.py",
        "stages/lib/scoring/metrics.py")


def package_of(path: Path, root: Path = ROOT) -> str | None:
    """The `stages/lib` package a file belongs to (None outside it, or for `stages/lib/__init__.py`)."""
    parts = path.relative_to(root).parts
    return parts[2] if len(parts) > 3 and parts[:2] == ("stages", "lib") else None


def package_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Package → the other `stages/lib` packages its modules import."""
    graph: dict[str, set[str]] = {}
    for path in sorted((root / "stages" / "lib").rglob("*.py")):
        source = package_of(path, root)
        if source is None:
            continue
        for name in imported_modules(path):
            found = module_file(name, root)
            target = None if found is None else package_of(found, root)
            if target is not None and target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def package_cycles(root: Path = ROOT) -> list[tuple[str, str]]:
    """Every pair of packages that reach each other through imports."""
    graph = package_graph(root)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reached = {name: reach(name) for name in graph}
    return sorted({tuple(sorted((a, b))) for a in graph for b in reached[a] if a != b and a in reached.get(b, ())})


def late_imports(module: str, root: Path = ROOT) -> list[str]:
    """The evaluation, gate and reporting files in a module's import closure."""
    entry = module_file(module, root)
    if entry is None:
        raise ValueError(f"{module}: not a module of this repository")
    files = sorted(p.relative_to(root).as_posix() for p in import_closure(entry, root))
    return [f for f in files if any(f == late or f.startswith(late) for late in LATE)]


def violations(root: Path = ROOT) -> list[str]:
    """One line per broken rule, for the stages in `root`'s dvc.yaml."""
    out = [f"packages {a} and {b} import each other" for a, b in package_cycles(root)]
    for stage, (module, _) in stage_modules(root / "dvc.yaml").items():
        if stage in TRAINING_STAGES:
            out += [f"stage {stage} ({module}) runs {f}" for f in late_imports(module, root)]
    return out


def main() -> None:
    found = violations()
    print("\n".join(found) or "layering: no package cycle; no training stage runs evaluation, gate or reporting code")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
