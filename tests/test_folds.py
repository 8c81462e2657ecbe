"""Fold integrity: prompt holdout never leaks a prompt, folds partition the essays, seeds matter."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import InputError
from stages.lib.data.splitting import (
    BalancedGroupKFold,
    check_prompts,
    check_selected_folds,
    check_targets_span_prompts,
    make_splits,
    score_bands,
)
from tests.typed_params import edited


def essays_table(n_prompts: int = 23, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 120, n_prompts)
    prompts = np.repeat([f"p{i}" for i in range(n_prompts)], sizes)
    return pd.DataFrame({
        "essay_id": [f"e{i}" for i in range(len(prompts))],
        "prompt": prompts,
        "Overall": rng.integers(2, 11, len(prompts)) / 2,
    })


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prompt_holdout_never_shares_a_prompt(schema, seed):
    essays = essays_table(seed=seed)
    masks = make_splits(essays, "prompt_holdout", 5, seed, schema)
    assert np.array_equal(np.sum(masks, axis=0), np.ones(len(essays)))  # every essay validated exactly once
    for mask in masks:
        assert not set(essays.loc[mask, "prompt"]) & set(essays.loc[~mask, "prompt"])


def test_prompt_holdout_balances_essay_counts():
    essays = essays_table(n_prompts=40, seed=3)
    sizes = [m.sum() for m in (t for t in BalancedGroupKFold(5, 7)._iter_test_masks(groups=essays["prompt"]))]
    largest_prompt = essays["prompt"].value_counts().max()
    assert max(sizes) - min(sizes) <= largest_prompt


def test_seed_changes_prompt_assignment_but_is_reproducible():
    essays = pd.DataFrame({"prompt": np.repeat([f"p{i}" for i in range(20)], 10)})
    first = [tuple(m) for m in BalancedGroupKFold(5, 1)._iter_test_masks(groups=essays["prompt"])]
    again = [tuple(m) for m in BalancedGroupKFold(5, 1)._iter_test_masks(groups=essays["prompt"])]
    other = [tuple(m) for m in BalancedGroupKFold(5, 2)._iter_test_masks(groups=essays["prompt"])]
    assert first == again
    assert first != other


def test_stratified_folds_partition_and_keep_score_mix(schema):
    essays = essays_table(seed=4)
    masks = make_splits(essays, "stratified_text", 5, 11, schema)
    assert np.array_equal(np.sum(masks, axis=0), np.ones(len(essays)))
    overall = essays["Overall"].mean()
    assert all(abs(essays.loc[m, "Overall"].mean() - overall) < 0.25 for m in masks)


def test_score_bands_merge_sparse_extremes():
    bands = score_bands(np.array([0] + [3] * 10 + [4] * 10 + [8]), min_count=5)
    assert set(bands) == {3, 4}


def test_too_few_prompts_and_tiny_prompts_are_named():
    essays = pd.DataFrame({"prompt": ["a", "a", "b", "b", "c"]})
    with pytest.raises(InputError, match="3 prompts"):
        check_prompts(essays, 5, 1, "essays.parquet")
    with pytest.raises(InputError, match="prompt 'c' has 1 essay"):
        check_prompts(essays, 2, 2, "essays.parquet")


def test_leave_one_prompt_out_needs_two_prompts_whatever_n_splits(schema):
    essays = essays_table(n_prompts=4)
    check_prompts(essays, 5, 1, "essays.parquet", leave_one_prompt_out=True)  # 4 prompts, n_splits 5: fine
    masks = make_splits(essays, "prompt_holdout", 5, 0, schema, leave_one_prompt_out=True)
    assert [sorted(set(essays.loc[m, "prompt"])) for m in masks] == [["p0"], ["p1"], ["p2"], ["p3"]]
    with pytest.raises(InputError, match=r"1 prompts .* cannot fill two leave-one-prompt-out prompt-holdout folds"):
        check_prompts(essays[essays["prompt"] == "p0"], 5, 1, "essays.parquet", leave_one_prompt_out=True)


def test_inner_folds_are_the_outer_mapping(schema):
    """The reference's inner folds come from the same scheme mapping as the outer folds."""
    from stages.lib.reference.model import inner_splits

    essays = essays_table(seed=3)
    for scheme in ("prompt_holdout", "stratified_text"):
        inner = [np.sort(val) for _, val in inner_splits(essays, scheme, 4, 7, schema)]
        outer = [np.flatnonzero(m) for m in make_splits(essays, scheme, 4, 7, schema)]
        assert len(inner) == 4 and all(np.array_equal(a, b) for a, b in zip(inner, outer, strict=True))


def test_leave_one_prompt_out_holds_out_each_prompt_once_in_sorted_order(schema):
    essays = essays_table(n_prompts=7, seed=4)
    masks = make_splits(essays, "prompt_holdout", 5, 0, schema, leave_one_prompt_out=True)
    assert [sorted(set(essays.loc[m, "prompt"])) for m in masks] == [[p] for p in sorted(set(essays["prompt"]))]
    assert np.array_equal(np.sum(masks, axis=0), np.ones(len(essays)))


def _leave_one_prompt_out(params, folds: list[int]):
    """`params` with leave-one-prompt-out folds and `finetune.folds` set to `folds` (the schema bounds them by the
    number of prompts only once the folds stage counts them)."""
    return edited(params, lambda raw: (raw["folds"].update(leave_one_prompt_out=True),
                                       raw["finetune"].update(folds=folds)))


def test_leave_one_prompt_out_names_finetune_folds_beyond_the_prompts(params):
    selected = _leave_one_prompt_out(params, [0, 6, 7])
    with pytest.raises(InputError, match=rf"^{re.escape(params.source)}: finetune\.folds \[0, 6, 7\]: fold\(s\) "
                                         r"\[6, 7\] do not exist: folds.leave_one_prompt_out makes 6 folds"):
        check_selected_folds(selected, 6)
    check_selected_folds(_leave_one_prompt_out(params, [0, 5]), 6)


def test_a_target_scored_by_one_training_prompt_is_refused_before_training(schema):
    essays = essays_table(n_prompts=4)
    essays["Cohesion"] = np.where(essays["prompt"].isin(["p0", "p1"]), 3.0, np.nan)
    masks = make_splits(essays, "prompt_holdout", 4, 0, schema, leave_one_prompt_out=True)
    with pytest.raises(InputError, match=r"^essays\.parquet: prompt_holdout fold 0: target 'Cohesion' is scored by "
                                         r"only prompt 'p1' among the training prompts"):
        check_targets_span_prompts(essays, masks, ["Overall", "Cohesion"], "essays.parquet")
    check_targets_span_prompts(essays, masks[2:], ["Overall", "Cohesion"], "essays.parquet")  # p0 and p1 train
