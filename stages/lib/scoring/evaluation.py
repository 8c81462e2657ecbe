"""Judge one predictions table: agreement, per-prompt and worst-prompt QWK, tails, SMD by subgroup,
and residual breakdowns. Pure functions over the predictions-table contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring import metrics as m


def _clip(values: np.ndarray, schema: DatasetSchema) -> np.ndarray:
    return np.clip(values, schema.grid.low, schema.grid.high)


def per_prompt_table(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Per prompt: n, fold, QWK, exact and adjacent agreement, mean residual (primary target)."""
    p = schema.primary
    rows = []
    for prompt, group in frame.groupby("prompt", sort=True):
        grid = schema.grid_for(prompt)
        t, g = group[f"true_{p}"].to_numpy(), group[f"grid_{p}"].to_numpy()
        rows.append({
            "prompt": prompt,
            "n": len(group),
            "fold": int(group["fold"].iloc[0]) if group["fold"].nunique() == 1 else -1,
            "qwk": m.qwk(t, g, grid),
            "exact": m.exact_agreement(t, g, grid),
            "adjacent": m.adjacent_agreement(t, g, grid),
            "mean_residual": float(np.mean(g - t)),
        })
    return pd.DataFrame(rows)


def smd_by_subgroup(frame: pd.DataFrame, schema: DatasetSchema) -> dict[str, dict[str, dict[str, float]]]:
    """SMD of the on-grid primary prediction within each level of each subgroup column."""
    p = schema.primary
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in schema.subgroups:
        levels = {}
        for level, group in frame.dropna(subset=[column]).groupby(column, sort=True):
            levels[str(level)] = {
                "n": len(group),
                "smd": m.smd(group[f"true_{p}"].to_numpy(), group[f"grid_{p}"].to_numpy()),
            }
        out[column] = levels
    return out


def fold_qwk(frame: pd.DataFrame, schema: DatasetSchema, target: str) -> list[float]:
    return [
        m.qwk(g[f"true_{target}"].to_numpy(), g[f"grid_{target}"].to_numpy(), schema.grid)
        for _, g in frame.groupby("fold", sort=True)
    ]


def summarise(frame: pd.DataFrame, schema: DatasetSchema, cfg: dict[str, Any]) -> dict[str, Any]:
    """The metrics file's body for one arm and scheme."""
    p, grid = schema.primary, schema.grid
    t, g = frame[f"true_{p}"].to_numpy(), frame[f"grid_{p}"].to_numpy()
    c = _clip(frame[f"pred_{p}"].to_numpy(), schema)
    per_fold = fold_qwk(frame, schema, p)
    by_trait = {}
    for target in schema.targets:
        folds = fold_qwk(frame, schema, target)
        by_trait[target] = {
            "mean": float(np.nanmean(folds)),
            "std": float(np.nanstd(folds, ddof=1)) if len(folds) > 1 else 0.0,
            "pooled": m.qwk(frame[f"true_{target}"].to_numpy(), frame[f"grid_{target}"].to_numpy(), grid),
        }
    prompts = per_prompt_table(frame, schema)
    worst, worst_names = m.worst_prompt_qwk(
        {r.prompt: (r.n, r.qwk) for r in prompts.itertuples()}, int(cfg["min_prompt_n"]), int(cfg["bottom_k"])
    )
    eligible = prompts[prompts["n"] >= int(cfg["min_prompt_n"])]
    traits = list(schema.traits)
    return {
        "n_essays": len(frame),
        "n_folds": int(frame["fold"].nunique()),
        "qwk": {
            "mean": float(np.nanmean(per_fold)),
            "std": float(np.nanstd(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0,
            "pooled": m.qwk(t, g, grid),
            "per_fold": per_fold,
        },
        "qwk_by_trait": by_trait,
        "mcrmse": m.mcrmse(frame[[f"true_{x}" for x in traits]].to_numpy(),
                           _clip(frame[[f"pred_{x}" for x in traits]].to_numpy(), schema)),
        "agreement": {
            "exact": m.exact_agreement(t, g, grid),
            "adjacent": m.adjacent_agreement(t, g, grid),
            "mae": m.mae(t, g),
            "rmse": m.rmse(t, g),
            "rmse_continuous": m.rmse(t, c),
            "pearson_r": m.pearson_r(t, c),
        },
        "worst_prompt_qwk": worst,
        "worst_prompts": worst_names,
        "prompts_eligible": len(eligible),
        "min_prompt_n": int(cfg["min_prompt_n"]),
        "bottom_k": int(cfg["bottom_k"]),
        "per_prompt_qwk": {r.prompt: r.qwk for r in eligible.itertuples()},
        "tails": m.tail_adjacent(t, g, grid, float(cfg["low_tail"]), float(cfg["high_tail"])),
        "smd": {"overall": m.smd(t, g), "by_subgroup": smd_by_subgroup(frame, schema)},
    }


def residual_rows(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Per-essay residual rows (primary target): on-grid and continuous residuals with context."""
    p = schema.primary
    rows = frame[["essay_id", "fold", "prompt", "n_words", *schema.subgroups]].copy()
    rows["true"] = frame[f"true_{p}"]
    rows["pred_continuous"] = frame[f"pred_{p}"]
    rows["pred_grid"] = frame[f"grid_{p}"]
    rows["residual"] = rows["pred_grid"] - rows["true"]
    rows["residual_continuous"] = _clip(rows["pred_continuous"].to_numpy(), schema) - rows["true"]
    rows["length_band"] = pd.qcut(rows["n_words"], 4, duplicates="drop").astype(str)
    rows["score_band"] = rows["true"].map(lambda v: f"{v:.1f}")
    return rows


def residual_breakdown(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """n, mean residual, MAE and continuous RMSE per level of `by`."""
    grouped = rows.groupby(by, sort=True, observed=True)
    table = pd.DataFrame({
        "n": grouped.size(),
        "mean_residual": grouped["residual"].mean(),
        "mae": grouped["residual"].apply(lambda r: r.abs().mean()),
        "rmse_continuous": grouped["residual_continuous"].apply(lambda r: float(np.sqrt((r**2).mean()))),
    }).reset_index()
    numeric = pd.to_numeric(table[by], errors="coerce")
    return table.iloc[numeric.argsort(kind="stable")] if numeric.notna().all() else table
