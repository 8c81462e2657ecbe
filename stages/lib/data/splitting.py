"""Cross-validation splitters, as scikit-learn splitter objects that can be tested alone."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import BaseCrossValidator, StratifiedKFold


class BalancedGroupKFold(BaseCrossValidator):
    """Every group in exactly one test fold; essay counts balanced GroupKFold-style (largest group
    to the lightest fold), with ties between equal-sized groups broken by a seeded permutation."""

    def __init__(self, n_splits: int = 5, random_state: int | None = None):
        self.n_splits = n_splits
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def _iter_test_masks(self, X=None, y=None, groups=None):
        groups = np.asarray(groups)
        names, inverse = np.unique(groups, return_inverse=True)
        if self.n_splits > len(names):
            raise ValueError(f"cannot hold out {self.n_splits} folds of groups: only {len(names)} groups")
        rng = np.random.default_rng(self.random_state)
        sizes = np.bincount(inverse)
        order = rng.permutation(len(names))
        order = order[np.argsort(-sizes[order], kind="stable")]
        load = np.zeros(self.n_splits)
        fold_of = np.empty(len(names), dtype=int)
        for g in order:
            fold_of[g] = int(np.argmin(load))
            load[fold_of[g]] += sizes[g]
        for fold in range(self.n_splits):
            yield fold_of[inverse] == fold


def score_bands(categories: np.ndarray, min_count: int) -> np.ndarray:
    """Integer score categories with sparse extremes merged inward until every band has at least
    `min_count` members (so a stratified splitter can place each band in every fold)."""
    bands = np.asarray(categories, dtype=int).copy()
    while True:
        values, counts = np.unique(bands, return_counts=True)
        if len(values) <= 1 or counts.min() >= min_count:
            return bands
        centre = np.average(values, weights=counts)
        sparse = values[np.argmin(counts)]
        neighbours = values[values != sparse]
        target = neighbours[np.argmin(np.abs(neighbours - sparse) + 1e-6 * np.abs(neighbours - centre))]
        bands[bands == sparse] = target


def stratified_splitter(n_splits: int, seed: int) -> StratifiedKFold:
    """Shuffled, seeded stratified K-fold (stratify on `score_bands`)."""
    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
