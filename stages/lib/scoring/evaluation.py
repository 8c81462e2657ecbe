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


def descriptives(rows: pd.DataFrame) -> pd.DataFrame:
    """RSMTool's descriptives: N, mean and SD (ddof=1) of the human scores and of the on-grid and continuous
    predictions, over the residual rows."""
    return pd.DataFrame([{
        "n": len(rows),
        "human_mean": float(rows["true"].mean()), "human_sd": float(rows["true"].std(ddof=1)),
        "system_mean": float(rows["pred_grid"].mean()), "system_sd": float(rows["pred_grid"].std(ddof=1)),
        "continuous_mean": float(rows["pred_continuous"].mean()),
        "continuous_sd": float(rows["pred_continuous"].std(ddof=1)),
    }])


def score_distribution(rows: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Essays per point of the score grid: human scores and on-grid predictions, with the human share."""
    points = pd.Index(schema.grid.points().round(1), name="score")
    human = rows["true"].round(1).value_counts().reindex(points, fill_value=0)
    system = rows["pred_grid"].round(1).value_counts().reindex(points, fill_value=0)
    table = pd.DataFrame({"human": human.astype(int), "system": system.astype(int)}).reset_index()
    table["human_share"] = table["human"] / max(int(table["human"].sum()), 1)
    return table


def subgroup_dsm(rows: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Per level of every subgroup column: N, SMD within the level and RSMTool's DSM against the whole
    evaluation set (on-grid predictions). Essays without a value form one extra level, `recorded` False."""
    out = []
    for column in schema.subgroups:
        if column not in rows.columns:
            continue
        present = rows[column].notna()
        groups = [(str(level), group, True) for level, group in rows[present].groupby(
            rows.loc[present, column].astype(str), sort=True)]
        if (~present).any():
            groups.append(("missing", rows[~present], False))
        for level, group, recorded in groups:
            out.append({"subgroup": column, "level": level, "recorded": recorded, "n": len(group),
                        "human_mean": float(group["true"].mean()), "system_mean": float(group["pred_grid"].mean()),
                        "smd": m.smd(group["true"].to_numpy(), group["pred_grid"].to_numpy()),
                        "dsm": m.dsm(group["true"], group["pred_grid"], rows["true"], rows["pred_grid"])})
    columns = ["subgroup", "level", "recorded", "n", "human_mean", "system_mean", "smd", "dsm"]
    return pd.DataFrame(out, columns=columns)


def residual_by_subgroup(rows: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """`residual_breakdown` by every level of every subgroup column, stacked (columns subgroup, level, …)."""
    tables = [residual_breakdown(rows.assign(level=rows[c].astype("string")).dropna(subset=["level"]), "level")
              .assign(subgroup=c) for c in schema.subgroups if c in rows.columns]
    columns = ["subgroup", "level", "n", "mean_residual", "mae", "rmse_continuous"]
    return pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(columns=columns)


def confusion_matrix(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Actual (rows) × on-grid predicted (columns) counts of the primary target on the full grid."""
    p = schema.primary
    labels = [f"{v:.1f}" for v in schema.grid.points()]
    table = pd.crosstab(frame[f"true_{p}"].map("{:.1f}".format), frame[f"grid_{p}"].map("{:.1f}".format))
    table = table.reindex(index=labels, columns=labels, fill_value=0)
    table.index.name, table.columns.name = "actual", None
    return table.reset_index()


def evaluation_tables(frame: pd.DataFrame, rows: pd.DataFrame, prompts: pd.DataFrame,
                      schema: DatasetSchema) -> dict[str, pd.DataFrame]:
    """Every named table `evaluate` writes (keys: `stages.lib.core.paths.ARM_TABLES`)."""
    return {
        "descriptives": descriptives(rows),
        "score_distribution": score_distribution(rows, schema),
        "subgroup_dsm": subgroup_dsm(rows, schema),
        "residual_by_band": residual_breakdown(rows, "score_band"),
        "residual_by_length": residual_breakdown(rows, "length_band"),
        "residual_by_fold": residual_breakdown(rows, "fold"),
        "residual_by_subgroup": residual_by_subgroup(rows, schema),
        "residual_by_prompt": prompts.sort_values("qwk", kind="stable"),
        "confusion_matrix": confusion_matrix(frame, schema),
    }
