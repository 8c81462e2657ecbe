"""The fairness analyses of Loukina, Madnani & Zechner (2019), as RSMTool 12 computes them
(`rsmtool.fairness_utils.get_fairness_analyses`): how much of the variance in the scoring error a subgroup
variable explains, by ordinary least squares with treatment-coded groups.

- overall score accuracy (OSA): squared error ~ group
- overall score difference (OSD): error ~ group
- conditional score difference (CSD): error ~ group + human score (as a category), against error ~ human score

Each gives the adjusted R² (for CSD, the full model's minus the null model's) and the p value of the F test (for CSD,
of the nested comparison). Groups are ordered by size, ties alphabetically; the largest is the base category, as
in RSMTool. statsmodels, which RSMTool uses, is not a dependency: three least-squares fits do not need it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ANALYSES = ("osa", "osd", "csd")


def ordered_levels(values: pd.Series) -> list[Any]:
    """The levels by size (descending), ties in ascending order: RSMTool's base category comes first."""
    counts = values.value_counts()
    return sorted(counts.index, key=lambda level: (-int(counts[level]), level))


def _dummies(values: pd.Series) -> np.ndarray:
    """Treatment coding: one column per level except the first of `ordered_levels`."""
    levels = ordered_levels(values)
    return np.column_stack([(values == level).to_numpy(float) for level in levels[1:]]) if len(levels) > 1 \
        else np.zeros((len(values), 0))


class _Fit:
    """OLS with an intercept (rank-aware, like statsmodels' pinv fit): residual sum of squares, its degrees of
    freedom, adjusted R² and the overall F test's p value."""

    def __init__(self, y: np.ndarray, regressors: np.ndarray):
        design = np.column_stack([np.ones(len(y)), regressors])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        self.rank = int(np.linalg.matrix_rank(design))
        self.ssr = float(np.sum((y - design @ coef) ** 2))
        self.tss = float(np.sum((y - y.mean()) ** 2))
        self.n = len(y)
        self.df_resid = self.n - self.rank
        self.df_model = self.rank - 1

    @property
    def r2_adj(self) -> float:
        if self.tss == 0 or self.df_resid <= 0:
            return float("nan")
        return 1 - (self.n - 1) / self.df_resid * (self.ssr / self.tss)

    @property
    def f_pvalue(self) -> float:
        if self.df_model == 0 or self.df_resid <= 0 or self.ssr == 0:
            return float("nan")
        f = ((self.tss - self.ssr) / self.df_model) / (self.ssr / self.df_resid)
        return float(stats.f.sf(f, self.df_model, self.df_resid))


def _nested_pvalue(null: _Fit, full: _Fit) -> float:
    """p value of the F test that `full` explains more than `null` (statsmodels' `anova_lm(null, full)`)."""
    df_diff = null.df_resid - full.df_resid
    if df_diff <= 0 or full.df_resid <= 0 or full.ssr == 0:
        return float("nan")
    f = ((null.ssr - full.ssr) / df_diff) / (full.ssr / full.df_resid)
    return float(stats.f.sf(f, df_diff, full.df_resid))


def fairness_analyses(human: np.ndarray, system: np.ndarray, group: pd.Series) -> dict[str, Any]:
    """OSA, OSD and CSD of `system` against `human` scores for the subgroup variable `group` (one value per essay;
    every value is a level): `{"base_group", "n_groups", "osa": {"r2_adj", "p"}, "osd": …, "csd": …}`."""
    human, system = np.asarray(human, float), np.asarray(system, float)
    group = pd.Series(np.asarray(group, dtype=object)).astype(str)
    error = system - human
    groups = _dummies(group)
    human_levels = _dummies(pd.Series(human))
    osa, osd = _Fit(error**2, groups), _Fit(error, groups)
    null, full = _Fit(error, human_levels), _Fit(error, np.column_stack([groups, human_levels]))
    return {
        "base_group": str(ordered_levels(group)[0]) if len(group) else None,
        "n_groups": int(group.nunique()),
        "osa": {"r2_adj": osa.r2_adj, "p": osa.f_pvalue},
        "osd": {"r2_adj": osd.r2_adj, "p": osd.f_pvalue},
        "csd": {"r2_adj": full.r2_adj - null.r2_adj, "p": _nested_pvalue(null, full)},
    }
