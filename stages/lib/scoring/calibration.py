"""Map continuous predictions to the score grid: plain rounding, or cutpoints fitted to maximise QWK
on training-fold data only (the caller decides which data that is; never validation essays)."""

from __future__ import annotations

import numpy as np

from stages.lib.data.schema import ScoreGrid
from stages.lib.scoring.metrics import qwk_categories


class RoundingCalibrator:
    """Clip to the grid's range and round to the nearest grid point."""

    def __init__(self, grid: ScoreGrid):
        self.grid = grid

    def fit(self, y_pred: np.ndarray, y_true: np.ndarray) -> RoundingCalibrator:
        return self

    def predict(self, y_pred: np.ndarray) -> np.ndarray:
        return self.grid.snap(y_pred)


class CutpointCalibrator:
    """Monotone cutpoints between grid categories, fitted by coordinate ascent on QWK.

    Starts from the rounding thresholds (midpoints between grid points), so with no signal to gain
    it reduces to rounding."""

    def __init__(self, grid: ScoreGrid, n_candidates: int = 60, n_passes: int = 3):
        self.grid = grid
        self.n_candidates = n_candidates
        self.n_passes = n_passes
        self.cutpoints_: np.ndarray | None = None

    def fit(self, y_pred: np.ndarray, y_true: np.ndarray) -> CutpointCalibrator:
        grid, k = self.grid, self.grid.n_categories
        y_pred = np.asarray(y_pred, dtype=float)
        truth = grid.to_category(y_true)
        cuts = grid.low + grid.step * (np.arange(1, k) - 0.5)
        best = qwk_categories(truth, np.searchsorted(cuts, y_pred), k)
        for _ in range(self.n_passes):
            for i in range(k - 1):
                lo = cuts[i - 1] if i > 0 else min(y_pred.min(), cuts[i]) - grid.step
                hi = cuts[i + 1] if i < k - 2 else max(y_pred.max(), cuts[i]) + grid.step
                for candidate in np.linspace(lo, hi, self.n_candidates + 2)[1:-1]:
                    trial = cuts.copy()
                    trial[i] = candidate
                    score = qwk_categories(truth, np.searchsorted(trial, y_pred), k)
                    if score > best + 1e-12:
                        best, cuts = score, trial
        self.cutpoints_ = cuts
        return self

    def predict(self, y_pred: np.ndarray) -> np.ndarray:
        if self.cutpoints_ is None:
            raise RuntimeError("CutpointCalibrator.predict called before fit")
        return self.grid.points()[np.searchsorted(self.cutpoints_, np.asarray(y_pred, dtype=float))]


def make_calibrator(kind: str, grid: ScoreGrid) -> RoundingCalibrator | CutpointCalibrator:
    """`round` or `cutpoints`."""
    if kind == "round":
        return RoundingCalibrator(grid)
    if kind == "cutpoints":
        return CutpointCalibrator(grid)
    raise ValueError(f"unknown calibration {kind!r}; expected 'round' or 'cutpoints'")
