"""How much prompt identity a representation carries: a linear probe's cross-validated accuracy on
held-out essays of the training prompts, next to chance and the majority-class rate."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def prompt_leakage(reps: np.ndarray, groups: np.ndarray, n_prompts: int, seed: int,
                   n_splits: int = 5) -> dict[str, Any]:
    """Probe accuracy (None below 2 essays per split), chance = 1 / n_prompts and the share of the most
    frequent prompt in the slice."""
    groups = np.asarray(groups)
    result: dict[str, Any] = {
        "n_essays": len(groups),
        "n_prompts": n_prompts,
        "chance": 1.0 / n_prompts if n_prompts else None,
        "majority_rate": float(np.bincount(groups).max() / len(groups)) if len(groups) else None,
        "probe_accuracy": None,
    }
    if len(groups) < 2 * n_splits or len(np.unique(groups)) < 2:
        return result
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = KFold(n_splits, shuffle=True, random_state=seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "more classes than half the samples" is expected here
            predicted = cross_val_predict(probe, np.asarray(reps, dtype=float), groups, cv=folds)
    except ValueError:  # a split whose training part holds a single prompt
        return result
    result["probe_accuracy"] = float(np.mean(predicted == groups))
    return result
