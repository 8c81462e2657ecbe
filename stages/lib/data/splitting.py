"""Cross-validation splitters (scikit-learn splitter objects that can be tested alone), the scheme → splitter
mapping every fold comes from, and the checks that a corpus can fill the folds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator, StratifiedKFold

from stages.lib.core.errors import InputError
from stages.lib.core.params import Params
from stages.lib.core.paths import ESSAYS
from stages.lib.data.schema import DatasetSchema

SCHEMES = ("prompt_holdout", "stratified_text")


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


def scheme_splits(essays: pd.DataFrame, scheme: str, n_splits: int, seed: int, schema: DatasetSchema,
                  leave_one_prompt_out: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) row indices, fold by fold, of `scheme`: `prompt_holdout` holds out whole prompts
    (balanced, or one prompt per fold in sorted order with `leave_one_prompt_out`), `stratified_text` stratifies
    on the primary target's score bands on the common scale. The outer folds and the reference's inner folds
    both come from here."""
    if scheme == "prompt_holdout" and leave_one_prompt_out:
        prompts = essays["prompt"].to_numpy()
        rows = np.arange(len(essays))
        return ((rows[prompts != p], rows[prompts == p]) for p in sorted(set(prompts)))
    if scheme == "prompt_holdout":
        return BalancedGroupKFold(n_splits, random_state=seed).split(essays, groups=essays["prompt"].to_numpy())
    if scheme == "stratified_text":
        primary = schema.to_common(essays[schema.primary].to_numpy(float), essays["prompt"].to_numpy(),
                                   schema.primary)
        bands = score_bands(schema.grid.to_category(primary), n_splits)
        return stratified_splitter(n_splits, seed).split(np.zeros(len(essays)), bands)
    raise ValueError(f"unknown fold scheme {scheme!r}; expected one of {SCHEMES}")


def make_splits(essays: pd.DataFrame, scheme: str, n_splits: int, seed: int, schema: DatasetSchema,
                leave_one_prompt_out: bool = False) -> list[np.ndarray]:
    """Validation masks, one per fold, of `scheme` (`scheme_splits`); too few essays for the stratified folds
    fails in one line."""
    if scheme == "stratified_text" and len(essays) < n_splits:
        raise InputError(f"{ESSAYS}: {len(essays)} essays cannot fill {n_splits} stratified folds")
    masks = []
    for _, val in scheme_splits(essays, scheme, n_splits, seed, schema, leave_one_prompt_out):
        mask = np.zeros(len(essays), dtype=bool)
        mask[val] = True
        masks.append(mask)
    return masks


def check_prompts(essays: pd.DataFrame, n_splits: int, min_essays: int, source: Path,
                  leave_one_prompt_out: bool = False) -> None:
    """Stop on too few prompts to hold out (`n_splits`, or 2 when each fold holds out one prompt), or a prompt too
    small to stand as held-out evidence."""
    counts = essays["prompt"].value_counts()
    needed = 2 if leave_one_prompt_out else n_splits
    if len(counts) < needed:
        raise InputError(
            f"{source}: {len(counts)} prompts {sorted(counts.index)} cannot fill "
            f"{'two leave-one-prompt-out' if leave_one_prompt_out else n_splits} prompt-holdout folds"
        )
    small = counts[counts < min_essays]
    if not small.empty:
        prompt, n = small.index[0], int(small.iloc[0])
        raise InputError(
            f"{source}: prompt {prompt!r} has {n} essay(s), fewer than folds.min_essays_per_prompt={min_essays}; "
            "exclude it in prepare.exclude_prompts or lower the minimum"
        )


def check_selected_folds(params: Params, n_prompts: int) -> None:
    """With leave-one-prompt-out, `finetune.folds` must name folds that exist: one per prompt."""
    beyond = [k for k in params.finetune.folds if k >= n_prompts]
    if beyond:
        raise InputError(f"{params.source}: finetune.folds {params.finetune.folds}: fold(s) {beyond} do "
                         f"not exist: folds.leave_one_prompt_out makes {n_prompts} folds, one per prompt "
                         f"(0 … {n_prompts - 1})")


def check_targets_span_prompts(essays: pd.DataFrame, masks: list[np.ndarray], targets: list[str] | tuple[str, ...],
                               source: Path) -> None:
    """In every prompt-holdout fold each target must be scored by at least two training prompts: with one, the
    inner folds that hold that prompt out leave no out-of-prompt prediction to calibrate on, and nothing is learnt
    across prompts."""
    for fold, mask in enumerate(masks):
        train = essays[~mask]
        for target in targets:
            prompts = sorted(train.loc[train[target].notna(), "prompt"].unique())
            if len(prompts) < 2:
                only = f"only prompt {prompts[0]!r}" if prompts else "no prompt"
                raise InputError(
                    f"{source}: prompt_holdout fold {fold}: target {target!r} is scored by {only} among the training "
                    "prompts; a target needs two or more to be learnt and calibrated across prompts (score it on "
                    "more prompts, or drop it from dataset.targets)")
