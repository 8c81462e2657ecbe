"""Metrics on a corpus with per-prompt scales and a trait one prompt does not score, checked against values
worked out by hand, and the scale mapping and calibration they rest on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.params import Dataset, Evaluate
from stages.lib.data.schema import DatasetSchema
from stages.lib.gate.bootstrap import MetricConfig, arm_counts, point_estimate
from stages.lib.scoring.calibration import CutpointCalibrator, to_prompt_grids
from stages.lib.scoring.evaluation import summarise
from stages.lib.scoring.predictions import validate_predictions

SCHEMA = DatasetSchema.from_dataset(Dataset.model_validate({
    "text": "text", "prompt": "prompt", "targets": ["Overall", "Trait"], "primary": "Overall",
    "grid": {"min": 1, "max": 5, "step": 1}, "prompt_grids": {"B": {"min": 0, "max": 8, "step": 1}},
    "prompt_targets": {"B": ["Overall"]}}))
CFG = Evaluate(min_prompt_n=1, bottom_k=1, low_tail=2.0, high_tail=4.0)


def constructed() -> pd.DataFrame:
    """Prompt A (fold 0) on the common grid 1–5 scoring both targets; prompt B (fold 1) on 0–8, Overall only."""
    nan = float("nan")
    return pd.DataFrame({
        "essay_id": [f"e{i}" for i in range(8)], "fold": [0] * 4 + [1] * 4, "prompt": ["A"] * 4 + ["B"] * 4,
        "n_words": [250] * 8,
        "true_Overall": [1, 2, 3, 4, 0, 2, 4, 8], "pred_Overall": [1.2, 2.1, 3.6, 4.0, 0.3, 3.8, 4.1, 7.9],
        "grid_Overall": [1, 2, 4, 4, 0, 4, 4, 8],
        "true_Trait": [2, 3, 4, 5, nan, nan, nan, nan], "pred_Trait": [2.5, 3.0, 4.0, 4.5, 3.0, 3.0, 3.0, 3.0],
        "grid_Trait": [2, 3, 4, 4, nan, nan, nan, nan],
    }).astype({c: float for c in ("true_Overall", "pred_Overall", "grid_Overall")})


def test_metrics_match_the_hand_computed_values():
    s = summarise(validate_predictions(constructed(), SCHEMA, "constructed"), SCHEMA, CFG)
    # A: O = (0,0),(1,1),(2,3),(3,3); Σw·O = 1, Σw·E = (14 + 6 + 2·14)/4 = 12 -> 11/12.
    # B on 0–8: O = (0,0),(2,4),(4,4),(8,8); Σw·O = 4, Σw·E = (84 + 2·36 + 116)/4 = 68 -> 1 − 4/68.
    qwk_a, qwk_b = 11 / 12, 1 - 4 / 68
    assert s["qwk"]["per_fold"] == pytest.approx([qwk_a, qwk_b])
    assert s["qwk"]["averaged_over"] == "folds" and s["qwk"]["mean"] == pytest.approx((qwk_a + qwk_b) / 2)
    assert s["qwk"]["prompt_mean"] == pytest.approx((qwk_a + qwk_b) / 2)
    assert s["qwk"]["pooled"] is None and s["qwk"]["pooled_omitted"]
    # Trait, prompt A only: O = (1,1),(2,2),(3,3),(4,3); Σw·O = 1, Σw·E = (14 + 6 + 2·6)/4 = 8 -> 7/8.
    assert s["qwk_by_trait"]["Trait"]["mean"] == pytest.approx(7 / 8)
    assert s["qwk_by_trait"]["Trait"]["n_prompts"] == 1 and s["qwk_by_trait"]["Overall"]["n_prompts"] == 2
    assert s["qwk_by_trait"]["Trait"]["pooled"] == pytest.approx(7 / 8)  # one prompt: one scale, pooling is fine
    # MCRMSE over the one trait, prompt A's essays only: errors .5, 0, 0, .5.
    assert s["mcrmse"] == pytest.approx(np.sqrt(0.5 / 4))
    # agreement on each prompt's own grid: exact 3 + 3 of 8, adjacent 4 + 3 of 8
    assert s["agreement"]["exact"] == pytest.approx(6 / 8) and s["agreement"]["adjacent"] == pytest.approx(7 / 8)
    # RMSE on the common scale (B: 1 + v/2): errors A 0,0,1,0 and B 0,1,0,0
    assert s["agreement"]["rmse"] == pytest.approx(np.sqrt(2 / 8))
    # tails on the common scale: low = truths 1, 2 of each prompt (B's 2 -> 4 is two steps off), high = A's 4, B's 8
    assert s["tails"] == {"low_adjacent": pytest.approx(3 / 4), "low_n": 4, "high_adjacent": 1.0, "high_n": 2}
    assert s["per_prompt_qwk"] == {"A": pytest.approx(qwk_a), "B": pytest.approx(qwk_b)}


def test_the_gate_bootstrap_agrees_with_the_summary_on_mixed_scales():
    frame = constructed()
    s = summarise(frame, SCHEMA, CFG)
    counts = arm_counts(frame, SCHEMA, ["A", "B"], [0, 1], MetricConfig(1, 1, 2.0, 4.0))
    assert counts.mean_over == "folds"
    assert point_estimate(counts, "mean_qwk", MetricConfig(1, 1, 2.0, 4.0)) == pytest.approx(s["qwk"]["mean"])
    assert point_estimate(counts, "low_tail_adjacent", MetricConfig(1, 1, 2.0, 4.0)) == pytest.approx(3 / 4)
    mixed = frame.assign(fold=0)  # one fold holding both scales: mean over prompts
    counts = arm_counts(mixed, SCHEMA, ["A", "B"], [0], MetricConfig(1, 1, 2.0, 4.0))
    summary = summarise(mixed, SCHEMA, CFG)
    assert counts.mean_over == "prompts" and summary["qwk"]["averaged_over"] == "prompts"
    assert point_estimate(counts, "mean_qwk", MetricConfig(1, 1, 2.0, 4.0)) == pytest.approx(summary["qwk"]["mean"])
    assert np.isnan(summary["qwk"]["per_fold"][0])


def test_a_score_on_an_unscored_trait_is_refused():
    frame = constructed()
    frame.loc[5, "true_Trait"] = 3.0
    with pytest.raises(Exception, match=r"row 5: column true_Trait holds 3, but prompt 'B' does not score Trait"):
        validate_predictions(frame, SCHEMA, "constructed")


def test_common_scale_round_trip_and_identity():
    values, prompts = np.array([0.0, 4.0, 8.0, 2.0]), np.array(["B", "B", "B", "A"], dtype=object)
    common = SCHEMA.to_common(values, prompts, "Overall")
    assert common.tolist() == [1.0, 3.0, 5.0, 2.0]
    assert SCHEMA.from_common(common, prompts, "Overall").tolist() == values.tolist()
    plain = DatasetSchema.from_dataset(Dataset.model_validate({"text": "t", "prompt": "p", "targets": ["Overall"],
                                                               "primary": "Overall",
                                                               "grid": {"min": 1, "max": 5, "step": 0.5}}))
    assert plain.single_scale and not SCHEMA.single_scale
    odd = np.array([1.1234567891234, 4.99999999999])
    assert plain.to_common(odd, np.array(["x", "y"], dtype=object), "Overall").tobytes() == odd.tobytes()


def test_cutpoints_carry_onto_another_grid_monotonically():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, 400).astype(float)
    pred = 3 + 0.5 * (truth - 3) + rng.normal(0, 0.3, 400)  # shrunk towards the mean, as regressions are
    calibrator = CutpointCalibrator(SCHEMA.grid).fit(pred, truth)
    on_common = calibrator.predict(pred)
    assert np.array_equal(np.clip(np.rint(calibrator.transform(pred)), 1, 5), on_common)  # same categories
    x = np.linspace(1, 5, 200)
    mapped = to_prompt_grids(calibrator, x, np.array(["B"] * 200, dtype=object), SCHEMA, "Overall")
    assert np.all(np.diff(mapped) >= 0) and set(mapped) <= set(range(9))
    assert mapped.max() - mapped.min() >= 6  # the cutpoints stretch the shrunk predictions over B's scale
    trait = to_prompt_grids(calibrator, x[:3], np.array(["B"] * 3, dtype=object), SCHEMA, "Trait")
    assert np.isnan(trait).all()  # B does not score the trait
