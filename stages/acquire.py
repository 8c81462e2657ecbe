"""Stage `acquire`: copy the corpus CSV into `data/raw/` from a directory, the upstream
password-protected zip, or (when online) the upstream URL, verifying sha256 on the way."""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Any

from stages.lib.core.atomic import atomic_path
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.hashing import file_digest
from stages.lib.core.paths import RAW_CORPUS


def verify(path: Path, expected: str | None, label: str | None = None) -> None:
    """Raise unless `path` hashes to `expected` (no check when `expected` is empty)."""
    name = label or str(path)
    if not expected:
        print(f"warning: no sha256 configured for {name}; not verified")
        return
    actual = file_digest(path)
    if actual != expected.lower():
        raise InputError(f"{name}: sha256 {actual} does not match the expected {expected}")


def extract_member(archive: Path, member: str, password: str | None, dest: Path) -> None:
    """Extract one member of a (possibly ZipCrypto-encrypted) zip archive to `dest`. Every failure to read
    it (bad password, also one that passes ZipCrypto's one-byte check; bad CRC; truncated or corrupt data)
    is one `InputError` line naming the archive."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = {Path(n).name: n for n in zf.namelist()}
            if member not in names:
                raise InputError(f"{archive}: no member named {member} (has {sorted(names)})")
            pwd = password.encode() if password else None
            with zf.open(names[member], pwd=pwd) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, EOFError) as exc:
        reason = str(exc) or ("the data ends early (truncated)" if isinstance(exc, EOFError) else "")
        kind = "zlib.error" if isinstance(exc, zlib.error) else type(exc).__name__
        detail = " ".join(f"cannot extract {member}: {kind}: {reason}".split())
        raise InputError(f"{archive}: wrong password or corrupt archive ({detail})") from exc
    except NotImplementedError as exc:
        raise InputError(f"{archive}: cannot extract {member} with Python's zipfile ({exc}); extract it "
                         "yourself and point corpus.source at the CSV") from exc


def acquire(corpus: dict[str, Any], out: Path = RAW_CORPUS) -> str:
    """Materialise the verified corpus CSV at `out`; return a description of where it came from."""
    source = str(corpus["source"])
    with atomic_path(out) as tmp, tempfile.TemporaryDirectory() as scratch:
        if source.startswith(("http://", "https://")):
            archive = Path(scratch) / (corpus.get("archive") or Path(source).name or "corpus.zip")
            try:
                urllib.request.urlretrieve(source, archive)
            except OSError as exc:
                raise InputError(f"{source}: download failed ({exc}); point corpus.source at a local copy") from exc
            origin = _from_archive(archive, corpus, tmp)
        else:
            path = Path(source)
            if path.is_file() and path.suffix == ".zip":
                origin = _from_archive(path, corpus, tmp)
            elif path.is_dir() and (path / corpus["file"]).is_file():
                shutil.copyfile(path / corpus["file"], tmp)
                origin = str(path / corpus["file"])
            elif path.is_dir() and corpus.get("archive") and (path / corpus["archive"]).is_file():
                origin = _from_archive(path / corpus["archive"], corpus, tmp)
            elif path.is_file():
                shutil.copyfile(path, tmp)
                origin = str(path)
            else:
                raise InputError(
                    f"{path}: corpus not found (expected {corpus['file']}"
                    + (f" or {corpus['archive']}" if corpus.get("archive") else "") + " there, "
                    f"or set corpus.source to the upstream URL {corpus.get('url')})"
                )
        verify(tmp, corpus.get("sha256"), label=origin)
    return origin


def _from_archive(archive: Path, corpus: dict[str, Any], dest: Path) -> str:
    verify(archive, corpus.get("archive_sha256"))
    extract_member(archive, corpus["file"], corpus.get("archive_password"), dest)
    return f"{archive}!{corpus['file']}"


def main() -> None:
    params = load_params()
    origin = acquire(params["corpus"])
    print(f"acquired {RAW_CORPUS} from {origin}")


if __name__ == "__main__":
    run_stage(main)
