"""Stage `collect`: concatenate one arm's fold runs for a scheme and training seed into the shared predictions
table `data/predictions/<arm>_<scheme>/seed_<s>.parquet` and record the training evidence in
`metrics/training/<arm>_<scheme>/seed_<s>.json` (`stages.lib.scoring.training_record`: budget, gate validity, device,
precision, seed, per fold the wall time, settings and the NaN/inf checks performed; pooled truncation
coverage, leakage versus chance)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.atomic import write_json, write_parquet
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.io import read_json_object
from stages.lib.core.params import ARMS, SCHEMES, Params
from stages.lib.core.paths import predictions_path, run_dir, training_path
from stages.lib.core.runinfo import run_info
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.evaluation import table_qwk
from stages.lib.scoring.predictions import validate_predictions
from stages.lib.scoring.training_record import FoldRecord, TrainingRecord, build_record
from stages.lib.training.runs import PREDICTIONS, TOKENS, TRAIN_LOG
from stages.lib.windows.chunking import coverage_report

_SAME_ACROSS_FOLDS = ("budget", "gate_valid", "backbone", "seed")  # device, precision, settings: `build_record`


def read_run(arm: str, scheme: str, fold: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """One fold's predictions, token counts and training log."""
    directory = run_dir(arm, scheme, fold, seed)
    paths = [directory / name for name in (PREDICTIONS, TOKENS, TRAIN_LOG)]
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path} not found "
                             f"(run: python -m stages.finetune --arm {arm} --scheme {scheme} --fold {fold} "
                             f"--seed {seed})")
    return pd.read_parquet(paths[0]), pd.read_parquet(paths[1]), read_json_object(paths[2])


def fold_record(log: dict[str, Any], where: str, val_qwk: float) -> FoldRecord:
    """One fold's entry of the training record, from its training log and its validation QWK (primary target)."""
    if "finite_checks" not in log:
        raise InputError(f"{where}: train log has no finite_checks; rerun the fold")
    training = log["training"]
    return FoldRecord(
        fold=int(log["fold"]), seconds=round(float(log["seconds"]["total"]), 1), device=str(log["device"]),
        precision=str(log["precision"]["used"]), steps=int(training["micro_batches"]),
        essays_scored=int(log["n_essays"]["val"]), finite_checks={k: int(v) for k, v in log["finite_checks"].items()},
        settings={"windows": log["windows"], "hyperparameters": log["hyperparameters"]},
        details={
            "trained_essays": log["n_essays"]["trained"],
            "optimizer_steps": training["optimizer_steps"],
            "final_loss": float(np.mean(training["step_loss"][-10:])) if training["step_loss"] else None,
            "val_qwk_primary": val_qwk,
            "precision_detail": log["precision"],
            "seconds": {k: round(float(v), 1) for k, v in log["seconds"].items()},
            "diagnostics": {**log["diagnostics"]["prompt_leakage"], **log["diagnostics"]["objective"]},
        })


def summarise(arm: str, scheme: str, seed: int, logs: list[dict[str, Any]], val_qwk: list[float],
              tokens: pd.DataFrame, expected_folds: list[int], n_essays: int, run: dict[str, Any]) -> TrainingRecord:
    """The training record of all folds; folds trained under different settings fail."""
    first = logs[0]
    for log in logs[1:]:
        for key in _SAME_ACROSS_FOLDS:
            if log[key] != first[key]:
                raise InputError(f"fold {log['fold']} has {key}={log[key]!r} but fold {first['fold']} has "
                                 f"{first[key]!r}; rerun every fold under one setting")
    folds = [fold_record(log, str(run_dir(arm, scheme, log["fold"], seed) / TRAIN_LOG), qwk)
             for log, qwk in zip(logs, val_qwk, strict=True)]
    windows = first["windows"]
    val = tokens[tokens["split"] == "val"]["n_tokens"].to_numpy()
    leakage = [f.details["diagnostics"] for f in folds]
    details: dict[str, Any] = {
        "wall_seconds_total": round(sum(f.seconds for f in folds), 1),
        "truncation_coverage": coverage_report(val, windows["content_window"], windows["stride"]),
        "prompt_leakage": {
            key: _mean([entry.get(key) for entry in leakage])
            for key in ("probe_accuracy", "adversary_accuracy", "chance", "majority_rate")
            if any(entry.get(key) is not None for entry in leakage)
        },
    }
    return build_record(arm=arm, scheme=scheme, budget=first["budget"], gate_valid=first["gate_valid"],
                        backbone=first["backbone"], seed=first["seed"], folds=folds, expected_folds=expected_folds,
                        n_essays=n_essays, details=details, run=run)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def collect(arm: str, scheme: str, folds: list[int], params: Params, seed: int) -> TrainingRecord:
    """One seed's fold runs into its predictions table and training record."""
    if seed not in params.seeds.of(arm):
        raise InputError(f"--seed {seed} is not in {params.source} seeds.finetune {params.seeds.of(arm)}")
    schema = DatasetSchema.from_params(params)
    runs = [read_run(arm, scheme, fold, seed) for fold in folds]
    table = pd.concat([r[0] for r in runs], ignore_index=True)
    validate_predictions(table, schema, f"{arm}/{scheme} folds {folds}")
    val_qwk = [table_qwk(r[0], schema, schema.primary) for r in runs]
    record = summarise(arm, scheme, seed, [r[2] for r in runs], val_qwk,
                       pd.concat([r[1] for r in runs], ignore_index=True), list(params.finetune.folds),
                       len(table), run_info(seed))
    write_parquet(predictions_path(arm, scheme, seed), table)
    write_json(training_path(arm, scheme, seed), record.to_dict())
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", required=True, choices=ARMS)
    parser.add_argument("--scheme", required=True, choices=SCHEMES)
    parser.add_argument("--folds", type=int, nargs="+", help="default: finetune.folds (a subset is marked incomplete)")
    parser.add_argument("--seed", type=int, help="a training seed in params seeds.finetune (default: the first)")
    args = parser.parse_args(argv)
    params = load_params()
    folds = args.folds or list(params.finetune.folds)
    seed = params.seeds.of(args.arm)[0] if args.seed is None else args.seed
    record = collect(args.arm, args.scheme, folds, params, seed)
    print(f"{args.arm}_{args.scheme} seed {seed}: {record.n_essays} essays from folds {folds}; budget {record.budget} "
          f"(gate_valid={record.gate_valid}), {record.details['wall_seconds_total']:.0f}s of training runs; "
          f"finite checks: {record.finite_summary()}")


if __name__ == "__main__":
    run_stage(main)
