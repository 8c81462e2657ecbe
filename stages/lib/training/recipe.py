"""The one transformer training recipe: a cross-validation fold (`finetune`), the final model
(`train_final_transformer`) and the throughput benchmark all train an arm through it. Targets are learned on the
common scale, standardised by the trained essays' mean and SD; the held-out training slice is encoded for
calibration; the model, objective and accelerator come from the runtime in its fixed order; the head starts as a
ridge probe on the frozen representations when the budget says so (LP-FT), then the whole model trains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.params import Budget
from stages.lib.data.schema import DatasetSchema
from stages.lib.training.essay_model import EssayRegressor, fit_head
from stages.lib.training.fold_essays import FoldEssays, encode, target_scale
from stages.lib.training.objectives import Objective, make_objective
from stages.lib.training.runtime import Runtime
from stages.lib.training.trainer import EssayOutput, predict, train
from stages.lib.windows.essay_batches import EssayWindows


@dataclass(frozen=True)
class TargetScale:
    """Per-target mean and SD of the trained essays' common-scale scores: what the model learns is
    `(y - mean) / std`, what it predicts is mapped back by `restore`."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, schema: DatasetSchema, frame: pd.DataFrame) -> tuple[TargetScale, np.ndarray]:
        """The scale of `frame`'s targets (on the common scale) and those targets standardised by it."""
        y = schema.common_targets(frame)
        mean, std = target_scale(y)
        return cls(mean, std), (y - mean) / std

    def standardise(self, schema: DatasetSchema, frame: pd.DataFrame) -> np.ndarray:
        """`frame`'s targets on the common scale, standardised by this scale."""
        return (schema.common_targets(frame) - self.mean) / self.std

    def restore(self, standardised: np.ndarray) -> np.ndarray:
        return standardised * self.std + self.mean


@dataclass
class FittedArm:
    """A trained arm with what its callers score, calibrate and log with."""

    model: EssayRegressor
    objective: Objective
    accelerator: Any
    scale: TargetScale
    train_set: EssayWindows
    held_set: EssayWindows
    head_alpha: float | None
    training: dict[str, Any]
    checked: dict[str, int] = field(default_factory=dict)  # predictions checked for NaN/inf, every inference call
    infer: Callable[[EssayWindows], EssayOutput] | None = None

    def common_scale(self, out: EssayOutput) -> np.ndarray:
        """An inference's predictions on the common scale (rows × targets)."""
        return self.scale.restore(out.pred.numpy())


def fit_arm(arm: str, runtime: Runtime, essays: FoldEssays, schema: DatasetSchema, objective_settings: dict[str, Any],
            seed: int, fold: int) -> FittedArm:
    """Train `arm` on `essays.train` with the runtime's budget (see the module docstring); `fold` names the run
    in logs and errors (-1 for a final model)."""
    budget: Budget = runtime.budget
    tokenizer = runtime.tokenizer
    scale, y_train = TargetScale.of(schema, essays.train)
    train_set = encode(essays.train, tokenizer, budget, y_train, essays.groups(essays.train))
    held_set = encode(essays.held, tokenizer, budget, groups=essays.groups(essays.held))
    model, objective, accelerator = runtime.build(
        len(schema.targets), lambda m: make_objective(arm, m.hidden_size, essays.prompts, objective_settings))
    checked: dict[str, int] = {}
    infer = partial(predict, model, accelerator=accelerator, pad_id=tokenizer.pad_token_id,
                    batch_size=budget.eval_batch_size, fold=fold, checked=checked)
    head_alpha = None
    if budget.head_init == "ridge":
        head_alpha = fit_head(model, infer(train_set).rep.numpy(), train_set.targets, train_set.target_mask)
    training = train(model, objective, train_set, budget, accelerator, pad_id=tokenizer.pad_token_id, seed=seed,
                     fold=fold)
    return FittedArm(model, objective, accelerator, scale, train_set, held_set, head_alpha, training, checked, infer)
