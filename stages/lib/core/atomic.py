"""Atomic writes: every output appears whole or not at all (temp file, then rename). A temp sibling is
named `.<name>.<pid>-<random>.tmp`: a killed writer's debris is swept by the next stage (`sweep_stale_temps`)
and `.dvcignore` keeps it out of every hash meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from stages.lib.core.paths import OUTPUT_ROOTS

# Where stages write: data/, metrics/, plots/, reports/ and docs/decisions/.
_TEMP = re.compile(r"\..+\.(\d+)-[a-z0-9_]{8}\.tmp")  # atomic_path / atomic_dir: `.<name>.<pid>-<random>.tmp`
_TEMP_BEFORE_PID = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # the same helpers before the pid was in the name


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o644)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def is_stale_temp(path: Path) -> bool:
    """Whether `path` is a temp sibling left by `atomic_path`/`atomic_dir` whose writer no longer runs."""
    if _TEMP_BEFORE_PID.fullmatch(path.name):
        return True
    match = _TEMP.fullmatch(path.name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def sweep_stale_temps(roots: Iterable[str | Path] = OUTPUT_ROOTS) -> list[Path]:
    """Delete the temp siblings that killed writers left under `roots` (nothing else); return them."""
    removed = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in [d for d in dirs if is_stale_temp(Path(folder, d))]:
                dirs.remove(name)
                path = Path(folder, name)
                path.unlink() if path.is_symlink() else shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            for name in files:
                path = Path(folder, name)
                if is_stale_temp(path):
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed


def write_json(path: str | Path, payload: Any) -> None:
    """Write `payload` as indented JSON, atomically; NaN is written as null."""
    text = json.dumps(_finite_or_none(payload), indent=2, sort_keys=False, allow_nan=False)
    write_text(path, text + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write `text` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    """Write `frame` to parquet atomically, without the index."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Write `frame` to CSV atomically, without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if (isinstance(value, float) and value != value) or value in (float("inf"), float("-inf")):
        return None
    return value
