"""The reference arm's model: multi-target XGBoost on handcrafted features plus PCA-reduced embeddings,
optional score-band sample weights, and leak-safe calibration to the score grid (cutpoints fitted on inner
cross-validated predictions of the training data only). Used by the `xgb` stage per fold and by the final
model, so both fit the same way.

It learns on the common scale (`DatasetSchema.to_common`: each prompt's grid mapped onto the global one) and
maps predictions back onto the scored prompt's grid. A target that some training prompts do not score gets a
model of its own, fitted on the essays that have it; the targets every essay has share one model."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

from stages.lib.core.errors import InputError
from stages.lib.core.params import Xgb
from stages.lib.data.schema import DatasetSchema
from stages.lib.data.splitting import scheme_splits
from stages.lib.features.feature_store import feature_matrix
from stages.lib.scoring.calibration import CutpointCalibrator, RoundingCalibrator, fit_calibrators, own_scales


def band_weights(y_primary: np.ndarray, schema: DatasetSchema, power: float) -> np.ndarray:
    """Inverse score-band frequency weights (raised to `power`), normalised to mean 1; `y_primary` on the common
    scale."""
    bands = np.clip(schema.grid.to_category(y_primary), 0, schema.grid.n_categories - 1)
    counts = np.bincount(bands, minlength=schema.grid.n_categories).astype(float)
    weights = counts[bands] ** -power
    return weights / weights.mean()


def as_float64(x: np.ndarray) -> np.ndarray:
    """The embedding columns in double precision, for a PCA whose result does not depend on the BLAS build."""
    return np.asarray(x, dtype=np.float64)


def make_model(cfg: Xgb, seed: int, embedding_columns: list[int]) -> Pipeline:
    """Embeddings reduced by PCA (fitted on the training data it is given), then multi-target XGBoost.

    The PCA runs in float64 with LAPACK's exact SVD. The randomized float32 solver that `auto` picks gave
    components that depend on the BLAS kernel and on the thread count (measured: OpenBLAS's Haswell kernel
    instead of SkylakeX, or 1 thread instead of 2, changed every prediction of a fold); the exact float64
    SVD gave bit-identical components under each. XGBoost's `hist` is itself independent of `n_jobs`."""
    reduce = ColumnTransformer(
        [("embedding_pca", make_pipeline(FunctionTransformer(as_float64, feature_names_out="one-to-one"),
                                         PCA(cfg.embedding_pca, svd_solver="full", random_state=seed)),
          embedding_columns)],
        remainder="passthrough",
    )
    return make_pipeline(reduce, xgboost.XGBRegressor(
        n_estimators=cfg.n_estimators,
        learning_rate=cfg.learning_rate,
        max_depth=cfg.max_depth,
        min_child_weight=cfg.min_child_weight,
        subsample=cfg.subsample,
        colsample_bytree=cfg.colsample_bytree,
        reg_lambda=cfg.reg_lambda,
        tree_method="hist",
        n_jobs=cfg.n_jobs,
        random_state=seed,
    ))


MIN_SCORED = 2  # training essays a target needs to be fitted


class MaskedTargetsModel:
    """Targets with missing scores fitted one model each on the rows that have them; the complete targets
    share one multi-target model. `predict` returns (rows × targets) in the original target order."""

    def __init__(self, shared: Pipeline | None, shared_columns: list[int], own: dict[int, Pipeline | None]):
        self.shared, self.shared_columns, self.own = shared, shared_columns, own

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), len(self.shared_columns) + len(self.own)))
        if self.shared is not None:
            out[:, self.shared_columns] = self.shared.predict(x).reshape(len(x), -1)
        for j, model in self.own.items():  # None: too few scored essays to fit (predicts NaN)
            out[:, j] = np.nan if model is None else model.predict(x).reshape(len(x))
        return out


def fit_model(x_train, y_train, w_train, cfg: Xgb, seed: int,
              embedding_columns: list[int]) -> Pipeline | MaskedTargetsModel:
    """One multi-target pipeline when every row has every target (NaN = not scored); else `MaskedTargetsModel`."""
    missing = np.isnan(y_train)
    if not missing.any():
        model = make_model(cfg, seed, embedding_columns)
        model.fit(x_train, y_train, xgbregressor__sample_weight=w_train)
        return model
    complete = [j for j in range(y_train.shape[1]) if not missing[:, j].any()]
    shared = None
    if complete:
        shared = make_model(cfg, seed, embedding_columns)
        shared.fit(x_train, y_train[:, complete], xgbregressor__sample_weight=w_train)
    own = {}
    for j in (j for j in range(y_train.shape[1]) if missing[:, j].any()):
        rows = ~missing[:, j]
        own[j] = None
        if rows.sum() >= MIN_SCORED:
            own[j] = make_model(cfg, seed, embedding_columns)
            own[j].fit(x_train[rows], y_train[rows, j], xgbregressor__sample_weight=w_train[rows])
    return MaskedTargetsModel(shared, complete, own)


def fit_predict(x_train, y_train, w_train, x_eval, cfg: Xgb, seed: int, embedding_columns: list[int]) -> np.ndarray:
    model = fit_model(x_train, y_train, w_train, cfg, seed, embedding_columns)
    return model.predict(x_eval).reshape(len(x_eval), -1)


def inner_splits(train: pd.DataFrame, scheme: str, n_splits: int, seed: int, schema: DatasetSchema):
    """Inner folds of the training fold, mirroring the outer scheme (prompts held out, or stratified)."""
    return scheme_splits(train, scheme, n_splits, seed, schema)


@dataclass(frozen=True)
class FittedReference:
    """The reference arm fitted on one training set: the PCA + XGBoost pipeline, one grid calibrator per
    target (cutpoints fitted on the training set's inner out-of-fold predictions) and the schema whose
    per-prompt grids `predict` snaps onto. `feature_columns` is the feature-store column order it expects."""

    model: Pipeline | MaskedTargetsModel
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
        """Continuous and on-grid predictions (rows × targets), each on the grid of its essay's prompt, for
        feature rows `x_eval` (float32, in `feature_columns` order) written to `prompts` (on-grid NaN where the
        prompt does not score the target)."""
        common = self.model.predict(x_eval).reshape(len(x_eval), -1)
        if not np.isfinite(common).all():
            raise FloatingPointError(f"{self.source}: non-finite XGBoost predictions")
        return own_scales(common, self.calibrators, prompts, self.schema)


def sample_weights(train: pd.DataFrame, cfg: Xgb, schema: DatasetSchema) -> np.ndarray:
    """`inverse_band` weights on the primary target (common scale), or ones."""
    if cfg.sample_weighting != "inverse_band":
        return np.ones(len(train))
    primary = schema.to_common(train[schema.primary].to_numpy(float), train["prompt"].to_numpy(), schema.primary)
    return band_weights(primary, schema, cfg.weight_power)


def fit_reference(train, features, scheme: str, cfg: Xgb, seed: int, schema: DatasetSchema, source) -> FittedReference:
    """Fit the pipeline on `train`'s feature rows, then each target's calibrator on inner cross-validated
    predictions of `train` (inner folds mirror `scheme`), never on the essays it will score."""
    embedding_columns = [i for i, c in enumerate(features.columns) if c.startswith("emb_")]
    x_train = feature_matrix(features, train, source).to_numpy(np.float32)
    y_train = schema.common_targets(train)
    scored = np.isfinite(y_train).sum(axis=0)
    for target, n in zip(schema.targets, scored, strict=True):
        if n < MIN_SCORED:
            raise InputError(f"{source}: target {target!r} is scored on {int(n)} training essay(s); at least "
                             f"{MIN_SCORED} are needed (dataset.prompt_targets)")
    weights = sample_weights(train, cfg, schema)
    model = fit_model(x_train, y_train, weights, cfg, seed, embedding_columns)
    calibration_input = y_train
    if cfg.calibration == "cutpoints":
        calibration_input = np.empty_like(y_train)
        for inner_train, inner_val in inner_splits(train, scheme, cfg.inner_splits, seed, schema):
            calibration_input[inner_val] = fit_predict(
                x_train[inner_train], y_train[inner_train], weights[inner_train], x_train[inner_val], cfg, seed,
                embedding_columns,
            )
    calibrators = fit_calibrators(cfg.calibration, schema.grid, calibration_input, y_train)
    return FittedReference(model, calibrators, schema, tuple(str(c) for c in features.columns), str(source),
                           len(train))


def run_fold(train, val, features, scheme: str, cfg: Xgb, seed: int, schema: DatasetSchema,
             source) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit on the training fold, calibrate on its inner out-of-fold predictions, and return the
    validation fold's continuous and on-grid predictions with a fold log."""
    start = time.perf_counter()
    fitted = fit_reference(train, features, scheme, cfg, seed, schema, source)
    continuous, on_grid = fitted.predict(feature_matrix(features, val, source).to_numpy(np.float32),
                                         val["prompt"].to_numpy())
    log = {"n_train": len(train), "n_val": len(val), "n_features": len(fitted.feature_columns),
           "seconds": round(time.perf_counter() - start, 1), "cutpoints": fitted.cutpoints}
    return continuous, on_grid, log
