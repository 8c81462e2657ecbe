"""`tools.equivalence`: two runs' QWK (checked against scikit-learn), their differences and the fold-noise verdict."""

from __future__ import annotations

import json
import sys

import gate_synth
import numpy as np
import pytest
import sklearn_metrics as sk

from stages.lib.core.errors import InputError
from tools import equivalence


@pytest.fixture
def runs(params, schema):
    frame = gate_synth.essays(seed=3)
    return gate_synth.predict(frame, seed=1), frame


def test_identical_runs_are_equivalent(runs, schema, params):
    table, _ = runs
    result = equivalence.compare_runs(table, table.sample(frac=1.0, random_state=0), schema, params.evaluate)
    assert result["delta"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert result["delta"]["per_fold"] == pytest.approx([0.0] * 5, abs=1e-12)
    assert result["within_fold_noise"] and result["same_grid_score"] == 1.0
    assert result["fold_noise"] == pytest.approx(np.std(sk.fold_qwk(table), ddof=1) / np.sqrt(5), abs=1e-12)


def test_a_worse_run_is_outside_fold_noise(runs, schema, params):
    table, frame = runs
    worse = gate_synth.predict(frame, seed=1, noise=1.2)  # same essays, far noisier predictions
    result = equivalence.compare_runs(table, worse, schema, params.evaluate)
    assert result["delta"]["mean"] < -result["fold_noise"] and not result["within_fold_noise"]
    assert all(d < 0 for d in result["delta"]["per_fold"])
    assert result["same_grid_score"] < 0.9


# same essays and folds, other predictions: as good (within fold noise), a little better, far worse
@pytest.mark.parametrize(("seed", "noise", "within"), [(3, 0.35, True), (7, 0.35, False), (1, 1.2, False)])
def test_figures_equal_sklearn_and_the_verdict_follows_them(runs, schema, params, seed, noise, within):
    table, frame = runs
    other = gate_synth.predict(frame, seed=seed, noise=noise)
    result = equivalence.compare_runs(table, other.sample(frac=1.0, random_state=1), schema, params.evaluate)
    cfg = params.evaluate
    for side, run in (("reference", table), ("candidate", other)):
        per_fold = sk.fold_qwk(run)
        assert result[side]["per_fold"] == pytest.approx(per_fold, abs=1e-12), side
        assert result[side]["mean"] == pytest.approx(np.mean(per_fold), abs=1e-12), side
        assert result[side]["std"] == pytest.approx(np.std(per_fold, ddof=1), abs=1e-12), side
        assert result[side]["worst_prompt"] == pytest.approx(
            sk.worst_prompt_qwk(run, cfg.min_prompt_n, cfg.bottom_k), abs=1e-12), side
    ref_folds, cand_folds = np.array(sk.fold_qwk(table)), np.array(sk.fold_qwk(other))
    delta, noise_se = cand_folds.mean() - ref_folds.mean(), np.std(ref_folds, ddof=1) / np.sqrt(5)
    assert result["delta"]["mean"] == pytest.approx(delta, abs=1e-12)
    assert result["delta"]["per_fold"] == pytest.approx((cand_folds - ref_folds).tolist(), abs=1e-12)
    assert result["delta"]["worst_prompt"] == pytest.approx(result["candidate"]["worst_prompt"]
                                                            - result["reference"]["worst_prompt"], abs=1e-12)
    assert result["fold_noise"] == pytest.approx(noise_se, abs=1e-12)
    assert result["within_fold_noise"] is bool(abs(delta) <= noise_se) is within
    same = (table["grid_Overall"].to_numpy() == other.set_index("essay_id").loc[table["essay_id"], "grid_Overall"])
    assert result["same_grid_score"] == pytest.approx(float(np.mean(same)), abs=1e-12) and result["same_grid_score"] < 1


def test_different_essays_fail_naming_one(runs, schema, params):
    table, _ = runs
    with pytest.raises(InputError, match=f"essay {table['essay_id'].iloc[-1]}"):
        equivalence.compare_runs(table, table.iloc[:-1], schema, params.evaluate, names=("a", "b"))
    moved = table.copy()
    moved.loc[moved.index[0], "fold"] = (moved["fold"].iloc[0] + 1) % 5
    with pytest.raises(InputError, match=f"essay {table['essay_id'].iloc[0]}"):
        equivalence.compare_runs(table, moved, schema, params.evaluate)


def test_command_writes_one_block_per_arm(runs, tmp_path, monkeypatch, capsys):
    _, frame = runs
    params = gate_synth.write_params(tmp_path)
    for root, seed in ((tmp_path / "straightforward", 1), (tmp_path, 2)):
        for arm in ("lora", "groupdro"):
            gate_synth.write_arm(root, arm, "prompt_holdout", gate_synth.predict(frame, seed=seed), params)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["equivalence", "--reference-root", "straightforward",
                                      "--arms", "lora", "groupdro", "--out", "metrics/eq.json"])
    equivalence.main()
    written = json.loads((tmp_path / "metrics/eq.json").read_text())
    assert set(written["arms"]) == {"lora", "groupdro"} and written["scheme"] == "prompt_holdout"
    source = written["arms"]["lora"]["reference"]["source"]
    assert source == "straightforward/data/predictions/lora_prompt_holdout/seed_1.parquet" and written["seed"] == 1
    assert "lora: QWK" in capsys.readouterr().out
