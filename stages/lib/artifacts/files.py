"""What every final-model artifact directory shares: its format tag and version, the manifest and schema /
training-stats file names, the manifest's write and verify (one loader check for every kind), file hashing, the
backbone fingerprint and the percentile summary the out-of-range flags use."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.core.errors import InputError
from stages.lib.core.hashing import file_digest
from stages.lib.core.io import read_json
from stages.lib.core.params import validate_section
from stages.lib.data.schema import DatasetSchema
from stages.lib.encoders.backbone import resolve_backbone

FORMAT = "aes-gate-final-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SCHEMA = "schema.json"
STATS = "training_stats.json"
PERCENTILES = (0.5, 1, 5, 25, 50, 75, 95, 99, 99.5)
_NOT_WEIGHTS = frozenset({"README.md", ".gitattributes"})


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory` but the manifest, by relative path (sorted)."""
    out = {}
    for folder, _, names in os.walk(directory):
        for name in names:
            path = Path(folder, name)
            rel = path.relative_to(directory).as_posix()
            if rel != MANIFEST:
                out[rel] = file_digest(path)
    return dict(sorted(out.items()))


def verify_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is there with its sha256; one clear error otherwise."""
    for name, digest in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise InputError(f"{path}: missing from the model artifact")
        if file_digest(path) != digest:
            raise InputError(f"{path}: sha256 differs from {directory / MANIFEST} (the artifact was modified)")


def backbone_fingerprint(spec: str) -> dict[str, Any]:
    """The spec, and the sha256 of every file the tokenizer and encoder load from its resolved directory
    (config, tokenizer, weights): a different model behind the same spec is caught at scoring time."""
    root = resolve_backbone(spec)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name not in _NOT_WEIGHTS)
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{file_digest(path)}\n".encode())
    return {"spec": spec, "sha256": digest.hexdigest(), "files": [p.name for p in files]}


def percentiles(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    out = {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
           "sd": float(values.std())}
    out |= {f"p{q:g}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)}
    return out


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp `manifest` with the format, its version and the sha256 of every other file in `directory`, and
    write it there (the caller makes the directory appear atomically); return it."""
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": file_hashes(directory)}
    write_json_file(directory / MANIFEST, manifest)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an artifact directory, checked for format and version (not yet its files)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"{path}: no model artifact here (run `dvc repro train_final`)")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a {FORMAT} artifact")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: format version {manifest.get('format_version')!r}; this code reads version "
                         f"{FORMAT_VERSION} (refit it with `dvc repro`)")
    return manifest


def open_artifact(directory: Path, kind: str) -> dict[str, Any]:
    """The verified manifest of an artifact of `kind`: format, version, kind and every file's sha256 checked;
    one clear error otherwise."""
    manifest = read_manifest(directory)
    if manifest.get("kind") != kind:
        raise InputError(f"{Path(directory) / MANIFEST}: a {manifest.get('kind')!r} artifact, not a {kind!r} one")
    verify_files(Path(directory), manifest)
    return manifest


def read_schema(directory: Path) -> DatasetSchema:
    """The dataset schema an artifact declares (its schema file, checked like the params section it copies)."""
    path = Path(directory) / SCHEMA
    return DatasetSchema.from_dataset(validate_section("dataset", read_json(path), str(path)))


def write_json_file(path: Path, payload: Any) -> None:
    """Plain JSON into an artifact directory (the caller makes the directory appear atomically)."""
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
