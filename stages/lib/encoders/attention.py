"""Attention through PyTorch's scaled-dot-product kernels (SDPA: flash / memory-efficient / math) for every
backbone the runs use. Transformers already runs BERT-family encoders (MiniLM) with SDPA. MPNet has no SDPA path
in transformers 5: it adds a learned relative position bias to the attention scores, so its self-attention is
swapped for `SdpaMPNetSelfAttention`, which hands SDPA that bias plus the padding mask as one additive
`attn_mask`: the same computation (scores + bias + mask, softmax, dropout, values), without materialising the
probabilities of every layer for the backward pass. `SdpaMPNetEncoder` adds bias and mask once per forward,
in the compute dtype, so all layers share one tensor instead of each building (and saving) its own."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from stages.lib.core.errors import InputError


def _mpnet_classes() -> tuple[type[nn.Module], type[nn.Module]] | tuple[None, None]:
    try:
        from transformers.models.mpnet.modeling_mpnet import MPNetEncoder, MPNetSelfAttention
    except ImportError:  # pragma: no cover - transformers without MPNet
        return None, None
    return MPNetSelfAttention, MPNetEncoder


_MPNetSelfAttention, _MPNetEncoder = _mpnet_classes()


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean keep-mask as an additive float mask; float masks pass through."""
    if mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


if _MPNetSelfAttention is not None:

    class SdpaMPNetSelfAttention(_MPNetSelfAttention):
        """MPNet self-attention computed by `torch.nn.functional.scaled_dot_product_attention`; same weights,
        same inputs and outputs (attention probabilities, which SDPA never forms, fall back to the eager path).
        Under `SdpaMPNetEncoder` the position bias already holds the padding mask, in the compute dtype."""

        def forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs):
            if output_attentions:
                return super().forward(hidden_states, attention_mask, position_bias, output_attentions, **kwargs)
            shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
            q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.q, self.k, self.v))
            bias = position_bias if attention_mask is None else position_bias + _additive(attention_mask, q.dtype)
            dropout = self.dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
            context = context.transpose(1, 2).reshape(*hidden_states.shape[:-1], self.all_head_size)
            return (self.o(context),)


def _compute_dtype(reference: torch.Tensor) -> torch.dtype:
    """The dtype matrix products run in here: the autocast dtype when autocast is on, else the tensor's."""
    device = reference.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else reference.dtype


if _MPNetEncoder is not None:

    class SdpaMPNetEncoder(_MPNetEncoder):
        """MPNet's encoder with the relative position bias computed once per batch shape (not per window) and
        added to the padding mask once, in the compute dtype; every layer receives that one additive bias."""

        def forward(self, hidden_states, attention_mask=None, output_attentions=False, output_hidden_states=False,
                    return_dict=False, **kwargs):
            from transformers.modeling_outputs import BaseModelOutput

            bias = self.compute_position_bias(hidden_states[:1])  # (1, heads, L, L): the same for every window
            if attention_mask is not None:
                bias = bias + _additive(attention_mask, bias.dtype)
            dtype = _compute_dtype(hidden_states)
            bias = bias.clamp(min=torch.finfo(dtype).min).to(dtype)  # fp32's min would round to -inf in bf16
            all_hidden = (hidden_states,) if output_hidden_states else None
            all_attentions = () if output_attentions else None
            for layer in self.layer:
                outputs = layer(hidden_states, None, bias, output_attentions=output_attentions, **kwargs)
                hidden_states = outputs[0]
                if output_hidden_states:
                    all_hidden += (hidden_states,)
                if output_attentions:
                    all_attentions += (outputs[1],)
            if not return_dict:
                return tuple(v for v in (hidden_states, all_hidden, all_attentions) if v is not None)
            return BaseModelOutput(last_hidden_state=hidden_states, hidden_states=all_hidden,
                                   attentions=all_attentions)


def use_attention(encoder: nn.Module, kind: str) -> str:
    """Make `encoder` run attention as `kind` (`sdpa` or `eager`), in place, before any adapter wraps it.

    Returns what runs: `sdpa` (Transformers' own SDPA path), `sdpa:mpnet-bias` (the swapped MPNet
    attention) or `eager`. A backbone with no SDPA path fails naming it."""
    if kind == "eager":
        if encoder.config._attn_implementation != "eager":
            encoder.set_attn_implementation("eager")
        return "eager"
    if kind != "sdpa":
        raise InputError(f"attention {kind!r}: expected sdpa or eager")
    if encoder.config._attn_implementation == "sdpa":
        return "sdpa"
    swapped = 0
    if _MPNetSelfAttention is not None:
        for module in encoder.modules():
            if type(module) is _MPNetSelfAttention:
                module.__class__ = SdpaMPNetSelfAttention
                swapped += 1
            elif type(module) is _MPNetEncoder:
                module.__class__ = SdpaMPNetEncoder
    if swapped:
        return "sdpa:mpnet-bias"
    try:
        encoder.set_attn_implementation("sdpa")
    except (ValueError, ImportError) as exc:
        raise InputError(f"attention sdpa: {type(encoder).__name__} has no SDPA path ({exc}); "
                         "set speed.attention: eager") from exc
    return "sdpa"
