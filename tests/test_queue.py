"""Parallel experiments: a two-seed sweep queued with `dvc exp run --queue` and run by `dvc queue
start --jobs 2`, in a scratch DVC project whose stages are this repository's finetune and collect stages on the
tiny backbone. Both queued experiments complete, and each writes byte-for-byte what the same experiment writes
when run on its own (`dvc exp run`, one after the other)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.tiny_backbone import invented_essays, make_tiny_backbone, tiny_params, write_project

pytestmark = pytest.mark.queue
SEEDS = (7, 8)
# The sweep's own variables live in sweep.yaml (params.yaml is schema-checked by every stage); a real sweep
# over seeds × arms uses the pipeline's params instead: see docs/scaling.md.
DVC_YAML = """\
vars:
  - sweep.yaml
stages:
  preflight:
    cmd: python -m stages.preflight
    deps:
      - data/folds/prompt_holdout/fold_0
    params:
      - finetune.budgets.cpu
    metrics:
      - metrics/preflight.json:
          cache: false
  finetune:
    cmd: python -m stages.finetune --arm ${sweep.arm} --scheme prompt_holdout --fold 0 --seed ${sweep.seed}
    deps:
      - metrics/preflight.json
      - data/folds/prompt_holdout/fold_0
    params:
      - sweep.yaml:
          - sweep
      - finetune.budgets.cpu
    outs:
      - data/runs/${sweep.arm}/prompt_holdout/seed_${sweep.seed}/fold_0
  collect:
    cmd: python -m stages.collect --arm ${sweep.arm} --scheme prompt_holdout --seed ${sweep.seed}
    deps:
      - data/runs/${sweep.arm}/prompt_holdout/seed_${sweep.seed}/fold_0
    outs:
      - data/predictions/${sweep.arm}_prompt_holdout/seed_${sweep.seed}.parquet
    metrics:
      - metrics/training/${sweep.arm}_prompt_holdout/seed_${sweep.seed}.json:
          cache: false
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("AES_PARAMS", None)
    return env


def run(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def project(root: Path, backbone: Path) -> Path:
    """A git + DVC project: tiny params (both seeds selectable), invented folds, the two-stage dvc.yaml."""
    root.mkdir()
    write_project(root, invented_essays(48, 4, seed=2), n_folds=2)
    params = tiny_params(backbone, [0])
    params["seeds"]["finetune"] = list(SEEDS)
    params["finetune"]["budgets"]["cpu"].update(threads=1, seeds=list(SEEDS))
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "sweep.yaml").write_text("sweep:\n  arm: lora\n  seed: 7\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / ".gitignore").write_text("/data/runs\n/data/predictions\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "base"]):
        run(cmd, root)
    return root


def experiments(root: Path) -> dict[int, dict]:
    """Each experiment's seed, status and output hashes, from `dvc exp show --json` (the baseline left out)."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root))
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for revision in exp["revs"]:
                data = revision["data"]
                seed = data["params"]["sweep.yaml"]["data"]["sweep"]["seed"]
                outs = {path: out["hash"] for path, out in data["outs"].items() if path.startswith("data/predictions")}
                found[seed] = {"status": revision.get("experiment", {}).get("status") or data.get("status"),
                               "outs": outs, "name": revision.get("name")}
    return found


def wait_for_queue(root: Path, limit_s: float = 240) -> str:
    """Poll `dvc queue status` until nothing is queued or running; return the last status table."""
    deadline = time.monotonic() + limit_s
    while True:
        status = run(["dvc", "queue", "status"], root)
        if not any(word in status for word in ("Queued", "Running")):
            return status
        assert time.monotonic() < deadline, f"queue still busy after {limit_s} s:\n{status}"
        time.sleep(2)


def test_queued_sweep_matches_experiments_run_one_by_one(tmp_path_factory):
    backbone = make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))
    base = tmp_path_factory.mktemp("queue")
    queued, single = project(base / "queued", backbone), project(base / "single", backbone)

    for seed in SEEDS:
        run(["dvc", "exp", "run", "--queue", "-S", f"sweep.yaml:sweep.seed={seed}", "-n", f"seed{seed}"], queued)
    run(["dvc", "queue", "start", "--jobs", "2"], queued)
    status = wait_for_queue(queued)
    assert status.count("Success") == 2 and "Failed" not in status, status

    for seed in SEEDS:  # the same experiments, one after the other, in the workspace
        run(["dvc", "exp", "run", "-S", f"sweep.yaml:sweep.seed={seed}", "-n", f"seed{seed}"], single)

    from_queue, one_by_one = experiments(queued), experiments(single)
    assert sorted(from_queue) == sorted(one_by_one) == list(SEEDS)
    for seed in SEEDS:
        assert from_queue[seed]["name"] == f"seed{seed}"
        hashes = from_queue[seed]["outs"]
        assert list(hashes) == [f"data/predictions/lora_prompt_holdout/seed_{seed}.parquet"] and all(hashes.values())
        assert hashes == one_by_one[seed]["outs"], f"seed {seed}: queued predictions differ from a single run"
    assert from_queue[7]["outs"] != {}  # and the two seeds did train differently
    assert set(from_queue[7]["outs"].values()).isdisjoint(from_queue[8]["outs"].values())

    table = run(["dvc", "exp", "show", "--only-changed", "--drop", ".*", "--keep", r"seed|Experiment|val_qwk",
                 "--no-pager", "--md"], queued)
    assert "seed8" in table and "seed7" in table
