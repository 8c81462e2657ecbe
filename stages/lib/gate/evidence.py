"""Where each arm's evidence lives, read with "not run" as an explicit answer rather than an error:
evaluate's metrics file, the training stage's metadata, and the lock file's output hashes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stages.lib.core.io import read_json_object
from stages.lib.core.paths import LOCK, metrics_path, training_path


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at `path`, or None when the file is absent; an `InputError` when it is malformed."""
    return read_json_object(path) if path.is_file() else None


def read_required_json(path: Path, produced_by: str) -> dict[str, Any]:
    return read_json_object(path, produced_by)


def load_arm_files(arms: list[str], schemes: list[str]) -> dict[str, dict[str, Any] | None]:
    """`{"<arm>_<scheme>": evaluate's metrics, or None when not run}` for every pair."""
    return {f"{a}_{s}": read_json(metrics_path(a, s)) for a in arms for s in schemes}


TrainingRuns = dict[int, dict[str, Any] | None]  # training seed -> its training record (None: not run)


def load_training(arms: list[str], schemes: list[str], seeds: dict[str, list[int]]) -> dict[str, TrainingRuns]:
    """`{"<arm>_<scheme>": {seed: training record or None}}` for every pair and every selected seed."""
    return {f"{a}_{s}": {seed: read_json(training_path(a, s, seed)) for seed in seeds[a]}
            for a in arms for s in schemes}


def training_records(training: dict[str, TrainingRuns]) -> list[dict[str, Any]]:
    """Every training record present, in order."""
    return [r for runs in training.values() for r in runs.values() if r is not None]


@dataclass(frozen=True)
class LockedOutput:
    stage: str
    md5: str


def lock_outputs(path: Path = LOCK) -> dict[str, LockedOutput]:
    """Output path -> (stage, md5) from `dvc.lock`, read at run time (it is not a dependency: it changes on
    every run). Empty when the pipeline has not been reproduced yet."""
    if not path.is_file():
        return {}
    lock = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    outputs = {}
    for stage, body in (lock.get("stages") or {}).items():
        for out in (body or {}).get("outs") or []:
            outputs[str(out["path"]).rstrip("/")] = LockedOutput(stage, str(out.get("md5", "")))
    return outputs


def latest_finish(*records: dict[str, Any] | None) -> str | None:
    """The latest `run.finished_utc` among the records (the evidence's date, not the render time)."""
    stamps = [r["run"]["finished_utc"] for r in records
              if r and isinstance(r.get("run"), dict) and r["run"].get("finished_utc")]
    return max(stamps) if stamps else None
