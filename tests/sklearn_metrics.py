"""The gate's and evaluate's metrics recomputed without the code under test: scikit-learn's quadratic-weighted
kappa on the half-point 1–5 grid, pandas for grouping. For checking point estimates on invented tables whose
prompts all share that grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

LABELS = list(range(9))  # 1.0, 1.5, …, 5.0: every grid category, present or not (sklearn drops absent ones)


def category(scores) -> np.ndarray:
    return np.rint((np.asarray(scores, float) - 1.0) / 0.5).astype(int)


def qwk(true, grid) -> float:
    return float(cohen_kappa_score(category(true), category(grid), weights="quadratic", labels=LABELS))


def fold_qwk(frame: pd.DataFrame, target: str = "Overall") -> list[float]:
    """QWK of each fold (in fold order) over its essays."""
    return [qwk(g[f"true_{target}"], g[f"grid_{target}"]) for _, g in frame.groupby("fold", sort=True)]


def mean_qwk(frame: pd.DataFrame, target: str = "Overall") -> float:
    return float(np.mean(fold_qwk(frame, target)))


def prompt_qwk(frame: pd.DataFrame, min_n: int, target: str = "Overall") -> dict[str, float]:
    """QWK of each prompt with at least `min_n` essays."""
    return {p: qwk(g[f"true_{target}"], g[f"grid_{target}"]) for p, g in frame.groupby("prompt") if len(g) >= min_n}


def worst_prompt_qwk(frame: pd.DataFrame, min_n: int, bottom_k: int, target: str = "Overall") -> float:
    """Mean of the `bottom_k` lowest QWKs among prompts with at least `min_n` essays."""
    return float(np.mean(sorted(prompt_qwk(frame, min_n, target).values())[:bottom_k]))


def tail_adjacent(frame: pd.DataFrame, low: float, high: float, target: str = "Overall") -> tuple[float, float]:
    """Share of essays within half a point of their human score, among those scored ≤ `low` and ≥ `high`."""
    true, grid = frame[f"true_{target}"].to_numpy(float), frame[f"grid_{target}"].to_numpy(float)
    near = np.abs(true - grid) <= 0.5 + 1e-9
    return float(near[true <= low].mean()), float(near[true >= high].mean())


def gate_metrics(frame: pd.DataFrame, cfg) -> dict[str, float]:
    """The four gate metrics of one predictions table (`cfg`: min_prompt_n, bottom_k, low_tail, high_tail)."""
    low, high = tail_adjacent(frame, cfg.low_tail, cfg.high_tail)
    return {"mean_qwk": mean_qwk(frame), "worst_prompt_qwk": worst_prompt_qwk(frame, cfg.min_prompt_n, cfg.bottom_k),
            "low_tail_adjacent": low, "high_tail_adjacent": high}
