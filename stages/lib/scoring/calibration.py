"""Map continuous predictions to the score grid: plain rounding, or cutpoints fitted to maximise QWK
on training-fold data only (the caller decides which data that is; never validation essays).

Calibrators work on the common scale (the global grid). `to_prompt_grids` applies one to essays of any
prompt: a prompt on the global grid gets the calibrator's own categories; a prompt on another grid gets the
calibrator's monotone map (`transform`) carried onto its scale and rounded onto its grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from stages.lib.data.schema import DatasetSchema, ScoreGrid
from stages.lib.scoring.qwk import qwk_categories


class RoundingCalibrator:
    """Clip to the grid's range and round to the nearest grid point."""

    def __init__(self, grid: ScoreGrid):
        self.grid = grid

    def fit(self, y_pred: np.ndarray, y_true: np.ndarray) -> RoundingCalibrator:
        return self

    def predict(self, y_pred: np.ndarray) -> np.ndarray:
        return self.grid.snap(y_pred)

    def transform(self, y_pred: np.ndarray) -> np.ndarray:
        """The continuous value whose rounding `predict` returns: the prediction itself."""
        return np.asarray(y_pred, dtype=float)


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
        y_true = np.asarray(y_true, dtype=float)
        known = np.isfinite(y_true) & np.isfinite(y_pred)  # targets a prompt does not score are left out
        y_pred, y_true = y_pred[known], y_true[known]
        truth = np.clip(grid.to_category(y_true), 0, k - 1)  # common-scale truths of other grids: nearest point
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

    def transform(self, y_pred: np.ndarray) -> np.ndarray:
        """The piecewise-linear monotone map sending each cutpoint to the rounding threshold it replaces (the
        midpoint between its grid points), slope 1 beyond the outer ones: rounding it on this grid gives
        `predict` (up to ties at a cutpoint), and it carries the calibration to prompts on other grids."""
        if self.cutpoints_ is None:
            raise RuntimeError("CutpointCalibrator.transform called before fit")
        grid, x = self.grid, np.asarray(y_pred, dtype=float)
        cuts = np.maximum.accumulate(np.asarray(self.cutpoints_, dtype=float))
        mids = grid.low + grid.step * (np.arange(1, grid.n_categories) - 0.5)
        keep = np.concatenate([[True], np.diff(cuts) > 1e-12])  # equal cutpoints: an empty category
        cuts, mids = cuts[keep], mids[keep]
        inside = np.interp(x, cuts, mids)
        return np.where(x < cuts[0], mids[0] + (x - cuts[0]), np.where(x > cuts[-1], mids[-1] + (x - cuts[-1]), inside))


Calibrator = RoundingCalibrator | CutpointCalibrator


def to_prompt_grids(calibrator: Calibrator, common: np.ndarray, prompts: np.ndarray, schema: DatasetSchema,
                    target: str) -> np.ndarray:
    """`target`'s common-scale predictions on each essay's own grid: the calibrator's categories where the prompt
    uses the global grid, else its `transform` mapped onto the prompt's scale and rounded onto its grid. NaN
    where the prompt does not score `target`."""
    common = np.asarray(common, dtype=float)
    prompts = np.asarray(prompts, dtype=object)
    out = calibrator.predict(common)
    own = np.array([schema.grid_for(p, target) != schema.grid for p in prompts], dtype=bool) if len(prompts) else \
        np.zeros(0, dtype=bool)
    if own.any():
        mapped = schema.from_common(calibrator.transform(common[own]), prompts[own], target)
        for prompt in set(prompts[own]):
            rows = prompts[own] == prompt
            mapped[rows] = schema.grid_for(prompt, target).snap(mapped[rows])
        out = out.astype(float)
        out[own] = mapped
    scored = schema.scored_mask(prompts, target)
    if not scored.all():
        out = np.where(scored, out, np.nan)
    return out


def fit_calibrators(kind: str, grid: ScoreGrid, fit_pred: np.ndarray, fit_true: np.ndarray) -> tuple[Calibrator, ...]:
    """One calibrator per target column, fitted on common-scale predictions and truths (NaN truths skipped)."""
    return tuple(make_calibrator(kind, grid).fit(fit_pred[:, j], fit_true[:, j]) for j in range(fit_pred.shape[1]))


def own_scales(common: np.ndarray, calibrators: tuple[Calibrator, ...], prompts: np.ndarray,
               schema: DatasetSchema) -> tuple[np.ndarray, np.ndarray]:
    """Common-scale predictions (rows × targets) as continuous and on-grid scores on each essay's prompt scale."""
    prompts = np.asarray(prompts, dtype=object)
    continuous = np.column_stack([schema.from_common(common[:, j], prompts, t) for j, t in enumerate(schema.targets)])
    on_grid = np.column_stack([to_prompt_grids(c, common[:, j], prompts, schema, t)
                               for j, (c, t) in enumerate(zip(calibrators, schema.targets, strict=True))])
    return continuous, on_grid


def make_calibrator(kind: str, grid: ScoreGrid) -> RoundingCalibrator | CutpointCalibrator:
    """`round` or `cutpoints`."""
    if kind == "round":
        return RoundingCalibrator(grid)
    if kind == "cutpoints":
        return CutpointCalibrator(grid)
    raise ValueError(f"unknown calibration {kind!r}; expected 'round' or 'cutpoints'")


def calibration_record(calibrators: tuple[Calibrator, ...], targets: tuple[str, ...] | list[str]
                       ) -> dict[str, dict[str, Any]]:
    """Per target, what restores its calibrator: the kind and the cutpoints at full precision (None for
    rounding)."""
    out = {}
    for target, calibrator in zip(targets, calibrators, strict=True):
        cutpoints = getattr(calibrator, "cutpoints_", None)
        out[target] = {"kind": "cutpoints" if cutpoints is not None else "round",
                       "cutpoints": None if cutpoints is None else [float(c) for c in cutpoints]}
    return out


def restore_calibrators(record: dict[str, dict[str, Any]], targets: tuple[str, ...] | list[str], grid: ScoreGrid
                        ) -> tuple[Calibrator, ...]:
    """The calibrators `calibration_record` wrote, one per target in `targets` order."""
    calibrators = []
    for target in targets:
        entry = record[target]
        calibrator = make_calibrator(entry["kind"], grid)
        if entry["kind"] == "cutpoints":
            calibrator.cutpoints_ = np.asarray(entry["cutpoints"], dtype=float)
        calibrators.append(calibrator)
    return tuple(calibrators)
