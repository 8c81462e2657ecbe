"""Atomic writes: every output appears whole or not at all (temp sibling, then rename). A temp sibling is named
`.<name>.<pid>-<random>.tmp` (`.dvcignore` keeps it out of every hash) and its writer holds an advisory lock
(`flock`) on it for as long as it writes; the kernel drops the lock when the writer dies, however it dies (a zombie
holds none), so `sweep_stale_temps` removes exactly the temps whose lock is free. `atomic_dir` swaps a new
directory in for an existing one in one step (`renameat2(RENAME_EXCHANGE)`), so a kill leaves the old output or
the new one whole; where the filesystem cannot swap, it renames the old one aside first, and a kill between the
two renames leaves no output (a stage the next `dvc repro` reruns). Either way the debris is a locked temp."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from stages.lib.core.paths import OUTPUT_ROOTS

# Where stages write: data/, metrics/, plots/, reports/ and docs/decisions/.
_TEMP = re.compile(r"\..+\.\d+-[a-z0-9_]{8}\.tmp")  # `.<name>.<pid>-<random>.tmp`; the pid only keeps names unique
# (st_dev, st_ino) of what this process holds locks on: said live without opening them, so that a sweep in the
# writer's own process never opens (and, where flock is emulated with POSIX locks, never unlocks) its own temps.
_HELD: set[tuple[int, int]] = set()


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}-"


def _key(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX)
    _HELD.add(_key(os.fstat(fd)))


def _release(fd: int) -> None:
    _HELD.discard(_key(os.fstat(fd)))
    os.close(fd)


def _is_at(fd: int, path: Path) -> bool:
    """Whether `path` still names the file or directory open as `fd`."""
    try:
        return _key(os.lstat(path)) == _key(os.fstat(fd))
    except FileNotFoundError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _new_locked_temp(target: Path, directory: bool) -> tuple[Path, int]:
    """Create a temp sibling of `target` and take its lock; return it and the fd that holds the lock."""
    while True:
        if directory:
            path = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:  # swept before it was opened
                continue
        else:
            fd, name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
            path = Path(name)
        _lock(fd)
        if _is_at(fd, path):
            return path, fd
        _release(fd)  # a sweep removed it before the lock was taken: make another


@contextlib.contextmanager
def temp_sibling(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a new, locked temp sibling of `path` (a file, mode 0644, or a directory); at exit whatever is still
    at that name is removed and the lock released (the lock follows the inode through a rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _new_locked_temp(target, directory)
    try:
        if not directory:
            tmp.chmod(0o644)
        yield tmp
    finally:
        try:
            _remove(tmp)
        finally:
            _release(fd)


def _lock_existing(path: Path) -> int | None:
    """An fd holding the lock on the file or directory at `path` (None for a symlink: nothing to lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    _lock(fd)
    return fd


@contextlib.contextmanager
def set_aside(path: str | Path) -> Iterator[Path | None]:
    """Rename what is at `path` to a locked temp sibling for the block, then delete it (yield None when nothing
    is there). A kill inside the block leaves it as debris for the sweep."""
    path = Path(path)
    if not os.path.lexists(path):
        yield None
        return
    fd = None if _key(os.lstat(path)) in _HELD else _lock_existing(path)  # this process may hold it already
    try:
        while True:
            aside = path.with_name(f"{_temp_prefix(path)}{secrets.token_hex(4)}.tmp")
            if not os.path.lexists(aside):
                break
        os.rename(path, aside)
        try:
            yield aside
        finally:
            _remove(aside)
    finally:
        if fd is not None:
            _release(fd)


def _load_renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _load_renameat2()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap the entries at `a` and `b` in one step; False where the C library or the filesystem cannot."""
    if _RENAMEAT2 is None:
        return False
    sys.audit("os.rename", a, b, -1, -1)  # the event os.replace raises, for audit hooks
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    with temp_sibling(target) as tmp:
        yield tmp
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `path` only if the block succeeds."""
    target = Path(path)
    with contextlib.ExitStack() as old, temp_sibling(target, directory=True) as tmp:  # `old` exits last
        yield tmp
        if target.is_symlink():
            target.unlink()
        elif target.exists():
            fd = _lock_existing(target)
            old.callback(_release, fd)
            if _exchange(tmp, target):
                return  # the old output is now at `tmp`, deleted with it while still locked
            old.enter_context(set_aside(target))
        os.replace(tmp, target)


def _free_lock(path: Path) -> int | None:
    """An fd holding the lock of `path` when no writer holds it; None when one does (or it cannot be opened)."""
    try:
        if _key(os.lstat(path)) in _HELD:
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def is_stale_temp(path: str | Path) -> bool:
    """Whether `path` is a temp sibling left by a writer that no longer runs: named like one, and its lock free
    (a temp-named symlink is never locked: stale). The lock is released at once."""
    path = Path(path)
    if not _TEMP.fullmatch(path.name):
        return False
    if path.is_symlink():
        return True
    fd = _free_lock(path)
    if fd is None:
        return False
    os.close(fd)
    return True


def _remove_if_stale(path: Path) -> bool:
    """Delete `path` if it is a stale temp, holding its lock meanwhile so no writer can take it; whether it was."""
    if not _TEMP.fullmatch(path.name):
        return False
    if path.is_symlink():
        path.unlink(missing_ok=True)
        return True
    fd = _free_lock(path)
    if fd is None:
        return False
    try:
        if not _is_at(fd, path):
            return False
        _remove(path)
        return True
    finally:
        os.close(fd)


def sweep_stale_temps(roots: Iterable[str | Path] = OUTPUT_ROOTS, recursive: bool = True) -> list[Path]:
    """Delete the temp siblings that dead writers left under `roots` (nothing else: no live writer's temp, no
    other file); return them. `recursive=False` looks only at the entries of each root itself."""
    removed = []
    for root in roots:
        for folder, dirs, files in os.walk(root) if recursive else _entries(Path(root)):
            removed += [Path(folder, name) for name in [*dirs, *files] if _remove_if_stale(Path(folder, name))]
            dirs[:] = [d for d in dirs if not _TEMP.fullmatch(d)]  # a temp directory is its writer's own
    return removed


def _entries(folder: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except (FileNotFoundError, NotADirectoryError):
        return
    yield folder, [e.name for e in entries if e.is_dir()], [e.name for e in entries if not e.is_dir()]


def json_text(payload: Any) -> str:
    """`payload` as indented JSON with a final newline; NaN is written as null."""
    return json.dumps(_finite_or_none(payload), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str | Path, payload: Any) -> None:
    """Write `payload` as indented JSON, atomically; NaN is written as null."""
    write_text(path, json_text(payload))


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
