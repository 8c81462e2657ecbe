"""Metric definitions shared by every arm (see DESIGN.md, "Definitions")."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import cohen_kappa_score

from stages.lib.schema import ScoreGrid


def qwk(y_true: np.ndarray, y_pred: np.ndarray, grid: ScoreGrid) -> float:
    """Quadratic weighted kappa on grid categories (ELLIPSE: scores doubled to 2..10); NaN when
    undefined (e.g. a single category on both sides)."""
    labels = np.arange(grid.n_categories)
    t, p = grid.to_category(y_true), grid.to_category(y_pred)
    if len(t) == 0:
        return float("nan")
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        value = cohen_kappa_score(t, p, labels=labels, weights="quadratic")
    return float(value) if np.isfinite(value) else float("nan")


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


def tail_adjacent(y_true: np.ndarray, y_pred: np.ndarray, grid: ScoreGrid, low: float, high: float) -> dict[str, float]:
    """Adjacent agreement among essays with truth ≤ `low` and among those with truth ≥ `high`."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    lo, hi = y_true <= low + 1e-9, y_true >= high - 1e-9
    return {
        "low_adjacent": adjacent_agreement(y_true[lo], y_pred[lo], grid),
        "low_n": int(lo.sum()),
        "high_adjacent": adjacent_agreement(y_true[hi], y_pred[hi], grid),
        "high_n": int(hi.sum()),
    }
