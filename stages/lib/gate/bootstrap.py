"""Paired cluster bootstrap of the gate metrics: prompts (not essays) are resampled with replacement,
and each metric is recomputed for the candidate and the reference on the same draw. With several training
seeds per arm it is two-level: each resample also draws each arm's seeds with replacement (independently:
a candidate's seed has no partner among the reference's), and an arm's value is the mean over its drawn
seeds, so the interval carries seed-to-seed training noise as well as prompt sampling.

Each arm is reduced once to integer confusion matrices per (prompt, fold), on each prompt's own grid (padded
to the largest grid: empty categories leave a kappa unchanged); a resample is a weighted sum of those matrices
(weight = how often the prompt was drawn), so thousands of resamples cost milliseconds. A fold's matrices are
summed only when its prompts share a grid; where a fold mixes scales, mean QWK is the mean over prompts (as in
`evaluation.qwk_summary`). Point estimates use weight 1 for every prompt and equal `evaluation.summarise`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.lib.core.errors import InputError
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring import qwk as qk
from stages.lib.scoring.evaluation import categories
from stages.lib.scoring.seeds import seed_sd


@dataclass(frozen=True)
class MetricConfig:
    """The evaluation settings the gate metrics depend on (from `params.evaluate`)."""

    min_prompt_n: int
    bottom_k: int
    low_tail: float
    high_tail: float


@dataclass(frozen=True)
class ArmCounts:
    """One arm's predictions reduced to per-prompt aggregates (primary target, prompts in a fixed order)."""

    prompts: tuple[str, ...]
    fold_confusion: np.ndarray  # (prompts, folds, k, k) on each prompt's own grid, as `evaluation.fold_qwk`
    prompt_qwk: np.ndarray  # (prompts,) QWK of each prompt on its own grid, as `evaluation.per_prompt_table`
    prompt_n: np.ndarray  # (prompts,) essays per prompt
    tail_counts: np.ndarray  # (prompts, 4): low-tail n, low-tail adjacent, high-tail n, high-tail adjacent
    mean_over: str = "folds"  # mean QWK over `folds` (each fold's prompts share a grid) or over `prompts`


@dataclass(frozen=True)
class Interval:
    """A paired delta (candidate − reference) of seed-averaged metrics with its percentile bootstrap interval,
    and the training noise: each arm's SD over seeds and the SD of a one-seed-each delta (None with < 2 seeds)."""

    candidate: float
    reference: float
    delta: float
    ci_low: float
    ci_high: float
    n_valid: int
    candidate_seed_sd: float | None = None  # None: unmeasured (one seed)
    reference_seed_sd: float | None = None
    n_seeds_candidate: int = 1
    n_seeds_reference: int = 1

    @property
    def noise_sd(self) -> float | None:
        """Training-noise SD of the delta, sqrt(SD_candidate² + SD_reference²); None while either is unmeasured."""
        if self.candidate_seed_sd is None or self.reference_seed_sd is None:
            return None
        return float(np.hypot(self.candidate_seed_sd, self.reference_seed_sd))


def align_pair(candidate: pd.DataFrame, reference: pd.DataFrame, schema: DatasetSchema, arm: str,
               scheme: str) -> pd.DataFrame:
    """The candidate's rows in the reference's essay order; an `InputError` naming the arm and scheme
    unless both cover the same essays with the same folds, prompts and human scores."""
    ref_ids, cand_ids = set(reference["essay_id"]), set(candidate["essay_id"])
    if ref_ids != cand_ids:
        raise InputError(
            f"{arm}/{scheme}: predictions cover {len(cand_ids)} essays, the reference {len(ref_ids)}; "
            f"{len(ref_ids - cand_ids)} missing, {len(cand_ids - ref_ids)} extra (arms must share the same essays)")
    aligned = candidate.set_index("essay_id").loc[reference["essay_id"]].reset_index()
    for column in ("fold", "prompt", f"true_{schema.primary}"):
        differs = aligned[column].to_numpy() != reference[column].to_numpy()
        if differs.any():
            essay = reference["essay_id"].to_numpy()[np.flatnonzero(differs)[0]]
            raise InputError(f"{arm}/{scheme}: column {column} differs from the reference on {int(differs.sum())} "
                             f"essays (first: {essay}); arms must use the same splits and labels")
    return aligned


def arm_counts(frame: pd.DataFrame, schema: DatasetSchema, prompts: Sequence[str], folds: Sequence[int],
               cfg: MetricConfig) -> ArmCounts:
    """Reduce one predictions table to the aggregates every resample sums over."""
    p = schema.primary
    prompt_index = {name: i for i, name in enumerate(prompts)}
    fold_index = {int(f): j for j, f in enumerate(folds)}
    unknown = sorted(set(frame["prompt"]) - set(prompts)) + sorted(set(frame["fold"].astype(int)) - set(fold_index))
    if unknown:
        raise InputError(f"predictions: prompt(s)/fold(s) outside the given lists: {unknown}")
    grids = [schema.grid_for(name) for name in prompts]
    k = max(g.n_categories for g in grids)
    pi = frame["prompt"].map(prompt_index).to_numpy(dtype=int)
    fi = frame["fold"].astype(int).map(fold_index).to_numpy(dtype=int)
    t_cat, g_cat = categories(frame, schema, "true", p), categories(frame, schema, "grid", p)
    cell = ((pi * len(folds) + fi) * k + t_cat) * k + g_cat
    shape = (len(prompts), len(folds), k, k)
    fold_confusion = np.bincount(cell, minlength=int(np.prod(shape))).reshape(shape)
    members = fold_confusion.sum(axis=(2, 3)) > 0  # (prompts, folds)
    shared = all(len({grids[i] for i in np.flatnonzero(members[:, j])}) <= 1 for j in range(len(folds)))

    truth = schema.to_common(frame[f"true_{p}"].to_numpy(float), frame["prompt"].to_numpy(), p)
    near = (np.abs(t_cat - g_cat) <= 1).astype(float)
    low, high = truth <= cfg.low_tail + 1e-9, truth >= cfg.high_tail - 1e-9
    n = len(prompts)
    tail_counts = np.stack([np.bincount(pi, weights=w, minlength=n)
                            for w in (low.astype(float), low * near, high.astype(float), high * near)], axis=1)
    tail_counts = np.rint(tail_counts).astype(np.int64)

    prompt_qwk = np.full(len(prompts), np.nan)
    for name, rows in frame.groupby("prompt").indices.items():
        group = frame.iloc[rows]
        prompt_qwk[prompt_index[name]] = qk.qwk(group[f"true_{p}"].to_numpy(), group[f"grid_{p}"].to_numpy(),
                                               schema.grid_for(name))
    return ArmCounts(tuple(prompts), fold_confusion, prompt_qwk, fold_confusion.sum(axis=(1, 2, 3)), tail_counts,
                     "folds" if shared else "prompts")


def _mean_qwk(arm: ArmCounts, weights: np.ndarray, draws: np.ndarray, cfg: MetricConfig) -> np.ndarray:
    """Mean over folds of each fold's QWK, the fold's matrix being the weighted sum over prompts; where folds mix
    scales, the weighted mean over eligible prompts of each prompt's QWK (each drawn prompt counting once)."""
    if arm.mean_over == "prompts":
        eligible = (arm.prompt_n >= cfg.min_prompt_n) & np.isfinite(arm.prompt_qwk)
        w = weights[:, eligible]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(w.sum(axis=1) > 0, w @ arm.prompt_qwk[eligible] / w.sum(axis=1), np.nan)
    block = max(1, int(2e7 // max(arm.fold_confusion[0].size, 1)))  # resamples per block: bounded memory
    per_fold = np.concatenate([
        qk.qwk_from_confusion(np.tensordot(weights[i:i + block], arm.fold_confusion, axes=(1, 0)))
        for i in range(0, len(weights), block)])  # (resamples, folds)
    finite = np.isfinite(per_fold)
    with np.errstate(invalid="ignore"):
        return np.where(finite.any(axis=1), np.where(finite, per_fold, 0).sum(axis=1) / finite.sum(axis=1), np.nan)


def _worst_prompt_qwk(arm: ArmCounts, weights: np.ndarray, draws: np.ndarray, cfg: MetricConfig) -> np.ndarray:
    """Mean of the `bottom_k` lowest eligible prompt QWKs, each drawn prompt counting as its own cluster."""
    eligible = (arm.prompt_n >= cfg.min_prompt_n) & np.isfinite(arm.prompt_qwk)
    values = np.where(eligible, arm.prompt_qwk, np.inf)[draws]
    bottom = np.sort(values, axis=1)[:, : cfg.bottom_k]
    finite = np.isfinite(bottom)
    with np.errstate(invalid="ignore"):
        return np.where(finite.any(axis=1), np.where(finite, bottom, 0).sum(axis=1) / finite.sum(axis=1), np.nan)


def _tail(column: int) -> Callable[[ArmCounts, np.ndarray, np.ndarray, MetricConfig], np.ndarray]:
    def tail_adjacent(arm: ArmCounts, weights: np.ndarray, draws: np.ndarray, cfg: MetricConfig) -> np.ndarray:
        counts = weights @ arm.tail_counts[:, column: column + 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts[:, 0] > 0, counts[:, 1] / counts[:, 0], np.nan)
    return tail_adjacent


METRICS: dict[str, Callable[[ArmCounts, np.ndarray, np.ndarray, MetricConfig], np.ndarray]] = {
    "mean_qwk": _mean_qwk,
    "worst_prompt_qwk": _worst_prompt_qwk,
    "low_tail_adjacent": _tail(0),
    "high_tail_adjacent": _tail(2),
}


def point_estimate(arm: ArmCounts, metric: str, cfg: MetricConfig) -> float:
    """The metric on the data as observed (every prompt once)."""
    n = len(arm.prompts)
    return float(METRICS[metric](arm, np.ones((1, n)), np.arange(n)[None, :], cfg)[0])


def resample_prompts(n_prompts: int, n_resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Prompt draws (resamples, prompts) with replacement, and the matching per-prompt weights (draw counts)."""
    draws = rng.integers(0, n_prompts, size=(n_resamples, n_prompts))
    weights = np.zeros((n_resamples, n_prompts))
    np.add.at(weights, (np.arange(n_resamples)[:, None], draws), 1.0)
    return draws, weights


def paired_bootstrap(candidate: ArmCounts | Sequence[ArmCounts], reference: ArmCounts | Sequence[ArmCounts],
                     metrics: Sequence[str], cfg: MetricConfig, n_resamples: int, confidence: float,
                     rng: np.random.Generator) -> dict[str, Interval]:
    """Per metric: both arms' seed-averaged point estimates, their delta, and a percentile interval of the
    delta over `n_resamples` paired prompt resamples (all metrics share the same draws), each arm's seeds
    resampled too when it has several (one `ArmCounts` per seed). One seed each is the prompt-only bootstrap."""
    cands = [candidate] if isinstance(candidate, ArmCounts) else list(candidate)
    refs = [reference] if isinstance(reference, ArmCounts) else list(reference)
    if not cands or not refs:
        raise InputError("paired bootstrap: each arm needs at least one seed's predictions")
    if any(arm.prompts != refs[0].prompts for arm in (*cands, *refs)):
        raise InputError("paired bootstrap: arms must be aggregated over the same prompts in the same order")
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise InputError(f"paired bootstrap: unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    draws, weights = resample_prompts(len(refs[0].prompts), n_resamples, rng)
    cand_seeds = rng.integers(0, len(cands), size=(n_resamples, len(cands)))
    ref_seeds = rng.integers(0, len(refs), size=(n_resamples, len(refs)))
    alpha = (1.0 - confidence) / 2.0
    out = {}
    for metric in metrics:
        cand_points = np.array([point_estimate(a, metric, cfg) for a in cands])
        ref_points = np.array([point_estimate(a, metric, cfg) for a in refs])
        deltas = (_seed_mean(cands, cand_seeds, metric, weights, draws, cfg)
                  - _seed_mean(refs, ref_seeds, metric, weights, draws, cfg))
        deltas = deltas[np.isfinite(deltas)]
        low, high = (np.quantile(deltas, [alpha, 1.0 - alpha]) if len(deltas) else (np.nan, np.nan))
        cand, ref = float(np.mean(cand_points)), float(np.mean(ref_points))
        out[metric] = Interval(cand, ref, cand - ref, float(low), float(high), len(deltas),
                               seed_sd(cand_points), seed_sd(ref_points), len(cands), len(refs))
    return out


def _seed_mean(arms: Sequence[ArmCounts], seed_draws: np.ndarray, metric: str, weights: np.ndarray,
               draws: np.ndarray, cfg: MetricConfig) -> np.ndarray:
    """Per resample, the mean of the metric over the seeds drawn for it (each seed on the same prompt draw)."""
    per_seed = np.stack([METRICS[metric](arm, weights, draws, cfg) for arm in arms], axis=1)  # (resamples, seeds)
    return np.take_along_axis(per_seed, seed_draws, axis=1).mean(axis=1)
