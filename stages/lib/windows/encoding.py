"""Tokenise essays into overlapping windows and mean-pool encoder states into one vector per essay."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from stages.lib.windows.chunking import chunk_token_ids


@dataclass(frozen=True)
class WindowedEssays:
    """All windows of all essays: `windows[i]` belongs to essay `owner[i]`."""

    windows: list[list[int]]
    owner: np.ndarray
    content_tokens: np.ndarray  # per essay, before chunking (special tokens excluded)


def window_essays(texts: list[str], tokenizer, max_length: int, stride: int) -> WindowedEssays:
    """Tokenise without truncation and cut each essay into windows of at most `max_length` tokens
    (special tokens included), overlapping by `stride` content tokens."""
    content_window = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    encoded = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    windows: list[list[int]] = []
    owner: list[int] = []
    for i, ids in enumerate(encoded):
        for window in chunk_token_ids(ids, content_window, stride, tokenizer.cls_token_id, tokenizer.sep_token_id):
            windows.append(window)
            owner.append(i)
    return WindowedEssays(windows, np.asarray(owner), np.asarray([len(ids) for ids in encoded]))


def length_batches(lengths: np.ndarray, batch_tokens: int) -> Iterator[np.ndarray]:
    """Indices grouped by similar length so each padded batch holds at most ~`batch_tokens` tokens."""
    order = np.argsort(lengths, kind="stable")
    batch: list[int] = []
    for idx in order:
        if batch and (len(batch) + 1) * lengths[idx] > batch_tokens:
            yield np.asarray(batch)
            batch = []
        batch.append(int(idx))
    if batch:
        yield np.asarray(batch)


def pad_batch(windows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic padding to the longest window in the batch."""
    width = max(len(w) for w in windows)
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(windows), width), dtype=torch.long)
    for row, window in enumerate(windows):
        ids[row, : len(window)] = torch.tensor(window)
        mask[row, : len(window)] = 1
    return ids, mask


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states over the attention mask, one vector per window."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def pool_windows(
    window_vectors: torch.Tensor, owner: torch.Tensor, window_tokens: torch.Tensor, n_essays: int
) -> torch.Tensor:
    """Essay vectors: the token-count-weighted mean of each essay's window vectors."""
    weights = window_tokens.to(window_vectors.dtype).unsqueeze(-1)
    sums = torch.zeros((n_essays, window_vectors.shape[1]), dtype=window_vectors.dtype, device=window_vectors.device)
    sums.index_add_(0, owner, window_vectors * weights)
    totals = torch.zeros((n_essays, 1), dtype=window_vectors.dtype, device=window_vectors.device)
    totals.index_add_(0, owner, weights)
    return sums / totals
