"""The paired prompt-cluster bootstrap: point estimates equal scikit-learn's and evaluate's, intervals are seeded,
resampling is by prompt, and it is fast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn_metrics as sk
from gate_synth import essays, predict

from stages.lib.core.errors import InputError
from stages.lib.gate.bootstrap import MetricConfig, align_pair, arm_counts, paired_bootstrap, resample_prompts
from stages.lib.scoring import qwk as qk
from stages.lib.scoring.evaluation import summarise

CFG = MetricConfig(min_prompt_n=30, bottom_k=5, low_tail=2.0, high_tail=4.0)
METRICS = ["mean_qwk", "worst_prompt_qwk", "low_tail_adjacent", "high_tail_adjacent"]


def counts_for(frame, schema):
    prompts = sorted(frame["prompt"].unique())
    folds = sorted(int(f) for f in frame["fold"].unique())
    return arm_counts(frame, schema, prompts, folds, CFG)


def test_qwk_from_confusion_matches_qwk_categories_and_batches():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 9, 300)
    p = np.clip(t + rng.integers(-2, 3, 300), 0, 8)
    matrix = qk.confusion_matrix(t, p, 9)
    assert qk.qwk_from_confusion(matrix) == pytest.approx(qk.qwk_categories(t, p, 9), abs=1e-12)
    stack = np.stack([matrix, matrix.T, np.zeros((9, 9))])
    batch = qk.qwk_from_confusion(stack)
    assert batch[:2] == pytest.approx([qk.qwk_categories(t, p, 9), qk.qwk_categories(p, t, 9)])
    assert np.isnan(batch[2])
    assert np.isnan(qk.qwk_categories(np.array([3, 3]), np.array([3, 3]), 9))


@pytest.mark.parametrize("scheme", ["prompt_holdout", "stratified_text"])
def test_point_estimates_equal_sklearn_and_evaluate(schema, params, scheme):
    base = essays(scheme, seed=3)
    ref_frame, cand_frame = predict(base, seed=4), predict(base, seed=9, noise=0.5, bias=0.1)
    expected = {arm: sk.gate_metrics(frame, CFG) for arm, frame in (("ref", ref_frame), ("cand", cand_frame))}
    assert all(expected["cand"][k] != pytest.approx(expected["ref"][k], abs=1e-3) for k in METRICS)
    result = paired_bootstrap(counts_for(cand_frame, schema), counts_for(ref_frame, schema), METRICS, CFG, 200, 0.95,
                              np.random.default_rng(0))
    for metric in METRICS:
        r = result[metric]
        assert r.candidate == pytest.approx(expected["cand"][metric], abs=1e-12), metric
        assert r.reference == pytest.approx(expected["ref"][metric], abs=1e-12), metric
        assert r.delta == pytest.approx(expected["cand"][metric] - expected["ref"][metric], abs=1e-12), metric
    summary = summarise(cand_frame, schema, params.evaluate)  # evaluate reports the same figures
    assert (summary["qwk"]["mean"], summary["worst_prompt_qwk"], summary["tails"]["low_adjacent"],
            summary["tails"]["high_adjacent"]) == pytest.approx([expected["cand"][k] for k in METRICS], abs=1e-12)
    counts = counts_for(ref_frame, schema)
    itself = paired_bootstrap(counts, counts, METRICS, CFG, 200, 0.95, np.random.default_rng(0))
    assert all(r.delta == 0 and r.ci_low == 0 and r.ci_high == 0 for r in itself.values())  # an arm against itself


def test_interval_contains_estimate_and_is_reproducible(schema):
    base = essays(seed=5)
    ref, cand = counts_for(predict(base, seed=6), schema), counts_for(predict(base, seed=7, noise=0.3), schema)
    first = paired_bootstrap(cand, ref, METRICS, CFG, 500, 0.95, np.random.default_rng(42))
    again = paired_bootstrap(cand, ref, METRICS, CFG, 500, 0.95, np.random.default_rng(42))
    other = paired_bootstrap(cand, ref, METRICS, CFG, 500, 0.95, np.random.default_rng(43))
    assert first == again
    assert first != other
    for r in first.values():
        assert r.ci_low <= r.delta <= r.ci_high
        assert r.ci_low < r.ci_high
        assert r.n_valid == 500


def _tail_case(schema, uniform: bool):
    """40 prompts × 50 essays, all with human score 1.5 (low tail). The reference is always adjacent; the
    candidate misses half the essays: within every prompt (uniform) or on every second prompt (clustered)."""
    rows = []
    for p in range(40):
        for i in range(50):
            bad = (i % 2 == 0) if uniform else (p % 2 == 0)
            rows.append({"essay_id": f"{p}-{i}", "fold": p % 5, "prompt": f"P{p:02d}", "true_Overall": 1.5,
                         "ref": 2.0, "cand": 3.5 if bad else 1.0})
    frame = pd.DataFrame(rows)
    ref = frame.assign(grid_Overall=frame["ref"])
    cand = frame.assign(grid_Overall=frame["cand"])
    return paired_bootstrap(counts_for(cand, schema), counts_for(ref, schema), ["low_tail_adjacent"], CFG, 1000, 0.95,
                            np.random.default_rng(1))["low_tail_adjacent"]


def test_resampling_is_by_prompt(schema):
    clustered, uniform = _tail_case(schema, uniform=False), _tail_case(schema, uniform=True)
    assert clustered.delta == pytest.approx(-0.5) and uniform.delta == pytest.approx(-0.5)
    # Between-prompt variance only: prompt resampling gives a wide interval (an essay bootstrap of 2000
    # essays would give about ±0.02) ...
    assert clustered.ci_high - clustered.ci_low > 0.2
    # ... and with no between-prompt variance every prompt resample gives the same delta.
    assert uniform.ci_high - uniform.ci_low < 1e-9


def test_resample_weights_count_draws():
    draws, weights = resample_prompts(7, 50, np.random.default_rng(0))
    assert draws.shape == weights.shape == (50, 7)
    assert (weights.sum(axis=1) == 7).all()
    assert (weights[3] == np.bincount(draws[3], minlength=7)).all()


def test_pair_must_cover_the_same_essays(schema):
    base = essays(seed=8)
    ref, cand = predict(base, seed=1), predict(base, seed=2)
    with pytest.raises(InputError, match="lora/prompt_holdout: predictions cover"):
        align_pair(cand.iloc[10:], ref, schema, "lora", "prompt_holdout")
    shifted = cand.assign(fold=(cand["fold"] + 1) % 5)
    with pytest.raises(InputError, match="lora/prompt_holdout: column fold differs"):
        align_pair(shifted, ref, schema, "lora", "prompt_holdout")
    shuffled = cand.sample(frac=1.0, random_state=0)
    assert (align_pair(shuffled, ref, schema, "lora", "prompt_holdout")["essay_id"] == ref["essay_id"]).all()


def test_seed_level_resampling_widens_the_interval_by_the_training_noise(schema):
    """Two-level bootstrap: identical seeds change nothing; seeds that disagree widen the interval, and the
    noise SD is the SD of the per-seed mean QWKs (computed with scikit-learn)."""
    base = essays(seed=5)
    ref = counts_for(predict(base, seed=6), schema)
    one = counts_for(predict(base, seed=7), schema)
    single = paired_bootstrap(one, ref, METRICS, CFG, 500, 0.95, np.random.default_rng(1))
    copies = paired_bootstrap([one, one, one], [ref, ref], METRICS, CFG, 500, 0.95, np.random.default_rng(1))
    for metric in METRICS:
        assert copies[metric].delta == pytest.approx(single[metric].delta, abs=1e-12)
        assert (copies[metric].ci_low, copies[metric].ci_high) == pytest.approx(
            (single[metric].ci_low, single[metric].ci_high), abs=1e-12)
        assert copies[metric].noise_sd == pytest.approx(0.0, abs=1e-12)
        assert single[metric].noise_sd is None and single[metric].candidate_seed_sd is None
    noisy_seeds = [counts_for(predict(base, seed=7, bias=b), schema) for b in (-0.3, 0.0, 0.3)]
    noisy = paired_bootstrap(noisy_seeds, [ref, ref], METRICS, CFG, 500, 0.95, np.random.default_rng(1))
    points = [sk.mean_qwk(predict(base, seed=7, bias=b)) for b in (-0.3, 0.0, 0.3)]  # each seed's mean QWK
    assert np.std(points, ddof=1) > 0.005
    assert noisy["mean_qwk"].candidate == pytest.approx(np.mean(points), abs=1e-12)
    assert noisy["mean_qwk"].candidate_seed_sd == pytest.approx(np.std(points, ddof=1), abs=1e-12)
    assert noisy["mean_qwk"].noise_sd == pytest.approx(np.std(points, ddof=1), abs=1e-12)  # reference SD is 0
    width = lambda r: r.ci_high - r.ci_low  # noqa: E731
    assert width(noisy["mean_qwk"]) > 1.5 * width(single["mean_qwk"])
