"""Stage `xgb` (the reference arm): multi-target XGBoost per fold on handcrafted + embedding features,
optional score-band sample weights, and leak-safe calibration to the score grid (cutpoints fitted on
inner cross-validated predictions of the training fold only). One run per scheme × training seed writes
that seed's predictions table and training record."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
import xgboost
from joblib import Parallel, delayed, parallel_config

from stages.lib.core.atomic import write_json, write_parquet
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.paths import predictions_path, training_path
from stages.lib.core.runinfo import run_info
from stages.lib.data.fold_files import fold_file, read_fold, scheme_folds
from stages.lib.data.schema import DatasetSchema
from stages.lib.features.feature_store import load_features
from stages.lib.reference.model import run_fold
from stages.lib.scoring.predictions import fold_predictions
from stages.lib.scoring.training_record import PREDICTION, FoldRecord, build_record

ARM = "xgb"
WORKERS_ENV = "AES_XGB_WORKERS"


def checked_rows(name: str, *arrays: np.ndarray, source: object) -> int:
    """Check every value of `arrays` (rows × targets) for NaN/inf, failing with the quantity's name; return the
    number of rows checked (the training record's evidence of finiteness)."""
    for values in arrays:
        if not np.isfinite(values).all():
            raise FloatingPointError(f"{source}: non-finite {name}")
    return len(arrays[0])


def fold_workers(n_folds: int) -> int:
    """Processes fitting folds side by side: one per available core (or `$AES_XGB_WORKERS`), at most one per fold.
    Not a param: a fold's predictions do not depend on the process or thread count (tests/test_xgb_determinism.py),
    so changing it must not invalidate DVC's cache."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(n_folds, int(os.environ.get(WORKERS_ENV, available))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheme", required=True, choices=["prompt_holdout", "stratified_text"])
    parser.add_argument("--seed", required=True, type=int, help="a training seed listed in params seeds.xgb")
    args = parser.parse_args()
    params = load_params()
    schema = DatasetSchema.from_params(params)
    cfg, seed = params.xgb, args.seed
    if seed not in params.seeds.of(ARM):
        raise InputError(f"--seed {seed} is not in {params.source} seeds.xgb {params.seeds.of(ARM)}")
    folds = scheme_folds(args.scheme)
    features = load_features()
    splits = {fold: read_fold(args.scheme, fold) for fold in folds}
    sources = {fold: fold_file(args.scheme, fold, "train").parent for fold in folds}
    workers = fold_workers(len(folds))
    with parallel_config(backend="loky", inner_max_num_threads=1):
        results = Parallel(n_jobs=workers)(
            delayed(run_fold)(*splits[fold], features, args.scheme, cfg, seed, schema, sources[fold]) for fold in folds)
    frames, records = [], []
    for fold, (continuous, on_grid, log) in zip(folds, results, strict=True):
        val = splits[fold][1]
        scored = np.column_stack([schema.scored_mask(val["prompt"].to_numpy(), t) for t in schema.targets])
        checked = checked_rows("XGBoost prediction", continuous, np.where(scored, on_grid, 0.0), source=sources[fold])
        frames.append(fold_predictions(val, fold, schema, continuous, on_grid))
        records.append(FoldRecord(
            fold=fold, seconds=float(log["seconds"]), device="cpu", precision="fp32", steps=0,
            essays_scored=len(val), finite_checks={PREDICTION: checked}, settings=cfg.model_dump(),
            details={k: v for k, v in log.items() if k != "seconds"}))
        print(f"xgb {args.scheme} seed {seed} fold {fold}: {len(val)} essays, {log['seconds']} s")
    table = pd.concat(frames, ignore_index=True)
    write_parquet(predictions_path(ARM, args.scheme, seed), table)
    record = build_record(arm=ARM, scheme=args.scheme, budget="full", gate_valid=True, backbone="xgboost", seed=seed,
                          folds=records, expected_folds=list(folds), n_essays=len(table),
                          run=run_info(seed, xgboost=xgboost.__version__))
    write_json(training_path(ARM, args.scheme, seed), record.to_dict())


if __name__ == "__main__":
    run_stage(main)
