"""Where the corpus comes from and how its raw copy is made: `corpus.source` resolved to a URL, a zip archive
(ZipCrypto passwords included) or a plain CSV, copied with its sha256 (and the archive's) verified."""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from stages.lib.core.atomic import atomic_path
from stages.lib.core.errors import InputError
from stages.lib.core.hashing import file_digest
from stages.lib.core.params import Corpus
from stages.lib.core.paths import RAW_CORPUS


@dataclass(frozen=True)
class CorpusLocation:
    """Where `corpus.source` points: a `url` to download the archive from, a local `archive` (zip) holding
    `member`, or a plain `file`."""

    kind: str
    source: str
    member: str | None = None

    def describe(self) -> str:
        return f"{self.source}!{self.member}" if self.member else self.source


def locate(corpus: Corpus, must_exist: bool = True) -> CorpusLocation:
    """Resolve `corpus.source` (a URL, a zip, a directory holding `corpus.file` or `corpus.archive`, or the CSV
    itself); with `must_exist`, a source that holds neither fails naming what was looked for."""
    source, file, archive = corpus.source, corpus.file, corpus.archive
    path = Path(source)
    if source.startswith(("http://", "https://")):
        return CorpusLocation("url", source, file)
    if path.suffix == ".zip" and (path.is_file() or not must_exist):
        return CorpusLocation("archive", source, file)
    if path.is_dir() and (path / file).is_file():
        return CorpusLocation("file", str(path / file))
    if path.is_dir() and archive and (path / archive).is_file():
        return CorpusLocation("archive", str(path / archive), file)
    if path.is_file():
        return CorpusLocation("file", source)
    if must_exist:
        raise InputError(f"{path}: corpus not found (expected {file}" + (f" or {archive}" if archive else "")
                         + " there, or set corpus.source to a URL to download the archive from)")
    return CorpusLocation("file", str(path / file))


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


def acquire(corpus: Corpus, out: Path = RAW_CORPUS) -> str:
    """Materialise the verified corpus CSV at `out`; return a description of where it came from."""
    where = locate(corpus)
    with atomic_path(out) as tmp, tempfile.TemporaryDirectory() as scratch:
        if where.kind == "url":
            archive = Path(scratch) / (corpus.archive or Path(where.source).name or "corpus.zip")
            try:
                urllib.request.urlretrieve(where.source, archive)
            except OSError as exc:
                raise InputError(f"{where.source}: download failed ({exc}); point corpus.source at a local copy"
                                 ) from exc
            origin = _from_archive(archive, corpus, tmp)
        elif where.kind == "archive":
            origin = _from_archive(Path(where.source), corpus, tmp)
        else:
            shutil.copyfile(where.source, tmp)
            origin = where.source
        verify(tmp, corpus.sha256, label=origin)
    return origin


def _from_archive(archive: Path, corpus: Corpus, dest: Path) -> str:
    verify(archive, corpus.archive_sha256)
    extract_member(archive, corpus.file, corpus.archive_password, dest)
    return f"{archive}!{corpus.file}"
