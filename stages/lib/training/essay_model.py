"""The essay scorer: encoder windows → masked mean per window → token-weighted mean per essay →
dropout → linear head with one output per target (standardised scale)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.utils.checkpoint
from torch import nn

from stages.lib.core.errors import InputError
from stages.lib.core.params import Budget, Lora
from stages.lib.encoders.attention import use_attention
from stages.lib.windows.encoding import masked_mean, pool_windows


class EssayOutput(NamedTuple):
    """Per-essay predictions (standardised targets) and pooled representations."""

    pred: torch.Tensor
    rep: torch.Tensor


class EssayRegressor(nn.Module):
    """Multi-target regression over whole essays given as windows (`owner[w]` = essay of window w)."""

    def __init__(self, encoder: nn.Module, n_targets: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_targets)
        # Autocast evidence: the dtype the encoder's matrix products actually ran in (its first linear layer;
        # the final hidden states are float32 under autocast anyway, since layer norm runs in float32).
        self.activation_dtype: str | None = None
        self.attention: str | None = None  # which attention kernels ran (set by build_essay_model)
        self.compiled = False
        first_linear = next(m for m in encoder.modules() if isinstance(m, nn.Linear))
        first_linear.register_forward_hook(self._record_dtype)

    def _record_dtype(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.activation_dtype = str(output.dtype).removeprefix("torch.")

    @property
    def hidden_size(self) -> int:
        return self.head.in_features

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, owner: torch.Tensor,
                n_essays: int) -> EssayOutput:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        windows = masked_mean(hidden.float(), attention_mask)
        rep = pool_windows(windows, owner, attention_mask.sum(1), n_essays)
        return EssayOutput(self.head(self.dropout(rep)).float(), rep)


def build_essay_model(encoder: nn.Module, n_targets: int, lora: Lora, head_dropout: float,
                      gradient_checkpointing: bool, encoder_dropout: float | None = None, *,
                      attention: str | None = None, compile_encoder: bool = False) -> EssayRegressor:
    """Wrap the encoder with LoRA adapters (or leave every weight trainable for a full fine-tune);
    `encoder_dropout` overrides the backbone's own dropout rates (not LoRA's); `attention` (sdpa | eager,
    None = as loaded) picks the attention kernels; `compile_encoder` compiles the wrapped encoder in place."""
    attention_used = use_attention(encoder, attention) if attention else encoder.config._attn_implementation
    if encoder_dropout is not None:
        for module in encoder.modules():
            if isinstance(module, nn.Dropout):
                module.p = encoder_dropout
    if gradient_checkpointing:
        enable_gradient_checkpointing(encoder)
    if lora.enabled:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=list(lora.target_modules), bias="none",
                            layers_to_transform=list(lora.layers) if lora.layers is not None else None)
        try:
            encoder = get_peft_model(encoder, config)
        except ValueError as exc:
            raise InputError(f"LoRA target_modules {list(lora.target_modules)} / layers {lora.layers}: {exc}") from exc
    model = EssayRegressor(encoder, n_targets, head_dropout)
    if compile_encoder:  # in place: parameter names and state_dict keys stay as they are
        model.encoder.compile(dynamic=True)
    model.attention = attention_used
    model.compiled = compile_encoder
    return model


def model_for_budget(encoder: nn.Module, n_targets: int, budget: Budget) -> EssayRegressor:
    """`build_essay_model` with everything a budget sets (adapters, dropout, checkpointing, attention, compile)."""
    return build_essay_model(encoder, n_targets, budget.lora, budget.head_dropout, budget.gradient_checkpointing,
                             budget.encoder_dropout, attention=budget.speed.attention,
                             compile_encoder=budget.speed.compile)


class CheckpointedLayer(nn.Module):
    """Recompute one encoder layer's activations in the backward pass (non-reentrant checkpoint)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, *args, **kwargs):
        if self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self.layer, *args, use_reentrant=False, **kwargs)
        return self.layer(*args, **kwargs)


def enable_gradient_checkpointing(encoder: nn.Module) -> str:
    """Transformers' own activation checkpointing where the architecture has it; otherwise (MPNet in
    transformers 5) every layer of `encoder.encoder.layer` is wrapped in `CheckpointedLayer`.
    Returns which of the two was used."""
    try:
        if hasattr(encoder, "activation_checkpointing_enable"):  # transformers >= 5.2x
            encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # earlier 5.x (the lent GPU machines have 5.17)
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return "transformers"
    except ValueError:
        layers = getattr(getattr(encoder, "encoder", None), "layer", None)
        if not isinstance(layers, nn.ModuleList):
            raise InputError(f"gradient checkpointing: {type(encoder).__name__} supports none and has no "
                             "encoder.layer list to wrap; set gradient_checkpointing: false") from None
        for i, layer in enumerate(layers):
            layers[i] = CheckpointedLayer(layer)
        return "layer_wrapper"


@torch.no_grad()
def fit_head(model: EssayRegressor, reps: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None
             ) -> float | list[float]:
    """Linear-probe initialisation of the head (the LP of LP-FT): ridge regression of the standardised
    targets on the frozen representations, penalty chosen by leave-one-out; returns the penalty. With `mask`
    (targets some prompts do not score), one ridge per target on the essays that have it; returns each penalty."""
    from sklearn.linear_model import RidgeCV

    reps, targets = np.asarray(reps, float), np.asarray(targets, float)
    alphas = np.logspace(-3, 4, 15)
    if mask is None:
        ridge = RidgeCV(alphas=alphas).fit(reps, targets)
        coef, intercept, penalty = ridge.coef_, np.atleast_1d(ridge.intercept_), float(ridge.alpha_)
    else:
        fits = [RidgeCV(alphas=alphas).fit(reps[mask[:, j] > 0], targets[mask[:, j] > 0, j])
                for j in range(targets.shape[1])]
        coef = np.stack([f.coef_ for f in fits])
        intercept = np.array([float(f.intercept_) for f in fits])
        penalty = [float(f.alpha_) for f in fits]
    model.head.weight.copy_(torch.as_tensor(coef, dtype=model.head.weight.dtype))
    model.head.bias.copy_(torch.as_tensor(intercept, dtype=model.head.bias.dtype))
    return penalty


def count_parameters(model: nn.Module) -> dict[str, int]:
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
