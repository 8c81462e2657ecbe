"""One training loop for every objective, and batched inference; accelerate places the work on the
device(s) and applies the precision plan (autocast, and a gradient scaler only for fp16)."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from stages.lib.core.params import Budget
from stages.lib.training.distributed import ShardableBatches, global_micro_batch, interleave, per_process_accumulation
from stages.lib.training.essay_model import EssayOutput, EssayRegressor
from stages.lib.training.finite import DeferredFiniteChecks, check_finite
from stages.lib.training.objectives import Objective
from stages.lib.training.precision import PrecisionPlan
from stages.lib.windows.essay_batches import EssayCollator, EssayWindows, LengthBucketedBatches


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; `deterministic` also forbids nondeterministic torch kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic)


def make_accelerator(plan: PrecisionPlan, device_type: str, accumulation_steps: int, non_blocking: bool = False):
    """An `accelerate.Accelerator` for the precision plan (CPU forced when the device is the CPU);
    `non_blocking` copies (pinned) batches to the GPU asynchronously."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    return Accelerator(mixed_precision=plan.accelerate_mixed_precision, cpu=device_type == "cpu",
                       gradient_accumulation_steps=accumulation_steps,
                       dataloader_config=DataLoaderConfiguration(non_blocking=non_blocking and device_type != "cpu"))


def accelerator_for(plan: PrecisionPlan, device_type: str, budget: Budget):
    """`make_accelerator` with the budget's gradient accumulation and asynchronous host-to-device copies; with N
    processes (`accelerate launch`, `torchrun`) each accumulates 1/N of the micro-batches of an optimizer step,
    so the effective batch stays `budget.effective_batch`."""
    accelerator = make_accelerator(plan, device_type, budget.accumulation_steps, non_blocking=budget.speed.pin_memory)
    if accelerator.num_processes > 1:
        accelerator.gradient_accumulation_steps = per_process_accumulation(budget.accumulation_steps,
                                                                           accelerator.num_processes)
    return accelerator


class TrainingStep(nn.Module):
    """Model + objective as one module, so device placement and gradient sync cover both."""

    def __init__(self, model: EssayRegressor, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, EssayOutput]:
        out = run_model(self.model, batch)
        return self.objective.loss(out, batch), out


def run_model(model: EssayRegressor, batch: dict[str, torch.Tensor]) -> EssayOutput:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], owner=batch["owner"],
                 n_essays=int(batch["index"].shape[0]))


def batch_loader(data: EssayWindows, sampler: LengthBucketedBatches, pad_id: int, workers: int = 0,
            pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Batches collated in `workers` background processes (0: in the loop), optionally page-locked. Workers
    restart every epoch: like the single-process loader, each epoch's iterator then draws one number from the
    global RNG, so dropout masks (and results) do not depend on the worker count."""
    return torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=EssayCollator(data, pad_id),
                                       num_workers=workers, pin_memory=pin_memory)


def make_optimizer(model: EssayRegressor, objective: Objective, budget: Budget, device_type: str
                   ) -> torch.optim.Optimizer:
    """AdamW over the encoder, head and objective groups; the fused CUDA kernel when the budget asks for it."""
    head = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    encoder = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": encoder, "lr": budget.lr, "name": "encoder"},
              {"params": head, "lr": budget.head_lr, "name": "head"}, *objective.param_groups()]
    fused = budget.speed.fused_optimizer and device_type == "cuda"
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=budget.weight_decay,
                             fused=fused or None)


def train(model: EssayRegressor, objective: Objective, data: EssayWindows, budget: Budget, accelerator,
          *, pad_id: int, seed: int, fold: int) -> dict[str, Any]:
    """Train in place; returns the log (per-step loss, steps, precision evidence, the finite checks that ran,
    seconds).

    Raises `NonFiniteError` naming the first non-finite loss or gradient norm; the host reads those values
    every `budget.speed.finite_check_every` micro-batches, so the loop never waits on the device in between.

    With N processes, process k runs global micro-batches k, k + N, …: the adversarial schedule follows the
    global micro-batch, and the log (losses in global order, loss checks) covers every process's batches."""
    from transformers import get_linear_schedule_with_warmup

    start = time.perf_counter()
    sampler = LengthBucketedBatches(data.token_counts, budget.batch_size, seed,
                                    weights=objective.sample_weights(data.groups))
    step_module = TrainingStep(model, objective)
    optimizer = make_optimizer(model, objective, budget, accelerator.device.type)
    cuda = accelerator.device.type == "cuda"
    rank, n = accelerator.process_index, accelerator.num_processes
    loader = batch_loader(data, sampler if n == 1 else ShardableBatches(sampler), pad_id, budget.speed.loader_workers,
                     budget.speed.pin_memory and cuda)
    updates = budget.epochs * math.ceil(len(sampler) / budget.accumulation_steps)
    # accelerate steps a prepared scheduler once per process at each optimizer step: n × the steps keeps the
    # learning rate of every optimizer step exactly the one-process value
    scheduler = get_linear_schedule_with_warmup(optimizer, n * math.ceil(budget.warmup_ratio * updates), n * updates)
    step_module, optimizer, loader, scheduler = accelerator.prepare(step_module, optimizer, loader, scheduler)
    trainable = [p for p in step_module.parameters() if p.requires_grad]
    total = budget.epochs * len(loader)
    losses: list[torch.Tensor] = []  # stay on the device until the end
    checks = DeferredFiniteChecks(budget.speed.finite_check_every, fold)
    step_module.train()
    for _ in range(budget.epochs):
        for batch in loader:
            step = global_micro_batch(len(losses), rank, n)
            objective.set_progress(step / max(total * n - 1, 1))
            with accelerator.accumulate(step_module):
                loss, _out = step_module(batch)
                checks.add("training loss", loss, step)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    norm = accelerator.clip_grad_norm_(trainable, budget.max_grad_norm)
                    if accelerator.scaler is None:  # with fp16 the scaler skips inf steps by design
                        checks.add("gradient norm", norm, step)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.detach())
            checks.micro_batch_done()
    checks.flush()
    step_loss = torch.stack(losses).float() if losses else torch.zeros(0)
    spread = {}
    if n > 1:  # every process's losses in global order; the same final schedule value on every process
        step_loss = interleave(accelerator.gather(step_loss).reshape(n, -1))
        count = accelerator.reduce(torch.tensor(checks.checked.get("training loss", 0), device=accelerator.device))
        checks.checked["training loss"] = int(count)
        objective.set_progress((total * n - 1) / max(total * n - 1, 1))
        spread = {"num_processes": n, "accumulation_per_process": accelerator.gradient_accumulation_steps}
    return {
        "step_loss": step_loss.cpu().tolist(),
        "micro_batches": len(step_loss),
        "optimizer_steps": updates,
        "accumulation_steps": budget.accumulation_steps,
        **spread,
        "activation_dtype": accelerator.unwrap_model(step_module).model.activation_dtype,
        "grad_scaler": accelerator.scaler is not None,
        "finite_checks": dict(checks.checked),
        "seconds": time.perf_counter() - start,
    }


@torch.inference_mode()
def predict(model: EssayRegressor, data: EssayWindows, accelerator, *, pad_id: int, batch_size: int,
            fold: int, checked: dict[str, int] | None = None) -> EssayOutput:
    """Predictions and representations for every essay, in the data's order (on the CPU).

    Raises `NonFiniteError` at the first non-finite prediction; `checked["prediction"]` (when given) counts the
    predictions checked, over every process (with several processes, an essay that pads the last round counts
    again)."""
    model.to(accelerator.device).eval()
    n = len(data)
    pred = torch.zeros((n, model.head.out_features))
    rep = torch.zeros((n, model.hidden_size))
    if n == 0:
        return EssayOutput(pred, rep)
    covered = torch.zeros(n, dtype=torch.bool)
    loader = accelerator.prepare_data_loader(
        batch_loader(data, LengthBucketedBatches(data.token_counts, batch_size, 0, shuffle=False), pad_id))
    for batch in loader:
        with accelerator.autocast():
            out = run_model(model, batch)
        check_finite("prediction", out.pred, fold=fold)
        index, p, r = (accelerator.pad_across_processes(t, pad_index=-1) for t in (batch["index"], out.pred, out.rep))
        index, p, r = accelerator.gather((index, p.float(), r.float()))
        keep = index >= 0
        if checked is not None:  # every process checked its own batch: count them all
            checked["prediction"] = checked.get("prediction", 0) + int(keep.sum())
        pred[index[keep].cpu()] = p[keep].cpu()
        rep[index[keep].cpu()] = r[keep].cpu()
        covered[index[keep].cpu()] = True
    if not bool(covered.all()):
        raise RuntimeError(f"fold {fold}: inference skipped essay(s) {torch.flatnonzero(~covered)[:5].tolist()}")
    return EssayOutput(pred, rep)
