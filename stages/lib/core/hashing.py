"""File digests (sha256 to verify inputs, md5 as DVC records outputs), read in blocks."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()
