"""Invented scored essays for the fairness cross-check (numpy and pandas only, so that
`tools/rsmtool_reference.py` can build the same rows beside RSMTool): four groups of unequal size, one of them
scored too high, human scores on ELLIPSE's half-point grid."""

from __future__ import annotations

import numpy as np
import pandas as pd


def fairness_rows(seed: int = 7, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(np.array(["a", "b", "c", "d"]), size=n, p=[0.45, 0.3, 0.2, 0.05])
    human = np.clip(np.round(rng.normal(3.0, 0.7, n) * 2) / 2, 1.0, 5.0)
    continuous = np.clip(0.6 * human + 1.2 + rng.normal(0, 0.45, n) + 0.25 * (group == "c"), 1.0, 5.0)
    grid = np.clip(np.round(continuous * 2) / 2, 1.0, 5.0)
    return pd.DataFrame({"human": human, "continuous": continuous, "grid": grid, "group": group})
