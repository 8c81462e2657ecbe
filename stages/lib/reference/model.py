"""The reference arm's model: multi-target XGBoost on handcrafted features plus PCA-reduced embeddings,
optional score-band sample weights, and leak-safe calibration to the score grid (cutpoints fitted on inner
cross-validated predictions of the training data only). Used by the `xgb` stage per fold and by the final
model, so both fit the same way."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

from stages.lib.data.schema import DatasetSchema
from stages.lib.data.splitting import BalancedGroupKFold, score_bands
from stages.lib.features.feature_store import feature_matrix
from stages.lib.scoring.calibration import CutpointCalibrator, RoundingCalibrator, make_calibrator


def band_weights(y_primary: np.ndarray, schema: DatasetSchema, power: float) -> np.ndarray:
    """Inverse score-band frequency weights (raised to `power`), normalised to mean 1."""
    bands = schema.grid.to_category(y_primary)
    counts = np.bincount(bands, minlength=schema.grid.n_categories).astype(float)
    weights = counts[bands] ** -power
    return weights / weights.mean()


def as_float64(x: np.ndarray) -> np.ndarray:
    """The embedding columns in double precision, for a PCA whose result does not depend on the BLAS build."""
    return np.asarray(x, dtype=np.float64)


def make_model(cfg: dict[str, Any], seed: int, embedding_columns: list[int]) -> Pipeline:
    """Embeddings reduced by PCA (fitted on the training data it is given), then multi-target XGBoost.

    The PCA runs in float64 with LAPACK's exact SVD. The randomized float32 solver that `auto` picks gave
    components that depend on the BLAS kernel and on the thread count (measured: OpenBLAS's Haswell kernel
    instead of SkylakeX, or 1 thread instead of 2, changed every prediction of a fold); the exact float64
    SVD gave bit-identical components under each. XGBoost's `hist` is itself independent of `n_jobs`."""
    reduce = ColumnTransformer(
        [("embedding_pca", make_pipeline(FunctionTransformer(as_float64, feature_names_out="one-to-one"),
                                         PCA(int(cfg["embedding_pca"]), svd_solver="full", random_state=seed)),
          embedding_columns)],
        remainder="passthrough",
    )
    return make_pipeline(reduce, xgboost.XGBRegressor(
        n_estimators=int(cfg["n_estimators"]),
        learning_rate=float(cfg["learning_rate"]),
        max_depth=int(cfg["max_depth"]),
        min_child_weight=float(cfg["min_child_weight"]),
        subsample=float(cfg["subsample"]),
        colsample_bytree=float(cfg["colsample_bytree"]),
        reg_lambda=float(cfg["reg_lambda"]),
        tree_method="hist",
        n_jobs=int(cfg["n_jobs"]),
        random_state=seed,
    ))


def fit_predict(x_train, y_train, w_train, x_eval, cfg, seed, embedding_columns) -> np.ndarray:
    model = make_model(cfg, seed, embedding_columns)
    model.fit(x_train, y_train, xgbregressor__sample_weight=w_train)
    return model.predict(x_eval).reshape(len(x_eval), -1)


def inner_splits(train: pd.DataFrame, scheme: str, n_splits: int, seed: int, schema: DatasetSchema):
    """Inner folds of the training fold, mirroring the outer scheme (prompts held out, or stratified)."""
    if scheme == "prompt_holdout":
        return BalancedGroupKFold(n_splits, random_state=seed).split(train, groups=train["prompt"].to_numpy())
    bands = score_bands(schema.grid.to_category(train[schema.primary].to_numpy()), n_splits)
    return StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(train, bands)


@dataclass(frozen=True)
class FittedReference:
    """The reference arm fitted on one training set: the PCA + XGBoost pipeline, one grid calibrator per
    target (cutpoints fitted on the training set's inner out-of-fold predictions) and the schema whose
    per-prompt grids `predict` snaps onto. `feature_columns` is the feature-store column order it expects."""

    model: Pipeline
    calibrators: tuple[RoundingCalibrator | CutpointCalibrator, ...]
    schema: DatasetSchema
    feature_columns: tuple[str, ...]
    source: str
    n_train: int

    @property
    def cutpoints(self) -> dict[str, list[float]]:
        """Each target's fitted cutpoints (none for rounding), rounded for logs."""
        return {target: [round(float(c), 4) for c in calibrator.cutpoints_]
                for target, calibrator in zip(self.schema.targets, self.calibrators, strict=True)
                if getattr(calibrator, "cutpoints_", None) is not None}

    def predict(self, x_eval: np.ndarray, prompts: Sequence[object] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous and on-grid predictions (rows × targets) for feature rows `x_eval` (float32, in
        `feature_columns` order) written to `prompts`; a prompt with its own grid is rounded onto it."""
        continuous = self.model.predict(x_eval).reshape(len(x_eval), -1)
        if not np.isfinite(continuous).all():
            raise FloatingPointError(f"{self.source}: non-finite XGBoost predictions")
        on_grid = np.empty_like(continuous)
        for j, calibrator in enumerate(self.calibrators):
            on_grid[:, j] = calibrator.predict(continuous[:, j])
        prompts = pd.Series(np.asarray(prompts, dtype=object))
        for prompt, rows in prompts.groupby(prompts).indices.items():
            if prompt in self.schema.prompt_grids:  # prompts with their own scale are rounded onto it
                on_grid[rows] = self.schema.grid_for(prompt).snap(continuous[rows])
        return continuous, on_grid


def sample_weights(train: pd.DataFrame, cfg: dict[str, Any], schema: DatasetSchema) -> np.ndarray:
    """`inverse_band` weights on the primary target, or ones."""
    if cfg["sample_weighting"] != "inverse_band":
        return np.ones(len(train))
    return band_weights(train[schema.primary].to_numpy(float), schema, float(cfg["weight_power"]))


def fit_reference(train, features, scheme, cfg, seed, schema, source) -> FittedReference:
    """Fit the pipeline on `train`'s feature rows, then each target's calibrator on inner cross-validated
    predictions of `train` (inner folds mirror `scheme`), never on the essays it will score."""
    embedding_columns = [i for i, c in enumerate(features.columns) if c.startswith("emb_")]
    x_train = feature_matrix(features, train, source).to_numpy(np.float32)
    y_train = train[list(schema.targets)].to_numpy(float)
    weights = sample_weights(train, cfg, schema)
    model = make_model(cfg, seed, embedding_columns)
    model.fit(x_train, y_train, xgbregressor__sample_weight=weights)
    calibration_input = y_train
    if cfg["calibration"] == "cutpoints":
        calibration_input = np.empty_like(y_train)
        for inner_train, inner_val in inner_splits(train, scheme, int(cfg["inner_splits"]), seed, schema):
            calibration_input[inner_val] = fit_predict(
                x_train[inner_train], y_train[inner_train], weights[inner_train], x_train[inner_val], cfg, seed,
                embedding_columns,
            )
    calibrators = tuple(
        make_calibrator(cfg["calibration"], schema.grid).fit(calibration_input[:, j], y_train[:, j])
        for j in range(len(schema.targets))
    )
    return FittedReference(model, calibrators, schema, tuple(str(c) for c in features.columns), str(source),
                           len(train))


def run_fold(train, val, features, scheme, cfg, seed, schema, source) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit on the training fold, calibrate on its inner out-of-fold predictions, and return the
    validation fold's continuous and on-grid predictions with a fold log."""
    start = time.perf_counter()
    fitted = fit_reference(train, features, scheme, cfg, seed, schema, source)
    continuous, on_grid = fitted.predict(feature_matrix(features, val, source).to_numpy(np.float32),
                                         val["prompt"].to_numpy())
    log = {"n_train": len(train), "n_val": len(val), "n_features": len(fitted.feature_columns),
           "seconds": round(time.perf_counter() - start, 1), "cutpoints": fitted.cutpoints}
    return continuous, on_grid, log
