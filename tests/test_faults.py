"""Fault injection: corrupt archives and wrong passwords, bytes that are not UTF-8, a header-only
CSV, repeated texts with different scores and a kill during a write each end in one clear line or a clean
state: no traceback, no partial output, no changed hash."""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages.lib.core.atomic import is_stale_temp
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError
from stages.lib.core.hashing import file_digest
from stages.lib.core.params import Corpus
from stages.lib.data.corpus_source import acquire
from stages.lib.data.preparation import prepare_corpus
from stages.lib.data.text import normalise_text
from tests.conftest import CORPUS_DIR, REPO, synthetic_raw

ELLIPSE_ZIP = CORPUS_DIR / "ELLIPSE_Final_github_test.zip"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}
ENV.pop("AES_PARAMS", None)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory with the repository's params.yaml and an empty data/raw/."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    return tmp_path


def set_params(root: Path, section: str, **values) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


# --- archives ------------------------------------------------------------------------------------------------


def zipped(csv: bytes, method: int = zipfile.ZIP_DEFLATED) -> bytearray:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        zf.writestr("corpus.csv", csv)
    return bytearray(buf.getvalue())


def extraction_error(archive: Path, password: str | None = None, archive_sha256: str | None = None,
                     member: str = "corpus.csv") -> str:
    corpus = Corpus(source=str(archive), file=member, archive=archive.name, sha256=None,
                    archive_sha256=archive_sha256, archive_password=password)
    out = archive.parent / "raw" / "corpus.csv"
    with pytest.raises(InputError) as info:
        acquire(corpus, out)
    message = str(info.value)
    assert message.startswith(f"{archive}: wrong password or corrupt archive (cannot extract {member}: ")
    assert "\n" not in message
    assert not out.exists() and list(out.parent.iterdir()) == []  # no partial copy, no temp sibling
    return message


@pytest.fixture
def csv_bytes() -> bytes:
    return synthetic_raw(n_prompts=2, per_prompt=6).to_csv(index=False).encode()


def test_not_a_zip_without_an_archive_hash(tmp_path):
    archive = tmp_path / "corpus.zip"
    archive.write_bytes(b"PK\x03\x04 this is not an archive")
    assert "BadZipFile: File is not a zip file" in extraction_error(archive)


def test_bad_crc(tmp_path, csv_bytes):
    data = zipped(csv_bytes, zipfile.ZIP_STORED)
    data[30 + len("corpus.csv") + 100] ^= 0xFF  # a byte of the stored member's data
    (tmp_path / "corpus.zip").write_bytes(bytes(data))
    assert "BadZipFile: Bad CRC-32 for file 'corpus.csv'" in extraction_error(tmp_path / "corpus.zip")


def test_corrupt_deflate_stream(tmp_path, csv_bytes):
    data = zipped(csv_bytes)
    data[30 + len("corpus.csv") + 5] ^= 0xFF
    (tmp_path / "corpus.zip").write_bytes(bytes(data))
    assert "zlib.error: Error -3 while decompressing data" in extraction_error(tmp_path / "corpus.zip")


def test_truncated_member(tmp_path, csv_bytes):
    data = zipped(csv_bytes, zipfile.ZIP_STORED)
    central = data.rfind(b"PK\x01\x02")
    size = struct.unpack_from("<I", data, central + 20)[0]
    struct.pack_into("<II", data, central + 20, size + 10**6, size + 10**6)  # claims more data than there is
    (tmp_path / "corpus.zip").write_bytes(bytes(data))
    assert "EOFError: the data ends early (truncated)" in extraction_error(tmp_path / "corpus.zip")


def password_passing_the_check_byte(archive: Path, right: str) -> str:
    """A wrong password that ZipCrypto's one-byte header check lets through (about 1 in 256 do)."""
    with zipfile.ZipFile(archive) as zf:
        name = zf.namelist()[0]
        for k in range(5000):
            candidate = f"wrong{k}"
            if candidate == right:
                continue
            try:
                zf.open(name, pwd=candidate.encode()).close()
            except RuntimeError:
                continue
            return candidate
    raise AssertionError("no candidate passed the check byte")


@pytest.mark.skipif(shutil.which("zip") is None, reason="the `zip` tool writes ZipCrypto archives")
def test_wrong_passwords_on_a_zipcrypto_archive(tmp_path, csv_bytes):
    (tmp_path / "corpus.csv").write_bytes(csv_bytes)
    archive = tmp_path / "corpus.zip"
    subprocess.run(["zip", "-q", "-j", "-P", "secret", str(archive), str(tmp_path / "corpus.csv")], check=True)
    (tmp_path / "corpus.csv").unlink()
    assert "RuntimeError: Bad password for file" in extraction_error(archive, password="not-it")
    assert "is encrypted, password required" in extraction_error(archive, password=None)
    lucky = password_passing_the_check_byte(archive, "secret")
    message = extraction_error(archive, password=lucky)
    assert "zlib.error" in message or "Bad CRC-32" in message


@pytest.mark.skipif(not ELLIPSE_ZIP.is_file(), reason="the ELLIPSE release is not beside the repository")
def test_wrong_password_passing_the_check_byte_on_the_real_archive(tmp_path, params):
    archive = tmp_path / ELLIPSE_ZIP.name
    archive.symlink_to(ELLIPSE_ZIP)
    corpus = params.corpus
    lucky = password_passing_the_check_byte(archive, corpus.archive_password)
    message = extraction_error(archive, password=lucky, archive_sha256=corpus.archive_sha256, member=corpus.file)
    assert "zlib.error" in message or "Bad CRC-32" in message


def test_uppercase_sha256_verifies(tmp_path, csv_bytes):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "corpus.csv").write_bytes(csv_bytes)
    digest = file_digest(tmp_path / "src" / "corpus.csv").upper()
    corpus = Corpus(source=str(tmp_path / "src"), file="corpus.csv", archive="x.zip", sha256=digest)
    assert corpus.sha256 == digest.lower()  # the schema normalises the digest
    acquire(corpus, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == csv_bytes
    (tmp_path / "out.csv").unlink()
    acquire(corpus.model_copy(update={"sha256": digest}), tmp_path / "out.csv")  # built without the schema's check
    assert (tmp_path / "out.csv").read_bytes() == csv_bytes


# --- bytes, records and lines --------------------------------------------------------------------------------


def multiline_csv(bad_row: int | None = None, column: str = "full_text") -> tuple[bytes, int | None]:
    """About 450 kB of invented essays of three paragraphs each (so text lines outrun CSV records), with an
    optional 0xFF byte in row `bad_row`'s `column`; returns the bytes and the byte's offset."""
    raw = synthetic_raw(n_prompts=8, per_prompt=25)
    raw["full_text"] = raw["full_text"].str.replace(". ", ".\n\nA second paragraph.\n\n", n=1, regex=False)
    marker = "\u2603"  # a character absent from the invented corpus, replaced by the bad byte
    if bad_row is not None:
        value = raw.at[bad_row, column]
        raw.at[bad_row, column] = value[: len(value) // 2] + marker + value[len(value) // 2:]
    data = raw.to_csv(index=False).encode()
    offset = data.find(marker.encode()) if bad_row is not None else -1
    if offset < 0:
        return data, None
    return data[:offset] + b"\xff" + data[offset + len(marker.encode()):], offset


@pytest.mark.parametrize(("row", "column"), [(180, "full_text"), (7, "prompt")])
def test_bad_byte_names_record_line_column_and_offset(project, row, column):
    data, offset = multiline_csv(row, column)
    assert offset > 262144 or row < 100  # past pandas' first read chunk: its own offsets would be relative
    Path("data/raw/corpus.csv").write_bytes(data)
    line = data.count(b"\n", 0, offset) + 1
    assert line > row + 2  # multi-line essays: the text line is not the record number
    with pytest.raises(InputError) as info:
        prepare_corpus(load_params())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"data/raw/corpus.csv: not a readable UTF-8 CSV: record {row + 2:,} (data row {row + 1:,}, line {line:,}), "
        f"column {column!r}, byte offset {offset}: byte 0xff is not UTF-8")


def test_off_grid_score_in_a_multiline_csv_names_record_and_line(project):
    data, _ = multiline_csv()
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    frame.loc[59, "Syntax"] = "3.25"
    frame.to_csv("data/raw/corpus.csv", index=False)
    text = Path("data/raw/corpus.csv").read_bytes()
    start = text.find(f"\n{frame.at[59, 'text_id_kaggle']},".encode()) + 1
    line = text.count(b"\n", 0, start) + 1
    with pytest.raises(InputError, match=rf"corpus\.csv: record 61 \(line {line:,}\): column 'Syntax' value '3\.25'"):
        prepare_corpus(load_params())


def test_header_only_and_empty_csv(project):
    header = synthetic_raw().to_csv(index=False).splitlines()[0]
    Path("data/raw/corpus.csv").write_text(header + "\n")
    with pytest.raises(InputError, match=r"^data/raw/corpus\.csv: has a header but no data rows \(raw copy of "):
        prepare_corpus(load_params())
    Path("data/raw/corpus.csv").write_text("")
    with pytest.raises(InputError, match=r"^data/raw/corpus\.csv: empty file \(no header, no data rows\)"):
        prepare_corpus(load_params())


def test_prepare_stage_names_the_users_file_in_one_line(project):
    source = project / "my corpus"
    source.mkdir()
    data, offset = multiline_csv(150)
    (source / "essays.csv").write_bytes(data)
    shutil.copy(source / "essays.csv", "data/raw/corpus.csv")
    set_params(project, "corpus", source=str(source), file="essays.csv", sha256=None)
    result = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=project, capture_output=True, text=True,
                            env=ENV)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: data/raw/corpus.csv: not a readable UTF-8 CSV: record 152 ")
    assert f"byte offset {offset}:" in result.stderr
    assert result.stderr.rstrip().endswith(f"(raw copy of {source / 'essays.csv'})")


# --- repeated texts with different scores --------------------------------------------------------------------


def with_duplicates(root: Path, shift: float) -> tuple[int, float, str]:
    """The invented corpus plus a copy of one essay with Overall moved by `shift` and an exact copy of another;
    returns the first copy's row, its score and its text."""
    raw = synthetic_raw()
    row = int((raw["Overall"] <= 4.0).to_numpy().nonzero()[0][3])
    conflict, exact = raw.iloc[row].copy(), raw.iloc[row + 7].copy()
    conflict["Overall"] = conflict["Overall"] + shift
    raw = pd.concat([raw, pd.DataFrame([conflict, exact])], ignore_index=True)
    raw.to_csv(root / "data/raw/corpus.csv", index=False)
    return row, float(raw.at[row, "Overall"]), str(raw.at[row, "full_text"])


@pytest.mark.parametrize(("policy", "kept", "n_conflict"), [("keep_first", 0.0, 1), ("drop_both", None, 2),
                                                            ("average", 0.5, 1)])
def test_duplicate_scores_policy(project, capsys, policy, kept, n_conflict):
    set_params(project, "prepare", duplicate_scores=policy)
    row, score, text = with_duplicates(project, shift=1.0)
    prepare_corpus(load_params())
    out = capsys.readouterr().out
    n = len(synthetic_raw())
    assert (f"warning: data/raw/corpus.csv: 1 text(s) appear more than once with different scores (first: "
            f"line {row + 2} and line {n + 2} hold the same text with Overall {score:g} vs {score + 1:g}); "
            f"prepare.duplicate_scores {policy}: {n_conflict} row(s) dropped") in out
    report = json.loads(Path("metrics/data.json").read_text())
    assert report["rows_in"] == n + 2 and report["rows_out"] == n + 1 - n_conflict
    assert report["dropped"]["duplicate_text"] == 1 and report["dropped"]["duplicate_conflicting_scores"] == n_conflict
    essays = pd.read_parquet("data/prepared/essays.parquet")
    copies = essays[essays["text"] == normalise_text(text)]
    if kept is None:
        assert copies.empty
    else:
        assert len(copies) == 1 and copies["Overall"].iloc[0] == score + kept and copies["Syntax"].iloc[0] == score


def test_average_off_the_grid_refuses(project):
    set_params(project, "prepare", duplicate_scores="average")
    row, score, _ = with_duplicates(project, shift=0.5)
    n = len(synthetic_raw())
    with pytest.raises(InputError, match=rf"^data/raw/corpus\.csv: line {row + 2} and line {n + 2} hold the same text; "
                                         rf"their mean Overall {score + 0.25:g} is off the score grid"):
        prepare_corpus(load_params())
    assert not Path("data/prepared/essays.parquet").exists()


def test_exact_copies_only_keep_the_current_behaviour(project):
    raw = synthetic_raw()
    pd.concat([raw, raw.iloc[[5, 6]]], ignore_index=True).to_csv("data/raw/corpus.csv", index=False)
    prepare_corpus(load_params())
    report = json.loads(Path("metrics/data.json").read_text())
    assert report["dropped"]["duplicate_text"] == 2 and report["dropped"]["duplicate_conflicting_scores"] == 0
    assert report["rows_out"] == len(raw)


# --- a kill during a write -----------------------------------------------------------------------------------

WRITER = """
import contextlib, sys, time
from pathlib import Path
from stages.lib.core.atomic import atomic_dir, atomic_path
from stages.lib.core.errors import run_stage

def main():
    with contextlib.ExitStack() as stack:
        for target in sys.argv[1:]:
            if target.endswith("/"):
                (stack.enter_context(atomic_dir(Path(target))) / "part.txt").write_text("half")
            else:
                stack.enter_context(atomic_path(Path(target))).write_text("half")
        if sys.argv[1:]:
            print("writing", flush=True)
            time.sleep(60)

run_stage(main)
"""


def start_writer(root: Path, *targets: str) -> subprocess.Popen:
    (root / "writer.py").write_text(WRITER)
    proc = subprocess.Popen([sys.executable, "writer.py", *targets], cwd=root, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
    return proc


def temps(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".tmp"))


def test_sigterm_removes_the_temp_siblings(tmp_path):
    proc = start_writer(tmp_path, "data/out/", "metrics/out.json")
    assert len(temps(tmp_path)) == 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert err.count("\n") == 1 and err.startswith("error: terminated (SIGTERM)")
    assert temps(tmp_path) == []
    assert not (tmp_path / "data/out").exists() and not (tmp_path / "metrics/out.json").exists()


def test_sigkill_debris_is_swept_by_the_next_stage_and_nothing_else(tmp_path):
    (tmp_path / "data/out").mkdir(parents=True)
    (tmp_path / "data/out/old.txt").write_text("the previous output")
    proc = start_writer(tmp_path, "data/out/", "metrics/out.json")
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    debris = temps(tmp_path)
    assert len(debris) == 2 and all(f".{proc.pid}-" in p.name and is_stale_temp(p) for p in debris)
    assert (tmp_path / "data/out/old.txt").read_text() == "the previous output"  # never half replaced
    alive = tmp_path / f"metrics/.alive.json.{os.getpid()}-abcdefgh.tmp"  # its writer (this test) holds the lock
    keep = [tmp_path / "data/.notes.tmp", tmp_path / "data/notes.tmp", tmp_path / "plots/.x.1234-abc.tmp",
            tmp_path / "reports/.summary.txt.abcd_123.tmp",  # no pid: not an atomic writer's name
            alive, tmp_path / f"elsewhere/.x.json.{proc.pid}-abcdefgh.tmp",  # outside the output roots
            tmp_path / "docs/decisions/0001.md"]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    with alive.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = subprocess.run([sys.executable, "writer.py"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert all(not p.exists() for p in debris)
    assert all(p.exists() for p in keep)
    assert result.stdout.count("left by a killed write") == 2
    assert (tmp_path / "data/out/old.txt").read_text() == "the previous output"


@pytest.mark.skipif(not (Path(sys.executable).parent / "dvc").is_file(), reason="dvc is not installed")
def test_debris_never_changes_a_stage_hash(tmp_path):
    dvc = str(Path(sys.executable).parent / "dvc")

    def status() -> str:
        return subprocess.run([dvc, "status"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                              check=True).stdout

    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=ENV, check=True)
    shutil.copy(REPO / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "data/in").mkdir(parents=True)
    (tmp_path / "data/in/a.txt").write_text("input")
    (tmp_path / "dvc.yaml").write_text("stages:\n  copy:\n    cmd: cp -r data/in data/out\n    deps: [data/in]\n"
                                       "    outs: [data/out]\n")
    subprocess.run([dvc, "repro", "-q"], cwd=tmp_path, env=ENV, check=True)
    assert "up to date" in status()
    proc = start_writer(tmp_path, "data/in/b.txt", "data/in/sub/", "data/out/c.txt")
    proc.kill()
    proc.communicate(timeout=30)
    assert len(temps(tmp_path / "data")) == 3
    assert "up to date" in status()
    ignore = (tmp_path / ".dvcignore").read_text()
    (tmp_path / ".dvcignore").write_text("\n".join(line for line in ignore.splitlines() if ".tmp" not in line))
    assert "changed" in status()  # the pattern is what keeps the hashes clean


FOLD_WRITER = """
import sys, time
from pathlib import Path
from stages.lib.core.atomic import atomic_dir
from stages.lib.core.errors import run_stage

def main():
    fold = int(sys.argv[1])
    with atomic_dir(Path(f"data/runs/fold_{fold}")) as out:
        (out / "predictions.txt").write_text(f"fold {fold}\\n" * 1000)
        if fold == 1 and Path("hold").exists():
            print("writing", flush=True)
            time.sleep(60)

run_stage(main)
"""


@pytest.mark.skipif(not (Path(sys.executable).parent / "dvc").is_file(), reason="dvc is not installed")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_repro_after_a_kill_during_a_fold_write_matches_an_uninterrupted_run(tmp_path, sig):
    """As in the pipeline: one stage per fold writes `data/runs/fold_<k>` (atomic_dir), and `collect` depends on
    the whole `data/runs`. `dvc repro` killed while fold 1 is half written, then `dvc repro` again: every
    hash in the lock (collect's dependency included) and every output equal an uninterrupted run's, and
    `dvc status` is clean."""
    dvc = str(Path(sys.executable).parent / "dvc")

    def project(root: Path) -> Path:
        root.mkdir()
        subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=root, env=ENV, check=True)
        shutil.copy(REPO / ".dvcignore", root / ".dvcignore")
        (root / "write_fold.py").write_text(FOLD_WRITER)
        (root / "dvc.yaml").write_text(
            "stages:\n  fold:\n    foreach: [0, 1, 2]\n    do:\n"
            f"      cmd: {sys.executable} write_fold.py ${{item}}\n"
            "      deps: [write_fold.py]\n      outs:\n        - data/runs/fold_${item}\n"
            "  collect:\n    cmd: cat data/runs/fold_0/predictions.txt data/runs/fold_1/predictions.txt "
            "data/runs/fold_2/predictions.txt > all.txt\n    deps: [data/runs]\n    outs: [all.txt]\n")
        return root

    def hashes(root: Path) -> dict:
        lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
        return {name: [(e["path"], e["md5"]) for e in [*body.get("deps", []), *body.get("outs", [])]]
                for name, body in lock.items()}

    clean = project(tmp_path / "clean")
    subprocess.run([dvc, "repro", "-q"], cwd=clean, env=ENV, check=True)

    killed = project(tmp_path / "killed")
    (killed / "hold").write_text("")
    proc = subprocess.Popen([dvc, "repro", "-q"], cwd=killed, env=ENV, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
    assert temps(killed / "data")  # fold 1 is half written
    os.killpg(proc.pid, sig)
    proc.communicate(timeout=60)
    (killed / "hold").unlink()
    again = subprocess.run([dvc, "repro", "-q"], cwd=killed, env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert temps(killed / "data") == []
    assert hashes(killed) == hashes(clean)
    assert (killed / "all.txt").read_bytes() == (clean / "all.txt").read_bytes()
    status = subprocess.run([dvc, "status"], cwd=killed, env=ENV, capture_output=True, text=True, check=True)
    assert "up to date" in status.stdout
