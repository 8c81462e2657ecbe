"""The fairness analyses, continuous-score QWK and DSM against RSMTool 12.0.0's own figures on the same invented
rows (`tests/rsmtool_reference.json`, written by `tools/rsmtool_reference.py` in an environment with RSMTool),
and against what a planted subgroup bias must do to them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.lib.data.schema import DatasetSchema, ScoreGrid
from stages.lib.scoring import metrics as m
from stages.lib.scoring.fairness import fairness_analyses, ordered_levels
from tests.fairness_rows import fairness_rows

REFERENCE = json.loads((Path(__file__).with_name("rsmtool_reference.json")).read_text())


@pytest.mark.parametrize("system", ["grid", "continuous"])
def test_fairness_analyses_equal_rsmtools(system):
    rows = fairness_rows()
    ours = fairness_analyses(rows["human"].to_numpy(), rows[system].to_numpy(), rows["group"])
    theirs = REFERENCE[system]
    assert ours["base_group"] == theirs["base_group"]
    for key in ("osa", "osd", "csd"):
        assert ours[key]["r2_adj"] == pytest.approx(theirs[key]["r2_adj"], abs=1e-10), key
        assert ours[key]["p"] == pytest.approx(theirs[key]["p"], rel=1e-7), key


@pytest.mark.parametrize("system", ["grid", "continuous"])
def test_continuous_qwk_and_dsm_equal_rsmtools(system):
    rows = fairness_rows()
    human, scores = rows["human"].to_numpy(), rows[system].to_numpy()
    assert m.continuous_qwk(human, scores) == pytest.approx(REFERENCE[system]["qwk"], abs=1e-12)
    for level, expected in REFERENCE[system]["dsm"].items():
        mask = (rows["group"] == level).to_numpy()
        assert m.dsm(human[mask], scores[mask], human, scores) == pytest.approx(expected, abs=1e-12), level


def test_continuous_qwk_on_integer_scores_is_the_categorical_qwk():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    human = rng.integers(0, 9, 300)
    system = np.clip(human + rng.integers(-2, 3, 300), 0, 8)
    assert m.continuous_qwk(human, system) == pytest.approx(cohen_kappa_score(human, system, weights="quadratic"))


def test_a_planted_bias_shows_in_the_difference_analyses_and_an_unbiased_scorer_shows_none():
    rows = fairness_rows(n=2000)
    fair = rows["human"] + np.random.default_rng(1).normal(0, 0.4, len(rows))
    biased = fair + 0.5 * (rows["group"] == "b")
    clean = fairness_analyses(rows["human"], fair, rows["group"])
    shifted = fairness_analyses(rows["human"], biased, rows["group"])
    assert clean["osd"]["p"] > 0.01 and clean["csd"]["p"] > 0.01
    assert shifted["osd"]["p"] < 1e-10 and shifted["csd"]["p"] < 1e-10
    assert shifted["osd"]["r2_adj"] > 0.05 > clean["osd"]["r2_adj"]


def test_the_base_group_is_the_largest_with_ties_broken_alphabetically():
    assert ordered_levels(pd.Series(["z", "z", "b", "b", "a"])) == ["b", "z", "a"]


def test_own_scale_errors_are_each_prompts_rubric_errors_and_shares_of_its_range():
    from stages.lib.scoring.evaluation import own_scale_errors

    schema = DatasetSchema(text="full_text", prompt="prompt", targets=("Overall", "Vocabulary"), primary="Overall",
                           grid=ScoreGrid(0.0, 1.0, 0.1), subgroups=(),
                           prompt_grids={"wide": ScoreGrid(0.0, 40.0, 1.0), "narrow": ScoreGrid(0.0, 4.0, 1.0)})
    frame = pd.DataFrame({"prompt": ["wide"] * 2 + ["narrow"] * 2,
                          "true_Overall": [10.0, 20.0, 1.0, 2.0], "pred_Overall": [14.0, 17.0, 1.5, 9.0],
                          "true_Vocabulary": [5.0, 5.0, 3.0, 3.0], "pred_Vocabulary": [7.0, 3.0, 3.0, 3.0]})
    out = own_scale_errors(frame, schema)
    wide, narrow = out["by_prompt"]["wide"], out["by_prompt"]["narrow"]
    assert wide["rmse"] == pytest.approx(np.sqrt((16 + 9) / 2))
    assert wide["rmse_share"] == pytest.approx(wide["rmse"] / 40)
    assert narrow["rmse"] == pytest.approx(np.sqrt((0.25 + 4) / 2))  # 9.0 is clipped to the prompt's maximum, 4
    assert wide["mcrmse"] == pytest.approx(2.0) and narrow["mcrmse"] == pytest.approx(0.0)  # the trait only
    assert out["rmse_share_mean"] == pytest.approx((wide["rmse_share"] + narrow["rmse_share"]) / 2)
