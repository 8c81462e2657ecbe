"""The one setup sequence every training caller (finetune, preflight, the benchmark) goes through:
device → precision → threads → seed → encoder, then model → objective → accelerator. The order is part of
the result: it fixes which random numbers initialise the adapters and heads."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from stages.lib.core.params import Budget
from stages.lib.encoders.backbone import load_encoder
from stages.lib.training.essay_model import EssayRegressor, model_for_budget
from stages.lib.training.objectives import Objective
from stages.lib.training.precision import PrecisionPlan, resolve_device, select_precision
from stages.lib.training.trainer import accelerator_for, seed_everything


@dataclass
class Runtime:
    """Where and how a budget's runs compute, with its backbone loaded."""

    budget: Budget
    device: str  # cpu | cuda
    plan: PrecisionPlan
    tokenizer: Any
    encoder: torch.nn.Module
    load_seconds: float

    def build(self, n_targets: int, objective: Callable[[EssayRegressor], Objective] | None = None
              ) -> tuple[EssayRegressor, Objective | None, Any]:
        """The budget's model on the loaded encoder, then the objective (if asked for), then the accelerator."""
        model = model_for_budget(self.encoder, n_targets, self.budget)
        made = objective(model) if objective is not None else None
        return model, made, accelerator_for(self.plan, self.device, self.budget)


def open_runtime(budget: Budget, seed: int | None) -> Runtime:
    """Resolve the device and precision, set threads and (when given) the seed, and load the backbone."""
    device, bf16 = resolve_device(budget.device)
    plan = select_precision(budget.precision, device, bf16)
    if budget.threads:
        torch.set_num_threads(budget.threads)
    if seed is not None:
        seed_everything(seed, deterministic=device == "cpu")
    start = time.perf_counter()
    tokenizer, encoder = load_encoder(budget.backbone)
    return Runtime(budget, device, plan, tokenizer, encoder, time.perf_counter() - start)
