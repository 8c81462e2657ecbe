"""The evaluation metrics shared by every arm, besides QWK (`scoring.qwk`): agreement rates, errors, SMD / DSM,
worst-prompt QWK and tail agreement. Training never imports this module, so mending a metric here re-runs
evaluation and what follows, never a model."""

from __future__ import annotations

import numpy as np

from stages.lib.data.schema import ScoreGrid


def exact_agreement(y_true: np.ndarray, y_pred: np.ndarray, grid: ScoreGrid) -> float:
    """Share of grid predictions equal to the truth."""
    return float(np.mean(grid.to_category(y_true) == grid.to_category(y_pred))) if len(y_true) else float("nan")


def adjacent_agreement(y_true: np.ndarray, y_pred: np.ndarray, grid: ScoreGrid) -> float:
    """Share of grid predictions within one grid step (ELLIPSE: 0.5) of the truth."""
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(np.abs(grid.to_category(y_true) - grid.to_category(y_pred)) <= 1))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_pred) - np.asarray(y_true)) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y_pred) - np.asarray(y_true))))


def mcrmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over columns (the analytic traits) of each column's RMSE; inputs are (n, traits)."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(np.mean(np.sqrt(np.mean((y_pred - y_true) ** 2, axis=0))))


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(y_true) < 2 or y_true.std() == 0 or y_pred.std() == 0:
        return float("nan")
    return float(np.corrcoef(y_true, y_pred)[0, 1])


def smd(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Standardized mean difference: (mean prediction − mean truth) / SD of truth (ddof=1)."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(y_true) < 2:
        return float("nan")
    sd = y_true.std(ddof=1)
    return float((y_pred.mean() - y_true.mean()) / sd) if sd > 0 else float("nan")


def continuous_qwk(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """QWK for continuous scores (Haberman 2019, RSMTool's `quadratic_weighted_kappa`, ddof 0):
    2·cov(H, M) / (var(H) + var(M) + (mean M − mean H)²); on integer scores it equals the categorical QWK."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(y_true) < 2:
        return float("nan")
    denominator = y_true.var() + y_pred.var() + (y_pred.mean() - y_true.mean()) ** 2
    if denominator == 0:
        return float("nan")
    return float(2 * np.mean((y_true - y_true.mean()) * (y_pred - y_pred.mean())) / denominator)


def dsm(y_true: np.ndarray, y_pred: np.ndarray, population_true: np.ndarray, population_pred: np.ndarray) -> float:
    """Difference of standardized means (RSMTool's subgroup statistic): the subgroup's mean prediction
    minus its mean truth, each as a z-score against the whole population's mean and SD (ddof=1)."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    population_true, population_pred = np.asarray(population_true, float), np.asarray(population_pred, float)
    if len(y_true) == 0 or len(population_true) < 2:
        return float("nan")
    sd_true, sd_pred = population_true.std(ddof=1), population_pred.std(ddof=1)
    if sd_true < 1e-7 or sd_pred < 1e-7:
        return float("nan")
    z_pred = (y_pred.mean() - population_pred.mean()) / sd_pred
    z_true = (y_true.mean() - population_true.mean()) / sd_true
    return float(z_pred - z_true)


def worst_prompt_qwk(per_prompt: dict[str, tuple[int, float]], min_n: int, bottom_k: int) -> tuple[float, list[str]]:
    """Mean QWK of the `bottom_k` lowest prompts among those with at least `min_n` essays.

    `per_prompt` maps prompt -> (n essays, QWK). Prompts with undefined QWK count as eligible only
    if defined; returns (NaN, []) when none is eligible."""
    eligible = sorted(
        ((q, p) for p, (n, q) in per_prompt.items() if n >= min_n and np.isfinite(q)), key=lambda t: (t[0], t[1])
    )
    bottom = eligible[:bottom_k]
    if not bottom:
        return float("nan"), []
    return float(np.mean([q for q, _ in bottom])), [p for _, p in bottom]


def tail_adjacent(y_true: np.ndarray, true_category: np.ndarray, pred_category: np.ndarray, low: float,
                  high: float) -> dict[str, float]:
    """Adjacent agreement (within one category of the essay's own grid) among essays whose truth on the common
    scale is ≤ `low`, and among those with truth ≥ `high`."""
    y_true = np.asarray(y_true, float)
    near = np.abs(np.asarray(true_category) - np.asarray(pred_category)) <= 1
    lo, hi = y_true <= low + 1e-9, y_true >= high - 1e-9
    return {
        "low_adjacent": float(np.mean(near[lo])) if lo.any() else float("nan"),
        "low_n": int(lo.sum()),
        "high_adjacent": float(np.mean(near[hi])) if hi.any() else float("nan"),
        "high_n": int(hi.sum()),
    }
