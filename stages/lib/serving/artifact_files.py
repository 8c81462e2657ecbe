"""What every final-model artifact directory shares: its format tag, the manifest and schema / training-stats
file names, file hashing, the backbone fingerprint and the percentile summary the out-of-range flags use."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.core.errors import InputError
from stages.lib.core.hashing import file_digest
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


def write_json_file(path: Path, payload: Any) -> None:
    """Plain JSON into an artifact directory (the caller makes the directory appear atomically)."""
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable model artifact file ({exc})") from exc
