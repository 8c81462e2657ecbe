"""Stage `finetune`: train one arm (lora | adversarial | groupdro) on one fold of one scheme with the
selected budget, score the fold's validation essays, and write `data/runs/<arm>/<scheme>/seed_<s>/fold_<k>/`:
predictions.parquet (the shared predictions contract), truncation_coverage.json, tokens.parquet
(per-essay token counts) and train_log.json (per-step loss, device, precision used, seed, wall time, the
NaN/inf checks the run performed, leakage / group-weight diagnostics)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from stages.lib.core.atomic import atomic_dir, write_json
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.params import ARMS, SCHEMES, Finetune, Params
from stages.lib.core.paths import PREFLIGHT, run_dir
from stages.lib.core.runinfo import device_name, run_info
from stages.lib.data.fold_files import read_fold, scheme_folds
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.predictions import fold_predictions
from stages.lib.training.essay_model import count_parameters
from stages.lib.training.fold_essays import calibrate, coverage_and_tokens, encode, select_essays
from stages.lib.training.leakage import prompt_leakage
from stages.lib.training.recipe import fit_arm
from stages.lib.training.runs import COVERAGE, PREDICTIONS, TOKENS, TRAIN_LOG
from stages.lib.training.runtime import open_runtime
from stages.lib.training.speed_ladder import proven_budget


def check_selection(cfg: Finetune, arm: str, scheme: str, fold: int, seed: int, seeds: list[int], source: str
                    ) -> None:
    """The requested run must be one the params select (so stale CLI calls fail closed)."""
    for name, value, chosen in (("arm", arm, cfg.arms), ("scheme", scheme, cfg.schemes), ("fold", fold, cfg.folds),
                                ("seed", seed, seeds)):
        if value not in chosen:
            raise InputError(f"--{name} {value!r} is not selected in {source} ({list(chosen)})")
    made = scheme_folds(scheme)
    if fold not in made:
        raise InputError(f"finetune.folds: fold {fold} of {scheme} does not exist; the folds stage made {made} "
                         "(with folds.leave_one_prompt_out, one per prompt)")


def run_fold(arm: str, scheme: str, fold: int, params: Params, seed: int | None = None) -> dict[str, Any]:
    """Train and score one fold with one training seed (default: the first of `seeds.finetune`); write its run
    directory; return the training log."""
    t0 = time.perf_counter()
    cfg = params.finetune
    seeds = params.seeds.of(arm)
    seed = seeds[0] if seed is None else int(seed)
    check_selection(cfg, arm, scheme, fold, seed, seeds, params.source)
    schema, budget = DatasetSchema.from_params(params), proven_budget(cfg.selected, PREFLIGHT)
    runtime = open_runtime(budget, seed)
    tokenizer = runtime.tokenizer
    essays = select_essays(*read_fold(scheme, fold), budget, seed)
    t_prep = time.perf_counter()
    fitted = fit_arm(arm, runtime, essays, schema, cfg.objectives.of(arm), seed, fold)
    model, objective, accelerator, training = fitted.model, fitted.objective, fitted.accelerator, fitted.training
    t_train = time.perf_counter()
    val_set = encode(essays.val, tokenizer, budget)
    val_out, held_out = fitted.infer(val_set), fitted.infer(fitted.held_set)
    t_pred = time.perf_counter()

    continuous, on_grid = calibrate(budget.calibration, schema, fitted.common_scale(held_out),
                                    schema.common_targets(essays.held), fitted.common_scale(val_out),
                                    essays.val["prompt"].to_numpy())
    table = fold_predictions(essays.val, fold, schema, continuous, on_grid)
    content_window = budget.max_length - tokenizer.num_special_tokens_to_add(pair=False)
    coverage, tokens = coverage_and_tokens({"train": (essays.train, fitted.train_set),
                                            "holdout": (essays.held, fitted.held_set),
                                            "val": (essays.val, val_set)}, content_window, budget)
    plan = runtime.plan
    autocast = str(plan.autocast_dtype).removeprefix("torch.") if plan.autocast_dtype else None
    log = {
        "arm": arm, "scheme": scheme, "fold": fold,
        "budget": budget.name, "gate_valid": budget.gate_valid, "backbone": budget.backbone,
        "device": str(accelerator.device), "device_name": device_name(), "num_processes": accelerator.num_processes,
        "precision": {"requested": budget.precision, "used": plan.name,
                      "autocast_dtype": autocast,
                      "grad_scaler": training.pop("grad_scaler"), "activation_dtype": training.pop("activation_dtype"),
                      "accelerate_mixed_precision": accelerator.mixed_precision},
        "windows": {"max_length": budget.max_length, "stride": budget.stride, "content_window": content_window},
        "seed": seed, "deterministic": runtime.device == "cpu", "threads": torch.get_num_threads(),
        "n_essays": {"train_fold": essays.n_train_fold, "trained": len(essays.train), "holdout": len(essays.held),
                     "val": len(essays.val), "train_prompts": len(essays.prompts)},
        "hyperparameters": {**budget.record(), "objective": cfg.objectives.of(arm)},  # speed: as preflight proved it
        "speed_fell_back": budget.speed != cfg.selected.speed,
        "parameters": count_parameters(model),
        "attention_used": model.attention,  # the speed settings themselves are in hyperparameters
        "target_standardisation": {t: {"mean": float(m), "std": float(s)}
                                   for t, m, s in zip(schema.targets, fitted.scale.mean, fitted.scale.std,
                                                      strict=True)},
        "head_init": {"kind": budget.head_init, "ridge_alpha": fitted.head_alpha},
        "training": training,
        "diagnostics": {
            "prompt_leakage": prompt_leakage(held_out.rep.numpy(), essays.groups(essays.held), len(essays.prompts),
                                             seed),
            "objective": objective.diagnostics(held_out, essays.groups(essays.held)),
        },
        # values checked (a failure stops the run)
        "finite_checks": {**training.pop("finite_checks"), **fitted.checked},
        "seconds": {"prepare": t_prep - t0, "train": t_train - t_prep, "predict": t_pred - t_train,
                    "total": time.perf_counter() - t0},
        "run": run_info(seed, threads=torch.get_num_threads()),
    }
    if accelerator.is_main_process:
        with atomic_dir(run_dir(arm, scheme, fold, seed)) as out:
            table.to_parquet(out / PREDICTIONS, index=False)
            tokens.to_parquet(out / TOKENS, index=False)
            write_json(out / COVERAGE, coverage)
            write_json(out / TRAIN_LOG, log)
    return log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", required=True, choices=ARMS)
    parser.add_argument("--scheme", required=True, choices=SCHEMES)
    parser.add_argument("--fold", required=True, type=int, nargs="+",
                        help="one fold, or several run one after another in this process (each exactly as alone)")
    parser.add_argument("--seed", type=int, help="a training seed in params seeds.finetune (default: the first)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params()
    for fold in args.fold:
        log = run_fold(args.arm, args.scheme, fold, params, args.seed)
        print(f"{args.arm}/{args.scheme}/seed_{log['seed']}/fold_{fold}: budget {log['budget']} on {log['device']} "
              f"({log['precision']['used']}), {log['training']['micro_batches']} micro-batches, "
              f"{log['n_essays']['val']} essays scored, {log['seconds']['total']:.0f}s")


if __name__ == "__main__":
    run_stage(main)
