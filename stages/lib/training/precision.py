"""Precision policy, explicit and pure: bf16 autocast where the device supports it, fp32 on CPU,
fp16 only with a gradient scaler. Weights always stay float32."""

from __future__ import annotations

from typing import NamedTuple

import torch

from stages.lib.core.errors import InputError

REQUESTS = ("auto", "bf16", "fp16", "fp32")
_ACCELERATE = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}


class PrecisionPlan(NamedTuple):
    """What to autocast to (None: plain fp32), whether a gradient scaler is needed, and its name."""

    autocast_dtype: torch.dtype | None
    needs_scaler: bool
    name: str

    @property
    def accelerate_mixed_precision(self) -> str:
        """The value for `accelerate.Accelerator(mixed_precision=...)`."""
        return _ACCELERATE[self.name]


FP32 = PrecisionPlan(None, False, "fp32")
BF16 = PrecisionPlan(torch.bfloat16, False, "bf16")
FP16 = PrecisionPlan(torch.float16, True, "fp16")


def select_precision(requested: str, device_type: str, bf16_supported: bool) -> PrecisionPlan:
    """Resolve a requested precision for a device; an impossible request fails instead of falling back.

    `auto`: bf16 on an accelerator that supports it, otherwise fp32 (fp16 must be asked for explicitly).
    CPU runs are always fp32."""
    if requested not in REQUESTS:
        raise InputError(f"finetune precision {requested!r}: expected one of {list(REQUESTS)}")
    if requested == "fp32":
        return FP32
    if device_type == "cpu":
        if requested == "auto":
            return FP32
        raise InputError(f"finetune precision {requested} requested on cpu: the policy is fp32 on CPU "
                         "(use auto or fp32)")
    if requested == "auto":
        return BF16 if bf16_supported else FP32
    if requested == "bf16":
        if not bf16_supported:
            raise InputError(f"finetune precision bf16 requested but {device_type} does not support bf16 "
                             "(use fp16 or fp32)")
        return BF16
    return FP16


def resolve_device(requested: str) -> tuple[str, bool]:
    """(`cpu` or `cuda`, whether it supports bf16) for a requested device; `cuda` without a GPU fails
    instead of silently falling back to the CPU."""
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise InputError("finetune device cuda requested but torch sees no GPU (this budget needs one; "
                         "the cpu budget runs without)")
    if requested not in ("auto", "cpu", "cuda"):
        raise InputError(f"finetune device {requested!r}: expected auto, cpu or cuda")
    device = "cuda" if requested == "cuda" or (requested == "auto" and has_cuda) else "cpu"
    return device, device == "cuda" and torch.cuda.is_bf16_supported()
