"""Metric definitions against hand-computed cases (DESIGN.md, "Definitions")."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from stages.lib.data.schema import ScoreGrid
from stages.lib.scoring import metrics as m
from stages.lib.scoring import qwk as qk
from stages.lib.scoring.calibration import CutpointCalibrator, RoundingCalibrator
from stages.lib.scoring.evaluation import descriptives, residual_by_subgroup, score_distribution, subgroup_dsm

GRID = ScoreGrid(1.0, 5.0, 0.5)


def test_grid_doubles_scores_to_categories():
    assert GRID.n_categories == 9
    assert GRID.to_category(np.array([1.0, 1.5, 5.0])).tolist() == [0, 1, 8]
    assert GRID.snap(np.array([0.2, 2.74, 2.76, 9.0])).tolist() == [1.0, 2.5, 3.0, 5.0]
    assert GRID.on_grid(np.array([1.0, 1.25, 5.5, 3.0])).tolist() == [True, False, False, True]


def test_qwk_hand_computed():
    # categories t=[0,0,1,2], p=[0,1,1,2]: observed weighted disagreement 1, expected 5 -> 1 - 1/5
    assert qk.qwk_categories(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3) == pytest.approx(0.8)
    truth, pred = np.array([1.0, 1.0, 1.5, 2.0]), np.array([1.0, 1.5, 1.5, 2.0])
    assert qk.qwk(truth, pred, GRID) == pytest.approx(0.8)


def test_qwk_uses_the_full_category_range():
    # categories 0 and 2 only: distances must stay 2 apart, as sklearn gives with explicit labels
    t, p = np.array([0, 0, 2, 2, 0]), np.array([0, 2, 2, 0, 0])
    expected = cohen_kappa_score(t, p, labels=np.arange(9), weights="quadratic")
    assert qk.qwk_categories(t, p, 9) == pytest.approx(expected)
    assert math.isnan(qk.qwk(np.array([2.0, 2.0]), np.array([2.0, 2.0]), GRID))  # one category: undefined


def test_qwk_matches_sklearn_on_random_data():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 9, 400)
    p = np.clip(t + rng.integers(-2, 3, 400), 0, 8)
    assert qk.qwk_categories(t, p, 9) == pytest.approx(cohen_kappa_score(t, p, weights="quadratic"))


def test_agreement_rates():
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.0, 2.5, 4.0, 4.0])
    assert m.exact_agreement(truth, pred, GRID) == 0.5
    assert m.adjacent_agreement(truth, pred, GRID) == 0.75


def test_mcrmse_smd_and_tails():
    truth = np.array([[1.0, 1.0], [3.0, 3.0]])
    pred = np.array([[2.0, 1.0], [2.0, 5.0]])
    assert m.mcrmse(truth, pred) == pytest.approx((1.0 + math.sqrt(2.0)) / 2)
    assert m.smd(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])) == pytest.approx(1.0)
    truth, pred = np.array([1.5, 2.0, 3.0, 4.0, 4.5]), np.array([1.5, 3.0, 3.0, 3.5, 3.5])
    tails = m.tail_adjacent(truth, GRID.to_category(truth), GRID.to_category(pred), 2.0, 4.0)
    assert tails == {"low_adjacent": 0.5, "low_n": 2, "high_adjacent": 0.5, "high_n": 2}


def test_worst_prompt_mean_of_bottom_k_eligible():
    per_prompt = {"a": (40, 0.9), "b": (40, 0.5), "c": (10, 0.1), "d": (35, 0.6), "e": (30, float("nan"))}
    value, names = m.worst_prompt_qwk(per_prompt, min_n=30, bottom_k=2)
    assert names == ["b", "d"]
    assert value == pytest.approx(0.55)
    assert math.isnan(m.worst_prompt_qwk(per_prompt, min_n=100, bottom_k=2)[0])


def test_cutpoints_never_worse_than_rounding_on_fitted_data():
    rng = np.random.default_rng(2)
    truth = GRID.snap(rng.normal(3.0, 0.6, 600))
    pred = 3.0 + 0.5 * (truth - 3.0) + rng.normal(0, 0.25, 600)  # shrunk toward the mean, as regressors do
    rounded = RoundingCalibrator(GRID).fit(pred, truth).predict(pred)
    calibrated = CutpointCalibrator(GRID).fit(pred, truth).predict(pred)
    assert qk.qwk(truth, calibrated, GRID) > qk.qwk(truth, rounded, GRID) + 0.05
    assert GRID.on_grid(calibrated).all()


def test_cutpoints_reduce_to_rounding_for_exact_predictions():
    truth = GRID.points().repeat(5)
    calibrated = CutpointCalibrator(GRID).fit(truth, truth).predict(truth)
    assert np.array_equal(calibrated, truth)


def test_dsm_hand_computed():
    # population truth [1,2,3,4] (mean 2.5, SD sqrt(5/3)), predictions [2,2,3,5] (mean 3, SD sqrt(2));
    # subgroup = the first two essays: z(prediction) = (2 - 3) / sqrt(2), z(truth) = (1.5 - 2.5) / sqrt(5/3)
    expected = -1 / math.sqrt(2) + 1 / math.sqrt(5 / 3)
    assert m.dsm([1.0, 2.0], [2.0, 2.0], [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 3.0, 5.0]) == pytest.approx(expected)
    assert math.isnan(m.dsm([1.0], [1.0], [2.0, 2.0], [1.0, 3.0]))  # constant truth: undefined


def test_evaluate_tables_hand_computed(schema):
    """The tables the report displays (evaluate writes them): descriptives, score distribution, SMD and DSM by
    subgroup level (missing values as one unrecorded level), residuals by level."""
    rows = pd.DataFrame({"true": [1.0, 2.0, 3.0, 4.0], "pred_grid": [2.0, 2.0, 3.0, 5.0],
                         "pred_continuous": [1.8, 2.2, 3.0, 5.0], "gender": ["a", "a", "b", None]})
    rows["residual"] = rows["pred_grid"] - rows["true"]
    rows["residual_continuous"] = rows["pred_continuous"] - rows["true"]
    d = descriptives(rows).iloc[0]
    assert (d["n"], d["human_mean"], d["system_mean"]) == (4, 2.5, 3.0)
    assert d["human_sd"] == pytest.approx(math.sqrt(5 / 3)) and d["system_sd"] == pytest.approx(math.sqrt(2))
    dist = score_distribution(rows, schema).set_index("score")
    assert dist["human"].sum() == 4 and dist.loc[2.0, "system"] == 2 and dist.loc[1.0, "human_share"] == 0.25
    table = subgroup_dsm(rows, schema).set_index("level")
    assert table["n"].to_dict() == {"a": 2, "b": 1, "missing": 1}
    assert table["recorded"].to_dict() == {"a": True, "b": True, "missing": False}
    assert table.at["a", "dsm"] == pytest.approx(-1 / math.sqrt(2) + 1 / math.sqrt(5 / 3))
    assert table.at["a", "smd"] == pytest.approx(0.5 / math.sqrt(0.5))  # (2 − 1.5) / SD(1, 2)
    by_level = residual_by_subgroup(rows, schema).set_index("level")
    assert by_level["n"].to_dict() == {"a": 2, "b": 1} and by_level.at["a", "mean_residual"] == pytest.approx(0.5)
