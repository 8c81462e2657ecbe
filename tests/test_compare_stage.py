"""The compare stage end to end on an invented workspace: flat keys, "not run" candidates, thresholds."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
from gate_synth import build_workspace, gpu_training

from stages import compare
from stages.lib.core.errors import InputError
from stages.lib.core.params import validate_params
from stages.lib.gate.bootstrap import Interval
from stages.lib.gate.criteria import Criterion, GateConfig, criterion_record


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    build_workspace(tmp_path, {"lora": {"noise": 0.3, "training": gpu_training(budget="cpu")}})
    return tmp_path


def test_gate_json_is_flat_and_complete(workspace):
    compare.main()
    gate = json.loads((workspace / "metrics/gate.json").read_text())
    assert all(not isinstance(v, dict | list) for v in gate.values())
    for field in ("delta", "ci_low", "ci_high", "threshold", "pass", "robust_pass", "evaluated"):
        assert f"lora.prompt_holdout.worst_prompt_qwk.{field}" in gate
    assert gate["lora.prompt_holdout.worst_prompt_qwk.threshold"] == pytest.approx(0.010)
    assert gate["lora.prompt_holdout.mean_qwk.threshold"] == pytest.approx(-0.003)
    assert gate["lora.stratified_text.mean_qwk.threshold"] == pytest.approx(-0.005)
    assert gate["lora.prompt_holdout.n_essays"] > 1000
    deltas = pd.read_csv(workspace / "plots/gate/deltas.csv")
    assert len(deltas) == 4 and set(deltas["arm"]) == {"lora"}
    assert (workspace / "plots/gate/deltas.png").stat().st_size > 1000  # compare owns the gate's figure


def test_missing_candidates_are_not_run(workspace, capsys):
    compare.main()
    gate = json.loads((workspace / "metrics/gate.json").read_text())
    assert "groupdro/prompt_holdout: not run" in capsys.readouterr().out
    for arm in ("adversarial", "groupdro"):
        assert gate[f"{arm}.evaluated"] == 0 and gate[f"{arm}.pass"] == 0
        assert gate[f"{arm}.prompt_holdout.run"] == 0
        assert gate[f"{arm}.prompt_holdout.worst_prompt_qwk.evaluated"] == 0
        assert f"{arm}.prompt_holdout.worst_prompt_qwk.delta" not in gate
    # lora ran prompt_holdout only (the CPU budget): the stability criterion is unevaluated and blocks a pass
    assert gate["lora.prompt_holdout.worst_prompt_qwk.evaluated"] == 1
    assert gate["lora.stratified_text.mean_qwk.evaluated"] == 0
    assert gate["lora.evaluated"] == 0 and gate["lora.pass"] == 0


def test_reference_is_required(workspace):
    (workspace / "data/predictions/xgb_prompt_holdout/seed_1.parquet").unlink()
    with pytest.raises(InputError, match=r"xgb_prompt_holdout/seed_1\.parquet: the reference"):
        compare.main()


def test_threshold_comes_from_params_and_decides_pass(params):
    cfg = GateConfig.from_params(params)
    assert [(c.scheme, c.metric) for c in cfg.criteria] == [
        ("prompt_holdout", "worst_prompt_qwk"), ("prompt_holdout", "mean_qwk"), ("prompt_holdout", "low_tail_adjacent"),
        ("prompt_holdout", "high_tail_adjacent"), ("stratified_text", "mean_qwk")]
    criterion = Criterion("prompt_holdout", "worst_prompt_qwk", 0.010)
    exact = criterion_record("lora", criterion, Interval(0.7, 0.69, 0.010, -0.02, 0.05, 100))
    assert exact["lora.prompt_holdout.worst_prompt_qwk.pass"] == 1  # equal to the threshold passes
    assert exact["lora.prompt_holdout.worst_prompt_qwk.robust_pass"] == 0  # interval crosses it
    below = criterion_record("lora", criterion, Interval(0.7, 0.691, 0.009, 0.0, 0.02, 100))
    assert below["lora.prompt_holdout.worst_prompt_qwk.pass"] == 0


def test_bad_gate_params_fail_clearly_at_load(params):
    """Every gate rule lives in the params schema, so a bad gate fails when any stage loads the params."""
    params = params.model_dump()  # a params.yaml mapping, as a stage would read it
    broken = {**params, "gate": {**params["gate"], "criteria": {"prompt_holdout": {"median_qwk": 0.0}}}}
    with pytest.raises(InputError,
                       match=r"^p\.yaml: gate\.criteria\.prompt_holdout: key 'median_qwk': expected one of "):
        validate_params(copy.deepcopy(broken), "p.yaml")
    broken = {**params, "gate": {**params["gate"], "candidates": ["xgb"]}}
    with pytest.raises(InputError, match=r"^p\.yaml: gate\.reference: got 'xgb', which is also in gate\.candidates"):
        validate_params(copy.deepcopy(broken), "p.yaml")
    broken = {**params, "gate": {**params["gate"], "criteria": {"prompt_holdout": {}}}}
    with pytest.raises(InputError, match=r"^p\.yaml: gate\.criteria\.prompt_holdout"):
        validate_params(copy.deepcopy(broken), "p.yaml")
