"""Stage `xgb` (the reference arm): multi-target XGBoost per fold on handcrafted + embedding features,
optional score-band sample weights, and leak-safe calibration to the score grid (cutpoints fitted on
inner cross-validated predictions of the training fold only). Writes the arm's predictions table."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from tqdm import tqdm

from stages.lib.core.atomic import write_json, write_parquet
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.paths import predictions_path, training_path
from stages.lib.core.runinfo import run_info
from stages.lib.data.fold_files import fold_file, read_fold, scheme_folds
from stages.lib.data.schema import DatasetSchema
from stages.lib.data.splitting import BalancedGroupKFold, score_bands
from stages.lib.features.feature_store import feature_matrix, load_features
from stages.lib.scoring.calibration import make_calibrator
from stages.lib.scoring.predictions import fold_predictions

ARM = "xgb"


def band_weights(y_primary: np.ndarray, schema: DatasetSchema, power: float) -> np.ndarray:
    """Inverse score-band frequency weights (raised to `power`), normalised to mean 1."""
    bands = schema.grid.to_category(y_primary)
    counts = np.bincount(bands, minlength=schema.grid.n_categories).astype(float)
    weights = counts[bands] ** -power
    return weights / weights.mean()


def make_model(cfg: dict[str, Any], seed: int, embedding_columns: list[int]) -> Pipeline:
    """Embeddings reduced by PCA (fitted on the training data it is given), then multi-target XGBoost."""
    reduce = ColumnTransformer(
        [("embedding_pca", PCA(int(cfg["embedding_pca"]), random_state=seed), embedding_columns)],
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


def run_fold(train, val, features, scheme, cfg, seed, schema, source) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit on the training fold, calibrate on its inner out-of-fold predictions, and return the
    validation fold's continuous and on-grid predictions with a fold log."""
    embedding_columns = [i for i, c in enumerate(features.columns) if c.startswith("emb_")]
    x_train = feature_matrix(features, train, source).to_numpy(np.float32)
    x_val = feature_matrix(features, val, source).to_numpy(np.float32)
    y_train = train[list(schema.targets)].to_numpy(float)
    weights = (
        band_weights(y_train[:, schema.targets.index(schema.primary)], schema, float(cfg["weight_power"]))
        if cfg["sample_weighting"] == "inverse_band"
        else np.ones(len(train))
    )
    start = time.perf_counter()
    continuous = fit_predict(x_train, y_train, weights, x_val, cfg, seed, embedding_columns)
    if not np.isfinite(continuous).all():
        raise FloatingPointError(f"{source}: non-finite XGBoost predictions")
    calibration_input = y_train
    if cfg["calibration"] == "cutpoints":
        calibration_input = np.empty_like(y_train)
        for inner_train, inner_val in inner_splits(train, scheme, int(cfg["inner_splits"]), seed, schema):
            calibration_input[inner_val] = fit_predict(
                x_train[inner_train], y_train[inner_train], weights[inner_train], x_train[inner_val], cfg, seed,
                embedding_columns,
            )
    on_grid = np.empty_like(continuous)
    cutpoints: dict[str, list[float]] = {}
    for j, target in enumerate(schema.targets):
        calibrator = make_calibrator(cfg["calibration"], schema.grid).fit(calibration_input[:, j], y_train[:, j])
        on_grid[:, j] = calibrator.predict(continuous[:, j])
        if getattr(calibrator, "cutpoints_", None) is not None:
            cutpoints[target] = [round(float(c), 4) for c in calibrator.cutpoints_]
    for prompt, rows in val.groupby("prompt").indices.items():
        if prompt in schema.prompt_grids:  # prompts with their own scale are rounded onto it
            on_grid[rows] = schema.grid_for(prompt).snap(continuous[rows])
    log = {"n_train": len(train), "n_val": len(val), "n_features": x_train.shape[1],
           "seconds": round(time.perf_counter() - start, 1), "cutpoints": cutpoints}
    return continuous, on_grid, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheme", required=True, choices=["prompt_holdout", "stratified_text"])
    args = parser.parse_args()
    params = load_params()
    schema = DatasetSchema.from_params(params)
    cfg, seed = params["xgb"], int(params["seed"])
    folds = scheme_folds(args.scheme)
    features = load_features()
    frames, logs = [], []
    for fold in tqdm(folds, desc=f"xgb {args.scheme}", unit="fold"):
        train, val = read_fold(args.scheme, fold)
        source = fold_file(args.scheme, fold, "train").parent
        continuous, on_grid, log = run_fold(train, val, features, args.scheme, cfg, seed, schema, source)
        frames.append(fold_predictions(val, fold, schema, continuous, on_grid))
        logs.append({"fold": fold, **log})
    write_parquet(predictions_path(ARM, args.scheme), pd.concat(frames, ignore_index=True))
    write_json(training_path(ARM, args.scheme), {
        "arm": ARM, "scheme": args.scheme, "budget": "full", "folds": logs,
        "run": run_info(seed, xgboost=xgboost.__version__),
    })


if __name__ == "__main__":
    run_stage(main)
