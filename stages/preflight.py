"""Stage `preflight`: fail closed in seconds, before any training stage. Checks that peft and accelerate
import, the corpus and every selected fold are present with the needed columns, the device and precision
the budget asks for exist, the backbone loads offline, and one forward/backward on a tiny invented batch
gives finite values in the chosen precision for every selected arm. Writes `metrics/preflight.json`."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from stages.lib.core.atomic import write_json
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.paths import ESSAYS, PREFLIGHT
from stages.lib.core.runinfo import run_info
from stages.lib.data.fold_files import FOLDS_DIR, SPLITS, fold_file
from stages.lib.data.schema import DatasetSchema
from stages.lib.training.essay_model import EssayRegressor
from stages.lib.training.finetune_config import FinetuneConfig, finetune_config
from stages.lib.training.finite import check_finite
from stages.lib.training.objectives import make_objective
from stages.lib.training.precision import PrecisionPlan
from stages.lib.training.runtime import open_runtime
from stages.lib.training.trainer import TrainingStep
from stages.lib.windows.essay_batches import EssayCollator, encode_essays

CANARY_TEXTS = (
    "This invented canary essay exists only to test the pipeline. " * 90,  # longer than any window
    "A short invented canary essay.",
)


def check_imports(names: tuple[str, ...] = ("peft", "accelerate", "transformers")) -> dict[str, str]:
    """Versions of the training libraries; a missing one fails with its name."""
    versions = {}
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise InputError(f"preflight: cannot import {name} ({exc}); install the project's dependencies") from exc
        versions[name] = importlib.metadata.version(name)
    return versions


def check_folds(root: Path, schemes: tuple[str, ...], folds: tuple[int, ...], columns: list[str]) -> int:
    """Every selected fold file exists, has rows and the needed columns; returns the number of files."""
    n = 0
    for scheme in schemes:
        for fold in folds:
            for split in SPLITS:
                path = fold_file(scheme, fold, split, root)
                if not path.is_file():
                    raise InputError(f"preflight: {path} not found (run the folds stage, or fix finetune.folds)")
                meta = pq.read_metadata(path)
                missing = sorted(set(columns) - set(meta.schema.names))
                if missing or meta.num_rows == 0:
                    raise InputError(f"preflight: {path}: {meta.num_rows} rows, missing column(s) {missing}")
                n += 1
    return n


def canary(model: EssayRegressor, cfg: FinetuneConfig, tokenizer, plan: PrecisionPlan, accelerator) -> dict[str, Any]:
    """One forward/backward per selected arm on an invented two-essay batch; every loss, prediction and
    gradient must be finite and the encoder must compute in the planned precision."""
    budget = cfg.budget
    data = encode_essays(list(CANARY_TEXTS), tokenizer, budget.max_length, budget.stride,
                         targets=torch.zeros((2, model.head.out_features)).numpy(), groups=[0, 1])
    batch = EssayCollator(data, tokenizer.pad_token_id)(list(range(len(data))))
    batch = {k: v.to(accelerator.device) for k, v in batch.items()}
    model.to(accelerator.device).train()
    losses = {}
    for arm in cfg.arms:
        objective = make_objective(arm, model.hidden_size, ["canary_a", "canary_b"], cfg.objectives[arm])
        step = TrainingStep(model, objective).to(accelerator.device)
        with accelerator.autocast():
            loss, out = step(batch)
        check_finite(f"canary prediction ({arm})", out.pred, fold=-1, step=0)
        check_finite(f"canary loss ({arm})", loss, fold=-1, step=0)
        loss.backward()
        for name, param in step.named_parameters():
            if param.grad is not None:
                check_finite(f"canary gradient of {name} ({arm})", param.grad, fold=-1, step=0)
        if not any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.encoder.parameters()):
            raise InputError(f"preflight: no encoder parameter received a gradient ({arm}); "
                             "check the finetune lora settings")
        step.zero_grad(set_to_none=True)
        losses[arm] = float(loss.detach())
    expected = str(plan.autocast_dtype or torch.float32).removeprefix("torch.")
    if model.activation_dtype != expected:
        raise InputError(f"preflight: precision {plan.name} planned but the encoder computed in "
                         f"{model.activation_dtype}")
    return {"windows": len(data.windowed.windows), "loss": losses, "activation_dtype": model.activation_dtype,
            "attention": model.attention, "compiled": model.compiled}


def main() -> None:
    start = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    checks: dict[str, Any] = {}
    params = load_params()
    cfg = finetune_config(params)
    schema, budget = DatasetSchema.from_params(params), cfg.budget
    checks["params"] = {"budget": budget.name, "arms": list(cfg.arms), "schemes": list(cfg.schemes),
                        "folds": list(cfg.folds)}
    checks["imports"] = check_imports()
    if not ESSAYS.is_file():
        raise InputError(f"preflight: {ESSAYS} not found (run the prepare stage)")
    columns = ["essay_id", "prompt", "text", "n_words", *schema.targets, *schema.subgroups]
    checks["fold_files"] = check_folds(FOLDS_DIR, cfg.schemes, cfg.folds, columns)
    runtime = open_runtime(budget, seed=None)
    tokenizer, plan = runtime.tokenizer, runtime.plan
    if tokenizer.pad_token_id is None:
        raise InputError(f"preflight: backbone {budget.backbone}: tokenizer has no pad token")
    checks["backbone_load_seconds"] = round(runtime.load_seconds, 2)
    model, _, accelerator = runtime.build(len(schema.targets))
    checks["canary"] = canary(model, cfg, tokenizer, plan, accelerator)
    seconds = time.perf_counter() - start
    write_json(PREFLIGHT, {
        "passed": True,
        "budget": budget.name,
        "gate_valid": budget.gate_valid,
        "backbone": budget.backbone,
        "device": str(accelerator.device),
        "precision": {"requested": budget.precision, "used": plan.name, "grad_scaler": plan.needs_scaler},
        "seconds": round(seconds, 1),
        "checks": checks,
        "run": run_info(int(params["seed"])),
    })
    print(f"preflight passed in {seconds:.1f}s: {budget.name} budget, {budget.backbone} on {accelerator.device} "
          f"({plan.name}), arms {list(cfg.arms)}")


if __name__ == "__main__":
    run_stage(main)
