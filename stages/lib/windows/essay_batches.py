"""Whole essays as training/inference units: each essay's overlapping windows travel together in one
batch; batches group essays of similar length (length bucketing) and pad only to the batch's longest
window (dynamic padding)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from stages.lib.windows.encoding import WindowedEssays, pad_batch, window_essays


@dataclass(frozen=True, eq=False)
class EssayWindows(torch.utils.data.Dataset):
    """Essays cut into windows, with (standardised) targets and integer group (prompt) ids."""

    windowed: WindowedEssays
    starts: np.ndarray  # essay i owns windows starts[i]:starts[i + 1]
    targets: np.ndarray  # (n essays, n targets) float32; zeros where unknown
    groups: np.ndarray  # (n essays,) int64; -1 where unknown
    target_mask: np.ndarray | None = None  # (n essays, n targets) float32, 0 where a prompt lacks the target

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i: int) -> int:
        return i

    @property
    def token_counts(self) -> np.ndarray:
        """Content tokens per essay before chunking."""
        return self.windowed.content_tokens


def encode_essays(texts: list[str], tokenizer, max_length: int, stride: int,
                  targets: np.ndarray | None = None, groups: np.ndarray | None = None) -> EssayWindows:
    """Tokenise without truncation and window every essay (`stages.lib.windows.encoding.window_essays`)."""
    if texts:
        windowed = window_essays(texts, tokenizer, max_length, stride)
    else:  # e.g. no held-out slice (holdout_fraction 0)
        windowed = WindowedEssays([], np.zeros(0, np.int64), np.zeros(0, np.int64))
    starts = np.concatenate([[0], np.cumsum(np.bincount(windowed.owner.astype(np.int64), minlength=len(texts)))])
    n = len(texts)
    targets = np.zeros((n, 0), np.float32) if targets is None else np.asarray(targets, np.float32)
    mask = None
    if np.isnan(targets).any():  # targets some prompts do not score: masked out of the loss
        mask = np.isfinite(targets).astype(np.float32)
        targets = np.nan_to_num(targets, nan=0.0)
    return EssayWindows(
        windowed=windowed,
        starts=starts,
        targets=targets,
        groups=np.full(n, -1, np.int64) if groups is None else np.asarray(groups, np.int64),
        target_mask=mask,
    )


class EssayCollator:
    """Turn a list of essay indices into padded window tensors plus essay-level labels."""

    def __init__(self, data: EssayWindows, pad_id: int):
        self.data = data
        self.pad_id = pad_id

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        windows, owner = [], []
        for position, i in enumerate(indices):
            lo, hi = self.data.starts[i], self.data.starts[i + 1]
            windows.extend(self.data.windowed.windows[lo:hi])
            owner.extend([position] * (hi - lo))
        input_ids, attention_mask = pad_batch(windows, self.pad_id)
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        mask = self.data.target_mask
        masked = {} if mask is None else {"target_mask": torch.from_numpy(mask[indices])}
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "owner": torch.as_tensor(owner, dtype=torch.long),
            "targets": torch.from_numpy(self.data.targets[indices]),
            "groups": torch.from_numpy(self.data.groups[indices]),
            "index": index,
            **masked,
        }


class LengthBucketedBatches:
    """Batches of `batch_size` essays of similar length, reshuffled on every pass (pass `k` uses the
    seed `[seed, k]`). With `weights`, each pass draws as many essays as there are, with replacement,
    in proportion to the weights (e.g. prompt-balanced sampling). `shuffle=False` gives length-sorted
    batches for inference."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, weights: np.ndarray | None = None,
                 shuffle: bool = True, bucket_batches: int = 16):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.weights = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
        self.shuffle = shuffle
        self.bucket = batch_size * bucket_batches
        self.passes = 0

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            yield from (order[i:i + self.batch_size].tolist() for i in range(0, n, self.batch_size))
            return
        rng = np.random.default_rng([self.seed, self.passes])
        self.passes += 1
        order = rng.permutation(n) if self.weights is None else rng.choice(n, size=n, replace=True, p=self.weights)
        batches = []
        for lo in range(0, n, self.bucket):
            chunk = order[lo:lo + self.bucket]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        for b in rng.permutation(len(batches)):
            yield batches[b]


def balanced_weights(groups: np.ndarray) -> np.ndarray:
    """Per-essay sampling weights giving every group the same expected share."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]
