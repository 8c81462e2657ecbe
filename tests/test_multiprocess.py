"""Data-parallel training on the CPU: two gloo processes (`torch.distributed.run`, what `accelerate
launch` starts) with the same effective batch train the tiny model exactly like one process: every process
holds the same GroupDRO q and adversarial λ, the logged losses are every process's in global order, and the
finetune stage under two processes writes its run directory once, with one process's predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from tests.tiny_backbone import invented_essays, make_tiny_backbone, tiny_params, write_project

# Measured here: 0.0 (bit-identical) for every arm. The tolerance only leaves room for other BLAS builds;
# with dropout the processes draw different masks and the runs differ by more (not compared).
ATOL = 1e-6
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
ENV.pop("AES_PARAMS", None)
TWO = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _run(cmd: list[str], cwd) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))


def test_two_processes_train_exactly_like_one(backbone, tmp_path):
    worker = [str(REPO / "tests/multiprocess_worker.py"), str(backbone)]
    arms = ["groupdro", "adversarial", "lora"]
    _run([sys.executable, *worker, str(tmp_path / "one"), *arms], tmp_path)
    _run([*TWO, *worker, str(tmp_path / "two"), *arms], tmp_path)
    one = json.loads((tmp_path / "one/rank_0.json").read_text())
    ranks = [json.loads((tmp_path / f"two/rank_{k}.json").read_text()) for k in (0, 1)]
    for arm in arms:
        single, first, second = one[arm], ranks[0][arm], ranks[1][arm]
        assert (single["num_processes"], first["num_processes"]) == (1, 2)
        assert (single["accumulation"], first["accumulation"]) == (2, 1)  # same effective batch of 8 essays
        assert first["q"] == second["q"], f"{arm}: the processes hold different GroupDRO q"
        assert first["lam"] == second["lam"], f"{arm}: the processes hold different adversarial lambda"
        assert first["step_loss"] == second["step_loss"] and first["pred"] == second["pred"]
        assert first["micro_batches"] == first["loss_checks"] == single["micro_batches"] == 16
        np.testing.assert_allclose(first["step_loss"], single["step_loss"], rtol=0, atol=ATOL,
                                   err_msg=f"{arm}: losses differ from one process")
        np.testing.assert_allclose(first["pred"], single["pred"], rtol=0, atol=ATOL,
                                   err_msg=f"{arm}: predictions differ from one process")
        if arm == "groupdro":
            assert single["q"] != [1 / 3] * 3  # q moved, so equality is evidence
            np.testing.assert_allclose(first["q"], single["q"], rtol=0, atol=ATOL,
                                       err_msg="GroupDRO q differs from one process")
        if arm == "adversarial":
            assert first["lam"] == single["lam"] > 0.9


def test_finetune_stage_in_two_processes_writes_once_what_one_process_writes(backbone, tmp_path):
    params = tiny_params(backbone, [0, 1])
    budget = params["finetune"]["budgets"]["cpu"]
    budget.update(threads=1, head_dropout=0.0, encoder_dropout=0.0, max_train_essays=16)  # 4 batches of 4
    logs = {}
    for name, launch in (("one", [sys.executable]), ("two", TWO)):
        root = tmp_path / name
        write_project(root, invented_essays(48, 4, seed=2), n_folds=2)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        _run([sys.executable, "-m", "stages.preflight"], root)  # the speed settings every run takes
        _run([*launch, "-m", "stages.finetune", "--arm", "groupdro", "--scheme", "prompt_holdout", "--fold", "0"],
             root)
        run = root / "data/runs/groupdro/prompt_holdout/seed_7"
        assert [p.name for p in run.iterdir()] == ["fold_0"]  # one complete run directory, no leftovers
        logs[name] = json.loads((run / "fold_0/train_log.json").read_text())
        logs[name]["table"] = pd.read_parquet(run / "fold_0/predictions.parquet")
    one, two = logs["one"], logs["two"]
    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    assert two["training"]["accumulation_per_process"] == 1 and "num_processes" not in one["training"]
    assert two["training"]["micro_batches"] == one["training"]["micro_batches"] == 8  # 4 batches x 2 epochs
    assert two["finite_checks"]["training loss"] == 8
    assert two["finite_checks"]["prediction"] >= one["finite_checks"]["prediction"]
    weights = [log["diagnostics"]["objective"]["group_weights"] for log in (one, two)]
    np.testing.assert_allclose(list(weights[1].values()), list(weights[0].values()), rtol=0, atol=ATOL)
    numeric = one["table"].select_dtypes("number").columns
    pd.testing.assert_frame_equal(two["table"][numeric], one["table"][numeric], check_exact=False, rtol=0,
                                  atol=ATOL)
    assert two["table"].drop(columns=numeric).equals(one["table"].drop(columns=numeric))
