"""FLOP accounting for encoder fine-tuning, and the dense bf16 peaks that model FLOPs utilisation (MFU) is
measured against.

Model FLOPs (the MFU convention of Kaplan et al. 2020 / PaLM, Chowdhery et al. 2022, appendix B), per
training pass over a batch of windows:

    6 · N · T  +  12 · L · h · Σ_w s_w²

N = per-token matrix-multiply parameters (the encoder layers, LoRA adapters included; not the embedding
tables, which are lookups, nor the pooler and regression head, which run once per window or essay), T = tokens,
L = encoder layers, h = hidden size, s_w = length of window w. The first term is forward (2NT) plus backward
(4NT: activation and weight gradients); the second is attention scores QKᵀ and the weighted sum AV
(2·s²·h each, so 4·L·h·s² forward and twice that backward). Inference is 2·N·T + 4·L·h·Σ s².

The convention ignores what a run skips or repeats. `executed_training_flops` estimates what actually runs:
no backward below the lowest layer with trainable weights, weight gradients only for trainable weights
(LoRA: the adapters), and a second forward of every back-propagated layer under activation checkpointing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from torch import nn

TRAINING_FORMULA = "model_flops = 6 * N * T + 12 * L * h * sum_w(s_w^2)"
INFERENCE_FORMULA = "forward_flops = 2 * N * T + 4 * L * h * sum_w(s_w^2)"
SYMBOLS = {
    "N": "per-token matrix-multiply parameters: the encoder layers incl. LoRA adapters (embedding tables are "
         "lookups; pooler and regression head run once per window/essay and are left out, < 2%)",
    "T": "tokens in the batch (real = attention-mask tokens incl. [CLS]/[SEP]; padded = windows x padded width)",
    "L": "encoder layers",
    "h": "hidden size",
    "s_w": "length of window w (real length, or the padded width for the padded variant)",
}

# Dense (no 2:4 sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, FLOP/s. First match wins, so
# more specific names come first. "H100 80GB HBM3" is how torch names the SXM part.
PEAK_BF16_DENSE: tuple[tuple[tuple[str, ...], float, str], ...] = (
    (("H200",), 989e12, "NVIDIA H200 (SXM/NVL) dense bf16"),
    (("H100", "PCIE"), 756e12, "NVIDIA H100 PCIe dense bf16"),
    (("H100", "NVL"), 835e12, "NVIDIA H100 NVL dense bf16"),
    (("H100",), 989e12, "NVIDIA H100 SXM dense bf16"),
    (("A100",), 312e12, "NVIDIA A100 dense bf16"),
)

_LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def peak_bf16_flops(device: str) -> tuple[float | None, str]:
    """(dense bf16 peak FLOP/s, source) for a device name such as `cuda:NVIDIA H100 80GB HBM3`; (None, reason)
    for a CPU or an accelerator not in the table."""
    name = device.upper()
    if name.startswith("CPU"):
        return None, ("CPU: no dense bf16 tensor-core peak to compare with (the cpu budget trains in fp32 on a "
                      "shared 2-core machine); pass --peak-flops to compare with a declared peak")
    for keys, flops, source in PEAK_BF16_DENSE:
        if all(k in name for k in keys):
            return flops, source
    return None, f"{device}: not in the peak table (tools/flops.py); pass --peak-flops"


def training_flops(n_params: int, n_layers: int, hidden: int, tokens: float, seq_sq_sum: float) -> float:
    """Model FLOPs of one forward + backward pass (see the module docstring)."""
    return 6.0 * n_params * tokens + 12.0 * n_layers * hidden * seq_sq_sum


def forward_flops(n_params: int, n_layers: int, hidden: int, tokens: float, seq_sq_sum: float) -> float:
    """FLOPs of one forward pass (inference)."""
    return 2.0 * n_params * tokens + 4.0 * n_layers * hidden * seq_sq_sum


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP formulas need to know about an essay model."""

    n_layers: int
    hidden: int
    matmul_params: int  # N: parameters inside the encoder layers (all L of them)
    other_params: int  # outside the layers and embedding tables: pooler, head (not counted)
    trainable_matmul_params: int  # trainable parameters inside the encoder layers
    first_trained_layer: int | None  # lowest encoder layer with a trainable weight; None: none trained
    embeddings_trained: bool
    checkpointing: bool

    @property
    def backward_layers(self) -> int:
        """Encoder layers the backward pass runs through."""
        if self.embeddings_trained:
            return self.n_layers
        return 0 if self.first_trained_layer is None else self.n_layers - self.first_trained_layer

    def as_dict(self) -> dict[str, int | bool | None]:
        return {"layers": self.n_layers, "hidden": self.hidden, "matmul_params_N": self.matmul_params,
                "uncounted_params": self.other_params, "trainable_matmul_params": self.trainable_matmul_params,
                "first_trained_layer": self.first_trained_layer, "backward_layers": self.backward_layers,
                "embeddings_trained": self.embeddings_trained, "activation_checkpointing": self.checkpointing}


def model_shape(model: nn.Module, n_layers: int, hidden: int, checkpointing: bool) -> ModelShape:
    """Count N (parameters of the numbered encoder layers), the rest outside embedding tables, and what trains."""
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    in_layers = other = trainable = 0
    trained_layers: list[int] = []
    embeddings_trained = False
    for name, p in model.named_parameters():
        if id(p) in embedding_ids:
            embeddings_trained |= p.requires_grad
            continue
        layer = _LAYER.search(name)
        if not layer:
            other += p.numel()
            continue
        in_layers += p.numel()
        if p.requires_grad:
            trainable += p.numel()
            trained_layers.append(int(layer.group(1)))
    return ModelShape(n_layers, hidden, in_layers, other, trainable, min(trained_layers, default=None),
                      embeddings_trained, checkpointing)


def executed_training_flops(shape: ModelShape, tokens: float, seq_sq_sum: float) -> float:
    """Estimate of the FLOPs a training pass actually executes (forward everywhere; activation gradients in
    back-propagated layers; weight gradients only for trainable weights; recompute under checkpointing)."""
    per_layer = shape.matmul_params / shape.n_layers
    bwd = shape.backward_layers
    linear = 2.0 * shape.matmul_params  # forward
    linear += 2.0 * per_layer * bwd  # activation gradients
    linear += 2.0 * shape.trainable_matmul_params  # weight gradients
    attention = 4.0 * shape.n_layers + 8.0 * bwd  # x h s², forward + backward
    if shape.checkpointing:
        linear += 2.0 * per_layer * bwd
        attention += 4.0 * bwd
    return linear * tokens + attention * shape.hidden * seq_sq_sum


@dataclass(frozen=True)
class BatchShapes:
    """Token totals of a sequence of padded window batches."""

    batches: int = 0
    essays: int = 0
    windows: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    real_seq_sq: int = 0
    padded_seq_sq: int = 0

    def __add__(self, other: BatchShapes) -> BatchShapes:
        return BatchShapes(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return (self.batches, self.essays, self.windows, self.real_tokens, self.padded_tokens, self.real_seq_sq,
                self.padded_seq_sq)

    def as_dict(self) -> dict[str, int | float]:
        return {"batches": self.batches, "essays": self.essays, "windows": self.windows,
                "real_tokens": self.real_tokens, "padded_tokens": self.padded_tokens,
                "padding_efficiency": self.real_tokens / self.padded_tokens if self.padded_tokens else None}


def batch_shapes(window_lengths: Iterable[int], essays: int) -> BatchShapes:
    """One batch padded to its longest window (dynamic padding, as `stages.lib.windows.encoding.pad_batch` does)."""
    lengths = np.asarray(list(window_lengths), dtype=np.int64)
    width = int(lengths.max()) if len(lengths) else 0
    return BatchShapes(1, essays, len(lengths), int(lengths.sum()), len(lengths) * width,
                       int((lengths ** 2).sum()), len(lengths) * width * width)
