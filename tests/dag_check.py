"""`dvc.yaml` against what the stages did: the records `tests/dag_audit` wrote during a `dvc repro`, matched to
the stage instances of the project's `dvc.lock` by the `$DVC_STAGE` DVC gives each stage command. Reads and
param accesses in worker processes a stage spawns (loky) are not recorded."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml


def _covered(path: str, declared: list[str], sep: str) -> bool:
    return any(path == d or path.startswith(d.rstrip(sep) + sep) for d in declared)


def _stage_argv(cmd: str) -> tuple[str, ...]:
    words = shlex.split(cmd)
    return tuple(words[words.index("-m") + 1:])


def selection_params(dvc_yaml: dict[str, Any], stage: str) -> list[str]:
    """The params a matrix stage is expanded over (`${finetune.arms}`, …): read to check the command line's
    selection, they must not be declared (adding a fold would re-run every other fold)."""
    matrix = dvc_yaml["stages"][stage.split("@")[0]].get("matrix", {})
    return [v[2:-1] for v in matrix.values() if isinstance(v, str) and v.startswith("${")]


def undeclared(project: Path, audit: Path) -> list[str]:
    """Every read, write or param access of a stage process that its `dvc.lock` entry does not declare."""
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    dag = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(audit.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        by_stage.setdefault(record.get("stage") or " ".join(record["argv"]), []).append(record)
    problems = []
    for stage, entry in lock.items():
        records = by_stage.get(stage, [])
        if not records or any(tuple(r["argv"]) != _stage_argv(entry["cmd"]) for r in records):
            problems.append(f"{stage}: no audited process ran its command `{entry['cmd']}`")
        deps = [d["path"] for d in entry.get("deps", [])]
        outs = [o["path"] for o in entry.get("outs", [])]
        params = [*entry.get("params", {}).get("params.yaml", {}), *selection_params(dag, stage)]
        for record in records:
            problems += [f"{stage} reads {p}, not among its deps" for p in record["read"]
                         if not _covered(p, deps + outs, "/")]
            problems += [f"{stage} writes {p}, not among its outs" for p in record["written"]
                         if not _covered(p, outs, "/")]
            problems += [f"{stage} reads param {p}, not among its params" for p in record["params"]
                         if not _covered(p, params, ".")]
    problems += [f"a stage process ran as {name!r}, which dvc.lock does not list" for name in by_stage
                 if name not in lock]
    return sorted(set(problems))
