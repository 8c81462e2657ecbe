"""Training algorithms behind one interface (WILDS style), so the training loop never branches on
the algorithm: `lora` (ERM), `adversarial` (DANN: prompt classifier behind a gradient reversal
layer) and `groupdro` (online worst-prompt weights with prompt-balanced sampling)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from stages.lib.training.distributed import gather_in_process_order, world
from stages.lib.training.essay_model import EssayOutput
from stages.lib.windows.essay_batches import balanced_weights


def essay_losses(pred: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-essay MSE averaged over the targets (standardised scale); with `mask` (1 where the essay's prompt
    scores the target, 0 where it does not), over the essay's scored targets only."""
    if mask is None:
        return ((pred.float() - targets.float()) ** 2).mean(dim=1)
    mask = mask.float()
    return (((pred.float() - targets.float()) ** 2) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class Objective(nn.Module):
    """ERM: the mean regression loss. Subclasses override the hooks they need."""

    name = "lora"

    def sample_weights(self, groups: np.ndarray) -> np.ndarray | None:
        """Per-essay sampling weights for the training sampler; None = each essay once per epoch."""
        return None

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups for the objective's own parameters (with their own learning rates)."""
        return []

    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1], called before every micro-batch."""

    def loss(self, out: EssayOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return essay_losses(out.pred, batch["targets"], batch.get("target_mask")).mean()

    def diagnostics(self, held_out: EssayOutput, groups: np.ndarray) -> dict[str, Any]:
        """Objective-specific diagnostics on the held-out training slice (representations + group ids)."""
        return {}


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Identity forward; gradient multiplied by −λ backward."""
    return _GradientReversal.apply(x, lam)


def ganin_lambda(progress: float, lambda_max: float) -> float:
    """DANN schedule: λ_p = λ_max · (2 / (1 + exp(−10 p)) − 1), rising from 0 to ≈ λ_max."""
    return lambda_max * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


class AdversarialPrompt(Objective):
    """Regression loss + prompt cross-entropy through a gradient reversal layer: the classifier learns
    to recognise the prompt, the encoder learns to hide it."""

    name = "adversarial"

    def __init__(self, rep_dim: int, n_groups: int, lambda_max: float, head_lr: float, hidden: int):
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(rep_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_groups))
        self.lambda_max, self.head_lr, self.n_groups = lambda_max, head_lr, n_groups
        self.lam = 0.0

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.classifier.parameters()), "lr": self.head_lr, "name": "prompt_classifier"}]

    def set_progress(self, progress: float) -> None:
        self.lam = ganin_lambda(progress, self.lambda_max)

    def loss(self, out: EssayOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        regression = essay_losses(out.pred, batch["targets"], batch.get("target_mask")).mean()
        logits = self.classifier(grad_reverse(out.rep.float(), self.lam))
        adversary = nn.functional.cross_entropy(logits.float(), batch["groups"])
        return regression + adversary

    @torch.no_grad()
    def diagnostics(self, held_out: EssayOutput, groups: np.ndarray) -> dict[str, Any]:
        """Leakage: the prompt classifier's accuracy on held-out essays of the training prompts."""
        result: dict[str, Any] = {"lambda_final": self.lam, "n_prompts": self.n_groups}
        if len(groups):
            device = next(self.classifier.parameters()).device
            predicted = self.classifier(held_out.rep.float().to(device)).argmax(1).cpu().numpy()
            result["adversary_accuracy"] = float(np.mean(predicted == groups))
        return result


class GroupDRO(Objective):
    """Online group DRO over prompts (Sagawa et al.): q_g ← q_g·exp(η·loss_g), renormalised; the loss is
    the q-weighted mean of the batch's per-prompt losses (normalised over the prompts present, so its
    scale matches ERM). Training batches are prompt-balanced. Prompts absent from a batch are masked
    arithmetically (no boolean indexing, so no host-device synchronisation)."""

    name = "groupdro"

    def __init__(self, group_names: list[str], eta: float):
        super().__init__()
        self.eta = eta
        self.group_names = list(group_names)
        n_groups = len(self.group_names)
        self.register_buffer("q", torch.full((n_groups,), 1.0 / n_groups, dtype=torch.float64))

    def sample_weights(self, groups: np.ndarray) -> np.ndarray:
        return balanced_weights(groups)

    def loss(self, out: EssayOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        losses = essay_losses(out.pred, batch["targets"], batch.get("target_mask"))
        groups = batch["groups"]
        n = self.q.numel()
        sums = torch.zeros(n, device=losses.device, dtype=losses.dtype).index_add(0, groups, losses)
        counts = torch.zeros(n, device=losses.device, dtype=losses.dtype).index_add(0, groups, torch.ones_like(losses))
        present = (counts > 0).to(losses.dtype)
        group_loss = sums / counts.clamp(min=1.0)  # 0 for absent prompts
        rank, size = world()
        if size > 1:  # data-parallel: every process applies every process's batch (below)
            q_mine = self._update_across_processes(sums.detach(), counts.detach(), rank)
        else:
            with torch.no_grad():
                q = self.q * torch.exp(self.eta * (group_loss.detach() * present).double())  # absent: × exp(0)
                self.q.copy_(q / q.sum())
            q_mine = self.q
        weights = q_mine.to(group_loss.dtype) * present
        return (weights * group_loss).sum() / weights.sum()

    @torch.no_grad()
    def _update_across_processes(self, sums: torch.Tensor, counts: torch.Tensor, rank: int) -> torch.Tensor:
        """Gather every process's per-prompt loss sums and counts and apply their q updates in process order,
        the order one process would meet these micro-batches in: every process then holds the same `q`, and
        this process's batch is weighted with the q after its own update, exactly as in one process. Returns
        that q."""
        every = gather_in_process_order(torch.stack([sums, counts]))  # (processes, 2, groups)
        q_mine = self.q
        for k, (s, c) in enumerate(every):
            present = (c > 0).to(s.dtype)
            q = self.q * torch.exp(self.eta * (s / c.clamp(min=1.0) * present).double())
            self.q.copy_(q / q.sum())
            if k == rank:
                q_mine = self.q.clone()
        return q_mine

    def diagnostics(self, held_out: EssayOutput, groups: np.ndarray) -> dict[str, Any]:
        """The final group weights (uniform = 1 / n prompts) and the most up-weighted prompts."""
        weights = dict(zip(self.group_names, self.q.cpu().tolist(), strict=True))
        top = sorted(weights, key=weights.get, reverse=True)[:5]
        return {"eta": self.eta, "uniform_weight": 1.0 / len(weights), "group_weights": weights, "top_weighted": top}


def make_objective(arm: str, rep_dim: int, group_names: list[str], settings: dict[str, float]) -> Objective:
    """The objective for an arm (`lora`, `adversarial` or `groupdro`) with its own hyperparameters;
    groups are the training prompts."""
    if arm == "lora":
        return Objective()
    if arm == "adversarial":
        return AdversarialPrompt(rep_dim, len(group_names), settings["lambda_max"], settings["head_lr"],
                                 int(settings["hidden"]))
    if arm == "groupdro":
        return GroupDRO(group_names, settings["eta"])
    raise ValueError(f"unknown arm {arm!r}")
