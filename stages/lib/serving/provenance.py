"""Where a scores file came from: the model artifact (its md5 as `dvc.lock` records it, and whether the files
on disk still hash to it), the params it was trained with, package versions, the decision record that made
it the default, the input and the flag rules. Deterministic: no wall-clock time, so scoring the same input
twice writes the same sidecar."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from stages.lib.artifacts.files import MANIFEST
from stages.lib.core.errors import InputError
from stages.lib.core.hashing import file_digest
from stages.lib.core.io import read_json_object
from stages.lib.core.runinfo import package_versions
from stages.lib.reference.artifact import PACKAGES
from stages.lib.serving.flags import RULES

REFERENCE_ARM = "xgb"


def dvc_dir_md5(directory: Path) -> str:
    """A directory's md5 as DVC records it in `dvc.lock`: the md5 of the JSON list of its files' md5s and
    relative paths (sorted by path), plus `.dir`."""
    entries = []
    for folder, _, files in os.walk(directory):
        for name in files:
            path = Path(folder, name)
            entries.append({"md5": file_digest(path, "md5"), "relpath": path.relative_to(directory).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def find_lock(start: Path) -> Path | None:
    """The nearest `dvc.lock` at or above `start`."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / "dvc.lock").is_file():
            return folder / "dvc.lock"
    return None


def locked_md5(artifact: Path, lock: Path | None) -> dict[str, Any]:
    """The stage and md5 `lock` records for the output `artifact`, or why there is none."""
    if lock is None:
        return {"dvc_lock": None, "stage": None, "md5": None, "note": "no dvc.lock above the artifact"}
    try:
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    except (OSError, yaml.YAMLError) as exc:
        return {"dvc_lock": str(lock), "stage": None, "md5": None, "note": f"dvc.lock unreadable ({exc})"}
    target = artifact.resolve()
    for stage, body in stages.items():
        for out in body.get("outs", []):
            if (lock.parent / out["path"]).resolve() == target:
                return {"dvc_lock": lock.name, "stage": stage, "path": out["path"], "md5": out.get("md5")}
    return {"dvc_lock": lock.name, "stage": None, "md5": None,
            "note": "dvc.lock has no output at this path (the artifact was not produced by `dvc repro`)"}


def decision_summary(path: Path) -> dict[str, Any] | None:
    """The decision record's verdict and chosen arm (None when there is no record)."""
    if not path.is_file():
        return None
    record = read_json_object(path)
    return {"path": path.as_posix(), "md5": file_digest(path, "md5"), "verdict": record.get("verdict"),
            "chosen_arm": record.get("chosen_arm") or None, "gate_valid": record.get("gate_valid"),
            "evidence_utc": record.get("evidence_utc")}


def select_model(model: str | None, models_dir: Path, decision_path: Path) -> tuple[Path, dict[str, Any]]:
    """The artifact directory to score with, and how it was chosen (for the provenance sidecar)."""
    decision = decision_summary(decision_path)
    if model:
        path = Path(model)
        if not (path / MANIFEST).is_file() and len(path.parts) == 1:
            path = models_dir / model
        selection = {"by": "--model", "requested": model}
    elif decision is not None and decision["verdict"] == "accept" and decision["chosen_arm"]:
        path = models_dir / decision["chosen_arm"]
        selection = {"by": "decision record (accept): its chosen arm"}
    else:
        path = models_dir / REFERENCE_ARM
        why = "no decision record" if decision is None else f"decision record verdict {decision['verdict']!r}"
        selection = {"by": f"{why}: the reference arm"}
    if not (path / MANIFEST).is_file():
        raise InputError(f"{path}: no final-model artifact ({selection['by']}); run `dvc repro train_final` or pass "
                         "--model")
    return path, {**selection, "decision": decision}


def sidecar(*, scores: Path, scores_sha256: str, n_rows: int, n_scored: int, flag_counts: dict[str, int],
            input_file: Any, artifact_path: Path, manifest: dict[str, Any], selection: dict[str, Any],
            options: dict[str, Any], score_columns: dict[str, list[str]]) -> dict[str, Any]:
    """The provenance record written beside a scores file; `score_columns` names the file's on-grid and
    continuous score columns (keys `on_grid`, `continuous`)."""
    lock = locked_md5(artifact_path, find_lock(artifact_path))
    on_disk = dvc_dir_md5(artifact_path)
    return {
        "scores": {"file": scores.name, "sha256": scores_sha256, "rows": n_rows, "scored": n_scored,
                   "flags": flag_counts},
        "input": {"file": str(input_file.path), "sha256": input_file.sha256, "kind": input_file.kind,
                  "rows": input_file.n_rows,
                  "columns": {"text": input_file.columns.text, "id": input_file.columns.id,
                              "prompt": input_file.columns.prompt}},
        "model": {
            "arm": manifest["arm"], "kind": manifest["kind"], "artifact": str(artifact_path),
            "gate_valid": manifest.get("gate_valid"), "smoke": manifest.get("smoke"),
            "md5": lock.get("md5"), "md5_on_disk": on_disk,
            "matches_dvc_lock": lock.get("md5") == on_disk if lock.get("md5") else None,
            "lock": lock, "trained_on": manifest.get("trained_on"), "calibration": manifest.get("calibration"),
            "params": manifest.get("params"), "training_packages": manifest.get("packages"),
            "files_sha256": manifest.get("files"),
        },
        "score_use": {
            "on_grid": {"columns": score_columns["on_grid"],
                        "use": "a score on the rubric's grid, from cutpoints fitted so that predictions spread like "
                               "the human scores: report a score, compare with a human rater"},
            "continuous": {"columns": score_columns["continuous"],
                           "use": "the model's estimate clipped to the scale: rank essays, average over essays or "
                                  "groups, study score distributions"},
            "figures": "cross-validated QWK, RMSE and SMD of both: the model card's 'Which score to use' section",
        },
        "selection": selection,
        "packages": package_versions(PACKAGES),
        "flag_rules": RULES,
        "options": options,
    }
