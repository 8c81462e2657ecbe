"""A fold's essays as a transformer run uses them: the trained-on rows, the held-out training slice and the
validation essays, encoded into windows; target standardisation (on the common scale) and calibration of the
predictions onto each prompt's grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.params import Budget
from stages.lib.data.schema import DatasetSchema
from stages.lib.data.subsets import capped_sample, stratified_holdout
from stages.lib.scoring.calibration import fit_calibrators, own_scales
from stages.lib.windows.chunking import coverage_report
from stages.lib.windows.essay_batches import EssayWindows, encode_essays


@dataclass(frozen=True)
class FoldEssays:
    """A fold's essays as the run uses them: trained-on rows, the held-out training slice, validation."""

    train: pd.DataFrame
    held: pd.DataFrame
    val: pd.DataFrame
    prompts: list[str]  # the training prompts; group id = position
    n_train_fold: int

    def groups(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["prompt"].map({p: i for i, p in enumerate(self.prompts)}).to_numpy()


def select_essays(train_df: pd.DataFrame, val_df: pd.DataFrame, budget: Budget, seed: int) -> FoldEssays:
    """Hold out a prompt-stratified training slice (never trained on, same for every arm), then cap the rest."""
    prompts = sorted(train_df["prompt"].unique())
    groups = train_df["prompt"].map({p: i for i, p in enumerate(prompts)}).to_numpy()
    held = stratified_holdout(groups, budget.holdout_fraction, seed, budget.max_holdout_essays)
    trained = capped_sample(np.flatnonzero(~held), budget.max_train_essays, seed)
    return FoldEssays(train_df.iloc[trained], train_df[held], val_df, prompts, len(train_df))


def encode(frame: pd.DataFrame, tokenizer, budget: Budget, targets: np.ndarray | None = None,
           groups: np.ndarray | None = None) -> EssayWindows:
    """The frame's essays as overlapping windows of the budget's length and stride."""
    return encode_essays(frame["text"].tolist(), tokenizer, budget.max_length, budget.stride, targets, groups)


def target_scale(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-target mean and standard deviation of the trained essays' common-scale scores, over the essays that
    have each target (a constant target keeps scale 1)."""
    if np.isnan(y).any():
        mean, std = np.nanmean(y, 0), np.nanstd(y, 0)
    else:
        mean, std = y.mean(0), y.std(0)
    return mean, np.where(std > 0, std, 1.0)


def calibrate(kind: str, schema: DatasetSchema, fit_pred: np.ndarray, fit_true: np.ndarray,
              pred: np.ndarray, prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Common-scale predictions (rows × targets) as continuous and on-grid scores on each essay's own scale;
    the calibrators (per target, on the common scale) are fitted on the held-out training slice only."""
    return own_scales(pred, fit_calibrators(kind, schema.grid, fit_pred, fit_true), prompts, schema)


def coverage_and_tokens(sets: dict[str, tuple[pd.DataFrame, EssayWindows]], content_window: int,
                        budget: Budget) -> tuple[dict[str, Any], pd.DataFrame]:
    """Truncation-coverage telemetry over every essay the run encoded (and per split), and the token table."""
    tokens = pd.concat([
        pd.DataFrame({"essay_id": frame["essay_id"].to_numpy(), "split": name, "n_tokens": data.token_counts})
        for name, (frame, data) in sets.items()
    ], ignore_index=True)
    coverage = {
        **coverage_report(tokens["n_tokens"].to_numpy(), content_window, budget.stride),
        "max_length": budget.max_length,
        "by_split": {name: coverage_report(data.token_counts, content_window, budget.stride)
                     for name, (_, data) in sets.items()},
    }
    return coverage, tokens
