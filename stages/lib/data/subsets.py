"""Seeded subsets of a training fold: the prompt-stratified held-out slice (leakage diagnostic and
calibration, never trained on) and the capped training sample of a reduced budget."""

from __future__ import annotations

import numpy as np


def stratified_holdout(groups: np.ndarray, fraction: float, seed: int, max_size: int | None = None) -> np.ndarray:
    """Boolean mask holding out about `fraction` of each group (randomised rounding keeps the expected
    share exact for small groups); `max_size` lowers the fraction so the slice has about that size."""
    groups = np.asarray(groups)
    if max_size is not None and len(groups):
        fraction = min(fraction, max_size / len(groups))
    rng = np.random.default_rng([seed, 1])
    mask = np.zeros(len(groups), dtype=bool)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        take = int(np.floor(len(members) * fraction + rng.random()))
        take = min(take, len(members) - 1)  # every group keeps at least one training essay
        if take > 0:
            mask[rng.choice(members, size=take, replace=False)] = True
    return mask


def capped_sample(candidates: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """The candidate indices, or a seeded sample of `cap` of them (sorted), when a cap is set."""
    candidates = np.asarray(candidates)
    if cap is None or cap >= len(candidates):
        return candidates
    rng = np.random.default_rng([seed, 2])
    return np.sort(rng.choice(candidates, size=cap, replace=False))
