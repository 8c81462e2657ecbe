"""Stage `finetune`: train one arm (lora | adversarial | groupdro) on one fold of one scheme with the
selected budget, score the fold's validation essays, and write `data/runs/<arm>/<scheme>/fold_<k>/`:
predictions.parquet (the shared predictions contract), truncation_coverage.json, tokens.parquet
(per-essay token counts) and train_log.json (per-step loss, device, precision used, seed, wall time,
leakage / group-weight diagnostics)."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from stages.lib.atomic import atomic_dir, write_json
from stages.lib.backbone import load_encoder
from stages.lib.calibration import make_calibrator
from stages.lib.chunking import coverage_report
from stages.lib.config import load_params
from stages.lib.errors import InputError, run_stage
from stages.lib.essay_batches import EssayWindows, encode_essays
from stages.lib.essay_model import count_parameters, fit_head, model_for_budget
from stages.lib.finetune_config import ARMS, SCHEMES, Budget, FinetuneConfig, finetune_config
from stages.lib.fold_files import read_fold
from stages.lib.leakage import prompt_leakage
from stages.lib.metrics import qwk
from stages.lib.objectives import make_objective
from stages.lib.precision import resolve_device, select_precision
from stages.lib.predictions import fold_predictions
from stages.lib.runinfo import device_name, run_info
from stages.lib.runs import COVERAGE, PREDICTIONS, TOKENS, TRAIN_LOG, run_dir
from stages.lib.schema import DatasetSchema
from stages.lib.subsets import capped_sample, stratified_holdout
from stages.lib.trainer import accelerator_for, predict, seed_everything, train


def check_selection(cfg: FinetuneConfig, arm: str, scheme: str, fold: int) -> None:
    """The requested run must be one the params select (so stale CLI calls fail closed)."""
    for name, value, chosen in (("arm", arm, cfg.arms), ("scheme", scheme, cfg.schemes), ("fold", fold, cfg.folds)):
        if value not in chosen:
            raise InputError(f"--{name} {value!r} is not selected in params.yaml finetune ({list(chosen)})")


def encode(frame: pd.DataFrame, tokenizer, budget: Budget, targets: np.ndarray | None = None,
           groups: np.ndarray | None = None) -> EssayWindows:
    return encode_essays(frame["text"].tolist(), tokenizer, budget.max_length, budget.stride, targets, groups)


def target_scale(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-target mean and standard deviation of the trained essays (a constant target keeps scale 1)."""
    std = y.std(0)
    return y.mean(0), np.where(std > 0, std, 1.0)


def calibrate(kind: str, schema: DatasetSchema, fit_pred: np.ndarray, fit_true: np.ndarray,
              pred: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """Map predictions to the grid, per target; cutpoints are fitted on the held-out training slice only.
    Prompts with their own grid are snapped to it."""
    on_grid = np.column_stack([
        make_calibrator(kind, schema.grid).fit(fit_pred[:, j], fit_true[:, j]).predict(pred[:, j])
        for j in range(pred.shape[1])
    ])
    for prompt, grid in schema.prompt_grids.items():
        rows = prompts == prompt
        on_grid[rows] = grid.snap(pred[rows])
    return on_grid


@dataclass(frozen=True)
class FoldEssays:
    """A fold's essays as the run uses them: trained-on rows, the held-out training slice, validation."""

    train: pd.DataFrame
    held: pd.DataFrame
    val: pd.DataFrame
    prompts: list[str]  # the training prompts; group id = position
    n_train_fold: int

    def groups(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["prompt"].map({p: i for i, p in enumerate(self.prompts)}).to_numpy()


def select_essays(train_df: pd.DataFrame, val_df: pd.DataFrame, budget: Budget, seed: int) -> FoldEssays:
    """Hold out a prompt-stratified training slice (never trained on, same for every arm), then cap the rest."""
    prompts = sorted(train_df["prompt"].unique())
    groups = train_df["prompt"].map({p: i for i, p in enumerate(prompts)}).to_numpy()
    held = stratified_holdout(groups, budget.holdout_fraction, seed, budget.max_holdout_essays)
    trained = capped_sample(np.flatnonzero(~held), budget.max_train_essays, seed)
    return FoldEssays(train_df.iloc[trained], train_df[held], val_df, prompts, len(train_df))


def coverage_and_tokens(sets: dict[str, tuple[pd.DataFrame, EssayWindows]], content_window: int,
                        budget: Budget) -> tuple[dict[str, Any], pd.DataFrame]:
    """Truncation-coverage telemetry over every essay the run encoded (and per split), and the token table."""
    tokens = pd.concat([
        pd.DataFrame({"essay_id": frame["essay_id"].to_numpy(), "split": name, "n_tokens": data.token_counts})
        for name, (frame, data) in sets.items()
    ], ignore_index=True)
    coverage = {
        **coverage_report(tokens["n_tokens"].to_numpy(), content_window, budget.stride),
        "max_length": budget.max_length,
        "by_split": {name: coverage_report(data.token_counts, content_window, budget.stride)
                     for name, (_, data) in sets.items()},
    }
    return coverage, tokens


def run_fold(arm: str, scheme: str, fold: int, params: dict[str, Any]) -> dict[str, Any]:
    """Train and score one fold; write its run directory; return the training log."""
    t0 = time.perf_counter()
    cfg = finetune_config(params)
    check_selection(cfg, arm, scheme, fold)
    schema, budget, seed = DatasetSchema.from_params(params), cfg.budget, int(params["seed"])
    device, bf16 = resolve_device(budget.device)
    plan = select_precision(budget.precision, device, bf16)
    if budget.threads:
        torch.set_num_threads(budget.threads)
    seed_everything(seed, deterministic=device == "cpu")

    essays = select_essays(*read_fold(scheme, fold), budget, seed)
    targets = list(schema.targets)
    y_train, y_held = essays.train[targets].to_numpy(float), essays.held[targets].to_numpy(float)
    mean, std = target_scale(y_train)
    tokenizer, encoder = load_encoder(budget.backbone)
    train_set = encode(essays.train, tokenizer, budget, (y_train - mean) / std, essays.groups(essays.train))
    held_set = encode(essays.held, tokenizer, budget, groups=essays.groups(essays.held))
    val_set = encode(essays.val, tokenizer, budget)
    t_prep = time.perf_counter()

    model = model_for_budget(encoder, len(targets), budget)
    objective = make_objective(arm, model.hidden_size, essays.prompts, cfg.objectives[arm])
    accelerator = accelerator_for(plan, device, budget)
    infer = partial(predict, model, accelerator=accelerator, pad_id=tokenizer.pad_token_id,
                    batch_size=budget.eval_batch_size, fold=fold)
    head_alpha = None
    if budget.head_init == "ridge":  # linear probe on the frozen representations first (LP-FT)
        head_alpha = fit_head(model, infer(train_set).rep.numpy(), train_set.targets)
    t_init = time.perf_counter()
    training = train(model, objective, train_set, budget, accelerator, pad_id=tokenizer.pad_token_id, seed=seed,
                     fold=fold)
    t_train = time.perf_counter()
    val_out, held_out = infer(val_set), infer(held_set)
    t_pred = time.perf_counter()

    continuous = val_out.pred.numpy() * std + mean
    on_grid = calibrate(budget.calibration, schema, held_out.pred.numpy() * std + mean, y_held, continuous,
                        essays.val["prompt"].to_numpy())
    table = fold_predictions(essays.val, fold, schema, continuous, on_grid)
    content_window = budget.max_length - tokenizer.num_special_tokens_to_add(pair=False)
    coverage, tokens = coverage_and_tokens({"train": (essays.train, train_set), "holdout": (essays.held, held_set),
                                            "val": (essays.val, val_set)}, content_window, budget)
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
        "seed": seed, "deterministic": device == "cpu", "threads": torch.get_num_threads(),
        "n_essays": {"train_fold": essays.n_train_fold, "trained": len(essays.train), "holdout": len(essays.held),
                     "val": len(essays.val), "train_prompts": len(essays.prompts)},
        "hyperparameters": {**asdict(budget), "objective": cfg.objectives[arm]},
        "parameters": count_parameters(model),
        "attention_used": model.attention,  # the speed settings themselves are in hyperparameters
        "target_standardisation": {t: {"mean": float(m), "std": float(s)}
                                   for t, m, s in zip(targets, mean, std, strict=True)},
        "head_init": {"kind": budget.head_init, "ridge_alpha": head_alpha},
        "training": training,
        "diagnostics": {
            "prompt_leakage": prompt_leakage(held_out.rep.numpy(), essays.groups(essays.held), len(essays.prompts),
                                             seed),
            "objective": objective.diagnostics(held_out, essays.groups(essays.held)),
        },
        f"val_qwk_{schema.primary}": qwk(table[f"true_{schema.primary}"].to_numpy(),
                                          table[f"grid_{schema.primary}"].to_numpy(), schema.grid),
        "finite": True,
        "seconds": {"prepare": t_prep - t0, "head_init": t_init - t_prep, "train": t_train - t_init,
                    "predict": t_pred - t_train, "total": time.perf_counter() - t0},
        "run": run_info(seed, threads=torch.get_num_threads()),
    }
    if accelerator.is_main_process:
        with atomic_dir(run_dir(arm, scheme, fold)) as out:
            table.to_parquet(out / PREDICTIONS, index=False)
            tokens.to_parquet(out / TOKENS, index=False)
            write_json(out / COVERAGE, coverage)
            write_json(out / TRAIN_LOG, log)
    return log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", required=True, choices=ARMS)
    parser.add_argument("--scheme", required=True, choices=SCHEMES)
    parser.add_argument("--fold", required=True, type=int)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = run_fold(args.arm, args.scheme, args.fold, load_params())
    key = next(k for k in log if k.startswith("val_qwk_"))
    print(f"{args.arm}/{args.scheme}/fold_{args.fold}: budget {log['budget']} on {log['device']} "
          f"({log['precision']['used']}), {log['training']['micro_batches']} micro-batches, "
          f"{key} {log[key]:.3f}, {log['seconds']['total']:.0f}s")


if __name__ == "__main__":
    run_stage(main)
