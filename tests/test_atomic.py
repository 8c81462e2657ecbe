"""Kill-safety of the atomic writers, on any machine: a temp is stale exactly when no live process holds its lock
(a zombie writer, a reused pid or pid 1 in its name change nothing); `atomic_dir` replacing an existing output
and `aes-gate score` writing scores and sidecar, killed at every step, leave whole outputs and debris the next
run sweeps. Kills are simulated in forked children that `os._exit` at the n-th file-system call."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from stages.lib.core import atomic
from stages.lib.core.atomic import atomic_dir, atomic_path, is_stale_temp, sweep_stale_temps
from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
KILLED = 9  # exit status of a child "killed" at its n-th call
CALLS = ("os.replace", "os.rename", "os.unlink", "os.rmdir", "shutil.rmtree", "atomic._exchange")


def temps(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".tmp"))


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for_zombie(pid: int) -> None:
    deadline = time.monotonic() + 30
    while state(pid) != "Z":
        assert time.monotonic() < deadline, f"child {pid} never exited"
        time.sleep(0.01)


def in_child(body: Callable[[], None], kill_at: int | None = None) -> int:
    """Run `body` in a forked child; with `kill_at`, it exits at once (status KILLED, no cleanup) on its
    `kill_at`-th call of CALLS. Reaped; return the exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            if kill_at is not None:
                count = [0]
                for dotted in CALLS:
                    owner_name, name = dotted.split(".")
                    owner = {"os": os, "shutil": shutil, "atomic": atomic}[owner_name]
                    if hasattr(owner, name):
                        setattr(owner, name, _counted(getattr(owner, name), count, kill_at))
            body()
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _counted(function: Callable, count: list[int], kill_at: int) -> Callable:
    def wrapper(*args, **kwargs):
        count[0] += 1
        if count[0] == kill_at:
            os._exit(KILLED)
        return function(*args, **kwargs)
    return wrapper


def tree(root: Path) -> dict[str, str] | None:
    if not root.exists():
        return None
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def fill(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


# --- what is stale --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("directory", [False, True], ids=["atomic_path", "atomic_dir"])
def test_a_zombie_writers_temp_is_swept(tmp_path, directory):
    """The writer died but is not reaped yet: its pid still exists (a zombie), its lock is gone."""
    target = tmp_path / "data" / ("out" if directory else "out.json")
    pid = os.fork()
    if pid == 0:
        try:
            writer = (atomic_dir if directory else atomic_path)(target)  # kept referenced: never closed
            tmp = writer.__enter__()
            (tmp / "part.txt" if directory else tmp).write_text("half")
        finally:
            os._exit(0)
    try:
        wait_for_zombie(pid)
        debris = temps(tmp_path)
        assert len(debris) == 1 and f".{pid}-" in debris[0].name and is_stale_temp(debris[0])
        assert sweep_stale_temps([tmp_path / "data"]) == debris
        assert temps(tmp_path) == [] and not target.exists()
    finally:
        os.waitpid(pid, 0)


@pytest.mark.parametrize("pid", [os.getppid(), 1], ids=["parent", "init"])
def test_a_temp_named_with_a_live_unrelated_pid_is_swept(tmp_path, pid):
    """A reused pid (here: a process that wrote nothing) does not keep a dead writer's temp alive."""
    (tmp_path / "sub").mkdir()
    debris = [tmp_path / f".out.json.{pid}-abcdefgh.tmp", tmp_path / f".run.{pid}-abcd_123.tmp"]
    debris[0].write_text("half")
    debris[1].mkdir()
    (debris[1] / "part.txt").write_text("half")
    assert all(is_stale_temp(p) for p in debris)
    assert sorted(sweep_stale_temps([tmp_path])) == sorted(debris)
    assert temps(tmp_path) == [] and (tmp_path / "sub").is_dir()


LIVE_WRITER = """
import os, sys, time
from pathlib import Path
from stages.lib.core import atomic
if sys.argv[2] == "foreign-pid":
    os.getpid = lambda: 999999999  # the pid the name carries is not one the sweeper can see (another pid namespace)
root = Path(sys.argv[1])
with atomic.atomic_path(root / "out.json") as tmp, atomic.atomic_dir(root / "out") as folder:
    tmp.write_text("half")
    (folder / "part.txt").write_text("half")
    print("writing", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("named", ["own-pid", "foreign-pid"])
def test_a_live_writers_temps_are_kept(tmp_path, named):
    """A writer in another process holds its temps' locks: not stale, whatever pid their names carry."""
    proc = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(tmp_path), named], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        live = temps(tmp_path)
        assert len(live) == 2
        assert not any(is_stale_temp(p) for p in live)
        assert sweep_stale_temps([tmp_path]) == []
        assert temps(tmp_path) == live
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert sorted(sweep_stale_temps([tmp_path])) == live  # its lock died with it


def test_a_temp_this_process_is_writing_is_live(tmp_path):
    with atomic_path(tmp_path / "a.json") as tmp, atomic_dir(tmp_path / "b") as folder:
        tmp.write_text("half")
        assert not is_stale_temp(tmp) and not is_stale_temp(folder)
        assert sweep_stale_temps([tmp_path]) == []
        assert sweep_stale_temps([tmp_path]) == []  # the probe released nothing of the writer's
    assert (tmp_path / "a.json").read_text() == "half" and (tmp_path / "b").is_dir()


# --- atomic_dir replacing an existing output, killed at every step --------------------------------------------

OLD = {"a.txt": "old a", "b.txt": "old b", "sub/c.txt": "old c"}
NEW = {"a.txt": "new a", "n.txt": "new n"}


@pytest.mark.parametrize("exchange", [True, False], ids=["swap", "rename-aside"])
def test_atomic_dir_killed_at_every_step_leaves_a_whole_output(tmp_path, monkeypatch, exchange):
    """Swapping (RENAME_EXCHANGE): the target is always the old output or the new one, whole. Where the
    filesystem cannot swap: also possibly absent between the two renames, never partial or mixed. The sweep
    then removes every temp."""
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False, raising=False)
    target = tmp_path / "data" / "out"

    def write() -> None:
        with atomic_dir(target) as out:
            fill(out, NEW)

    allowed = [OLD, NEW] if exchange else [OLD, NEW, None]
    kill_at = 0
    while True:
        kill_at += 1
        assert kill_at < 100
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
        target.mkdir(parents=True)
        fill(target, OLD)
        status = in_child(write, kill_at)
        assert tree(target) in allowed, f"killed at call {kill_at}: {tree(target)}"
        sweep_stale_temps([tmp_path / "data"])
        assert temps(tmp_path) == [], f"killed at call {kill_at}"
        assert tree(target) in allowed
        if status == 0:
            assert tree(target) == NEW
            break
        assert status == KILLED
    assert kill_at > 2  # the kill points covered more than the start and the end


# --- aes-gate score: scores and sidecar -----------------------------------------------------------------------

@pytest.fixture
def scoring(tmp_path):
    """`score_file` with a stand-in scorer (no corpus, no model): returns run(input_texts) -> the sidecar."""
    from stages.lib.serving import cli
    from stages.lib.serving.flags import FLAGS
    from stages.lib.serving.scorer import output_columns

    artifact_dir = tmp_path / "artifact"
    artifact_dir.mkdir()
    (artifact_dir / "manifest.json").write_text("{}")
    targets = ("Overall",)

    class Scorer:
        handcrafted: list[str] = []  # noqa: RUF012
        columns = output_columns(targets)
        artifact = SimpleNamespace(path=artifact_dir, manifest={"arm": "stand-in", "kind": "test"},
                                   schema=SimpleNamespace(text="full_text", prompt="prompt", targets=targets))

        def score_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
            words = [len(t.split()) for t in batch["text"]]
            table = pd.DataFrame({"id": batch["id"], "line": batch["line"], "prompt": batch["prompt"],
                                  "essay_id": batch["id"], "n_words": words, "scored": 1, "Overall": 3.0,
                                  "Overall_continuous": [w / 10 for w in words], "flags": "", "flag_details": "",
                                  **{f"flag_{f}": 0 for f in FLAGS}})
            return table[self.columns]

    out = tmp_path / "out" / "scores.csv"

    def run(texts: list[str]) -> dict:
        source = tmp_path / "essays.csv"
        pd.DataFrame({"id": [f"e{i}" for i in range(len(texts))], "prompt": "p", "full_text": texts}).to_csv(
            source, index=False)
        return cli.score_file(source, out, model=str(artifact_dir), decision=tmp_path / "none.json", scorer=Scorer(),
                              progress=False, batch_size=2)

    return SimpleNamespace(run=run, out=out, sidecar=cli.provenance_path(out))


def matching_pair(scoring) -> bool:
    """No scores without the sidecar that describes them (a sidecar alone is allowed)."""
    if not scoring.out.exists():
        return True
    if not scoring.sidecar.exists():
        return False
    return json.loads(scoring.sidecar.read_text())["scores"]["sha256"] == \
        hashlib.sha256(scoring.out.read_bytes()).hexdigest()


def test_score_killed_at_every_step_never_leaves_scores_without_their_sidecar(scoring):
    old_texts, new_texts = ["one two three", "four five", "six"], ["a b c d e f g", "h i j k", "l", "m n"]
    kill_at, left = 0, {}
    while True:
        kill_at += 1
        assert kill_at < 100
        shutil.rmtree(scoring.out.parent, ignore_errors=True)
        scoring.run(old_texts)
        old = scoring.out.read_bytes()
        status = in_child(lambda: scoring.run(new_texts), kill_at)
        assert matching_pair(scoring), f"killed at call {kill_at}"
        if status == 0:
            break
        assert status == KILLED
        record = scoring.run(old_texts)  # the next run sweeps the killed one's temps and writes a matching pair
        assert matching_pair(scoring) and record["scores"]["rows"] == 3 and scoring.out.read_bytes() == old
        left[kill_at] = [p.name for p in temps(scoring.out.parent)]
    assert kill_at > 2
    assert left == {k: [] for k in left}, "temps the next run did not sweep, by kill point"
    assert temps(scoring.out.parent) == [] and matching_pair(scoring)
    assert pd.read_csv(scoring.out)["id"].tolist() == ["e0", "e1", "e2", "e3"]


def test_score_sweeps_only_stale_temps_in_its_out_folder(scoring):
    folder = scoring.out.parent
    folder.mkdir(parents=True)
    pid = os.getppid()
    stale = [folder / f".scores.csv.{pid}-abcdefgh.tmp", folder / f".other.parquet.{pid}-abcd_123.tmp"]
    live = folder / f".busy.csv.{pid}-zzzzzzzz.tmp"
    keep = [folder / "notes.tmp", folder / ".x.1234-abc.tmp", folder / "nested" / f".n.csv.{pid}-abcdefgh.tmp", live]
    for path in [*stale, *keep]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    with live.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        scoring.run(["one two", "three"])
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    assert matching_pair(scoring)
