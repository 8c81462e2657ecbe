"""Stage `collect`: concatenate one arm's fold runs for a scheme into the shared predictions table
`data/predictions/<arm>_<scheme>.parquet` and summarise the training evidence in
`metrics/<arm>_<scheme>_training.json` (budget, gate validity, device, precision, seed, wall times,
finiteness, pooled truncation coverage, leakage versus chance)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.atomic import write_json, write_parquet
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.paths import predictions_path, run_dir, training_path
from stages.lib.core.runinfo import run_info
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.predictions import validate_predictions
from stages.lib.training.finetune_config import ARMS, SCHEMES, finetune_config
from stages.lib.training.runs import PREDICTIONS, TOKENS, TRAIN_LOG
from stages.lib.windows.chunking import coverage_report

_SAME_ACROSS_FOLDS = ("budget", "gate_valid", "backbone", "device", "seed", "windows")


def read_run(arm: str, scheme: str, fold: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """One fold's predictions, token counts and training log."""
    directory = run_dir(arm, scheme, fold)
    paths = [directory / name for name in (PREDICTIONS, TOKENS, TRAIN_LOG)]
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path} not found "
                             f"(run: python -m stages.finetune --arm {arm} --scheme {scheme} --fold {fold})")
    return pd.read_parquet(paths[0]), pd.read_parquet(paths[1]), json.loads(paths[2].read_text(encoding="utf-8"))


def summarise(logs: list[dict[str, Any]], tokens: pd.DataFrame) -> dict[str, Any]:
    """The training evidence of all folds; folds trained under different settings fail."""
    first = logs[0]
    for log in logs[1:]:
        for key in _SAME_ACROSS_FOLDS:
            if log[key] != first[key]:
                raise InputError(f"fold {log['fold']} has {key}={log[key]!r} but fold {first['fold']} has "
                                 f"{first[key]!r}; rerun every fold under one setting")
    windows = first["windows"]
    val = tokens[tokens["split"] == "val"]["n_tokens"].to_numpy()
    leakage = [{**log["diagnostics"]["prompt_leakage"], **log["diagnostics"]["objective"]} for log in logs]
    summary: dict[str, Any] = {
        **{key: first[key] for key in _SAME_ACROSS_FOLDS},
        "arm": first["arm"],
        "scheme": first["scheme"],
        "folds": [log["fold"] for log in logs],
        "precision": sorted({log["precision"]["used"] for log in logs}),
        "precision_detail": first["precision"],
        "finite": all(log["finite"] for log in logs),
        "wall_seconds": {f"fold_{log['fold']}": round(log["seconds"]["total"], 1) for log in logs},
        "wall_seconds_total": round(sum(log["seconds"]["total"] for log in logs), 1),
        "trained_essays_per_fold": [log["n_essays"]["trained"] for log in logs],
        "micro_batches_per_fold": [log["training"]["micro_batches"] for log in logs],
        "final_loss_per_fold": [float(np.mean(log["training"]["step_loss"][-10:])) for log in logs],
        "val_qwk_primary_per_fold": [next(v for k, v in log.items() if k.startswith("val_qwk_")) for log in logs],
        "truncation_coverage": coverage_report(val, windows["content_window"], windows["stride"]),
        "prompt_leakage": {
            key: _mean([entry.get(key) for entry in leakage])
            for key in ("probe_accuracy", "adversary_accuracy", "chance", "majority_rate")
            if any(entry.get(key) is not None for entry in leakage)
        },
        "hyperparameters": first["hyperparameters"],
    }
    weights = [log["diagnostics"]["objective"].get("top_weighted") for log in logs]
    if any(weights):
        summary["groupdro_top_weighted_prompts_per_fold"] = weights
    return summary


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def collect(arm: str, scheme: str, folds: list[int], params: dict[str, Any]) -> dict[str, Any]:
    schema = DatasetSchema.from_params(params)
    runs = [read_run(arm, scheme, fold) for fold in folds]
    table = pd.concat([r[0] for r in runs], ignore_index=True)
    validate_predictions(table, schema, f"{arm}/{scheme} folds {folds}")
    summary = summarise([r[2] for r in runs], pd.concat([r[1] for r in runs], ignore_index=True))
    summary["n_essays"] = len(table)
    summary["complete"] = sorted(folds) == sorted(finetune_config(params).folds)
    summary["run"] = run_info(int(params["seed"]))
    write_parquet(predictions_path(arm, scheme), table)
    write_json(training_path(arm, scheme), summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", required=True, choices=ARMS)
    parser.add_argument("--scheme", required=True, choices=SCHEMES)
    parser.add_argument("--folds", type=int, nargs="+", help="default: finetune.folds (a subset is marked incomplete)")
    args = parser.parse_args(argv)
    params = load_params()
    folds = args.folds or list(finetune_config(params).folds)
    summary = collect(args.arm, args.scheme, folds, params)
    print(f"{args.arm}_{args.scheme}: {summary['n_essays']} essays from folds {folds}; budget {summary['budget']} "
          f"(gate_valid={summary['gate_valid']}), {summary['wall_seconds_total']:.0f}s of training runs")


if __name__ == "__main__":
    run_stage(main)
