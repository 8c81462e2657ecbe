"""Quadratic weighted kappa, the headline metric and the objective the grid cutpoints are fitted to maximise (so
training depends on it, and on nothing else of the metrics): from integer categories, from confusion matrices
(stacked, for cheap resampling) and from scores on a grid."""

from __future__ import annotations

import numpy as np

from stages.lib.data.schema import ScoreGrid


def confusion_matrix(t: np.ndarray, p: np.ndarray, n_categories: int) -> np.ndarray:
    """Counts of (truth, prediction) pairs of integer categories 0..n-1: rows truth, columns prediction."""
    t, p = np.asarray(t, dtype=int), np.asarray(p, dtype=int)
    return np.bincount(t * n_categories + p, minlength=n_categories**2).reshape(n_categories, n_categories)


def qwk_from_confusion(confusion: np.ndarray) -> float | np.ndarray:
    """Quadratic weighted kappa from a confusion matrix (rows truth, columns prediction), or from a stack
    of them shaped (..., n, n) giving an array of kappas; NaN where undefined (no essays, or one category
    on both sides). Summing matrices and then calling this is how resampling stays cheap."""
    observed = np.asarray(confusion, dtype=float)
    n = observed.sum(axis=(-2, -1))
    idx = np.arange(observed.shape[-1])
    weights = (idx[:, None] - idx[None, :]) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = observed.sum(axis=-1)[..., :, None] * observed.sum(axis=-2)[..., None, :] / n[..., None, None]
        denominator = (weights * expected).sum(axis=(-2, -1))
        kappa = 1.0 - (weights * observed).sum(axis=(-2, -1)) / denominator
    kappa = np.where((n > 0) & (denominator != 0), kappa, np.nan)
    return float(kappa) if kappa.ndim == 0 else kappa


def qwk_categories(t: np.ndarray, p: np.ndarray, n_categories: int) -> float:
    """Quadratic weighted kappa of integer categories 0..n-1; NaN when undefined."""
    return float(qwk_from_confusion(confusion_matrix(t, p, n_categories)))


def qwk(y_true: np.ndarray, y_pred: np.ndarray, grid: ScoreGrid) -> float:
    """Quadratic weighted kappa on grid categories (ELLIPSE: scores doubled to 2..10); NaN when
    undefined (e.g. a single category on both sides)."""
    return qwk_categories(grid.to_category(y_true), grid.to_category(y_pred), grid.n_categories)
