"""Stage `preflight`: fail closed in seconds, before any training stage. Checks that peft and accelerate
import, the corpus and every selected fold are present with the needed columns, the device and precision
the budget asks for exist, the backbone loads offline, and one forward/backward
and optimizer step on a tiny invented batch give finite values in the chosen precision for every selected arm,
falling back rung by rung to safer speed settings when the configured ones fail (`training/speed_ladder.py`).
Writes `metrics/preflight.json`, with the speed settings every training run then uses."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from stages.lib.core.atomic import write_json
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.io import read_json_object
from stages.lib.core.params import Finetune, Speed
from stages.lib.core.paths import ESSAYS, PREFLIGHT
from stages.lib.core.runinfo import run_info
from stages.lib.data.fold_files import FOLDS_DIR, SPLITS, fold_file
from stages.lib.data.schema import DatasetSchema
from stages.lib.encoders.backbone import STAGED_MARKER, load_encoder, resolve_backbone
from stages.lib.training.essay_model import EssayRegressor
from stages.lib.training.finite import check_finite
from stages.lib.training.objectives import make_objective
from stages.lib.training.precision import PrecisionPlan
from stages.lib.training.runtime import Runtime, open_runtime
from stages.lib.training.speed_ladder import first_working, speed_record
from stages.lib.training.trainer import TrainingStep, batch_loader, make_optimizer
from stages.lib.windows.essay_batches import encode_essays

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


def canary(model: EssayRegressor, cfg: Finetune, tokenizer, plan: PrecisionPlan, accelerator,
           speed: Speed | None = None) -> dict[str, Any]:
    """One forward/backward and optimizer step per selected arm on an invented two-essay batch, collated by the
    training loader with `speed`'s workers and pinning (default: the budget's settings) and stepped by its
    optimizer (fused or not); every loss, prediction, gradient and updated weight must be finite and the encoder
    must compute in the planned precision."""
    budget = cfg.selected if speed is None else cfg.selected.model_copy(update={"speed": speed})
    device = accelerator.device
    data = encode_essays(list(CANARY_TEXTS), tokenizer, budget.max_length, budget.stride,
                         targets=torch.zeros((2, model.head.out_features)).numpy(), groups=[0, 1])
    loader = batch_loader(data, [list(range(len(data)))], tokenizer.pad_token_id, budget.speed.loader_workers,
                          budget.speed.pin_memory and device.type == "cuda")
    batch = {k: v.to(device, non_blocking=budget.speed.pin_memory) for k, v in next(iter(loader)).items()}
    model.to(device).train()
    losses = {}
    for arm in cfg.arms:
        objective = make_objective(arm, model.hidden_size, ["canary_a", "canary_b"], cfg.objectives.of(arm))
        step = TrainingStep(model, objective).to(device)
        optimizer = make_optimizer(model, objective, budget, device.type)
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
        optimizer.step()
        for name, param in step.named_parameters():
            if param.requires_grad:
                check_finite(f"canary weight {name} after the optimizer step ({arm})", param.detach(), fold=-1,
                             step=0)
        step.zero_grad(set_to_none=True)
        losses[arm] = float(loss.detach())
    expected = str(plan.autocast_dtype or torch.float32).removeprefix("torch.")
    if model.activation_dtype != expected:
        raise InputError(f"preflight: precision {plan.name} planned but the encoder computed in "
                         f"{model.activation_dtype}")
    return {"windows": len(data.windowed.windows), "loss": losses, "activation_dtype": model.activation_dtype,
            "attention": model.attention, "compiled": model.compiled}


def canary_ladder(runtime: Runtime, cfg: Finetune, n_targets: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The canary on each rung of the speed ladder until one passes (a fresh encoder per retry: a failed rung
    may have wrapped or compiled the loaded one); returns the passing canary and the speed record."""
    budget, unused = runtime.budget, [runtime.encoder]
    devices: list[str] = []

    def attempt(settings: Speed) -> dict[str, Any]:
        encoder = unused.pop() if unused else load_encoder(budget.backbone)[1]
        trial = replace(runtime, budget=budget.model_copy(update={"speed": settings}), encoder=encoder)
        model, _, accelerator = trial.build(n_targets)
        devices.append(str(accelerator.device))
        return canary(model, cfg, runtime.tokenizer, runtime.plan, accelerator, settings)

    used, result, attempts = first_working(budget.speed, attempt)
    return {**result, "device": devices[-1]}, speed_record(budget.speed, used, attempts)


def main() -> None:
    start = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    checks: dict[str, Any] = {}
    params = load_params()
    cfg = params.finetune
    schema, budget = DatasetSchema.from_params(params), cfg.selected
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
    # a copy staged for a machine without the package (tools/device: weights rounded to bf16) says so here
    staged = resolve_backbone(budget.backbone) / STAGED_MARKER
    checks["backbone_staged"] = read_json_object(staged) if staged.is_file() else None
    checks["canary"], speed = canary_ladder(runtime, cfg, len(schema.targets))
    seconds = time.perf_counter() - start
    write_json(PREFLIGHT, {
        "passed": True,
        "budget": budget.name,
        "gate_valid": budget.gate_valid,
        "backbone": budget.backbone,
        "device": checks["canary"]["device"],
        "precision": {"requested": budget.precision, "used": plan.name, "grad_scaler": plan.needs_scaler},
        "speed": speed,
        "seconds": round(seconds, 1),
        "checks": checks,
        "run": run_info(params.seed),
    })
    fallback = f"; speed settings fell back to {speed['attempts'][-1]['rung']!r}" if speed["fell_back"] else ""
    print(f"preflight passed in {seconds:.1f}s: {budget.name} budget, {budget.backbone} on "
          f"{checks['canary']['device']} ({plan.name}), arms {list(cfg.arms)}{fallback}")


if __name__ == "__main__":
    run_stage(main)
