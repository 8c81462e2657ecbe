"""Metric definitions shared by every arm (see DESIGN.md, "Definitions")."""

from __future__ import annotations

import numpy as np

from stages.lib.schema import ScoreGrid


def qwk_categories(t: np.ndarray, p: np.ndarray, n_categories: int) -> float:
    """Quadratic weighted kappa of integer categories 0..n-1; NaN when undefined."""
    t, p = np.asarray(t, dtype=int), np.asarray(p, dtype=int)
    if len(t) == 0:
        return float("nan")
    observed = np.bincount(t * n_categories + p, minlength=n_categories**2).reshape(n_categories, n_categories)
    expected = np.outer(np.bincount(t, minlength=n_categories), np.bincount(p, minlength=n_categories)) / len(t)
    idx = np.arange(n_categories)
    weights = (idx[:, None] - idx[None, :]) ** 2
    denominator = float((weights * expected).sum())
    if denominator == 0:
        return float("nan")
    return 1.0 - float((weights * observed).sum()) / denominator


def qwk(y_true: np.ndarray, y_pred: np.ndarray, grid: ScoreGrid) -> float:
    """Quadratic weighted kappa on grid categories (ELLIPSE: scores doubled to 2..10); NaN when
    undefined (e.g. a single category on both sides)."""
    return qwk_categories(grid.to_category(y_true), grid.to_category(y_pred), grid.n_categories)


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
