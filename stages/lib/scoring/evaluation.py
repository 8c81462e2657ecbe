"""Judge one predictions table: agreement, per-prompt and worst-prompt QWK, tails, SMD by subgroup,
and residual breakdowns. Pure functions over the predictions-table contract.

Mixed score scales: QWK and agreement are computed on each prompt's own grid; a set of essays is pooled into
one QWK only where its prompts share a grid; residuals, RMSE, SMD and tail membership use the common scale
(`DatasetSchema.to_common`). On a single-scale corpus every one of these is the plain definition."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.params import Evaluate
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring import metrics as m
from stages.lib.scoring import qwk as qk
from stages.lib.scoring.fairness import fairness_analyses


def common(frame: pd.DataFrame, schema: DatasetSchema, kind: str, target: str) -> np.ndarray:
    """Column `<kind>_<target>` (true, pred or grid) mapped onto the common scale (the identity on the global grid)."""
    return schema.to_common(frame[f"{kind}_{target}"].to_numpy(float), frame["prompt"].to_numpy(), target)


def _clip(values: np.ndarray, schema: DatasetSchema) -> np.ndarray:
    return np.clip(values, schema.grid.low, schema.grid.high)


def categories(frame: pd.DataFrame, schema: DatasetSchema, kind: str, target: str) -> np.ndarray:
    """Column `<kind>_<target>` as integer categories of each essay's own grid (0 = the grid's lowest point)."""
    values = frame[f"{kind}_{target}"].to_numpy(float)
    out = np.zeros(len(values), dtype=int)
    for prompt, rows in frame.groupby("prompt", sort=False).indices.items():
        out[rows] = schema.grid_for(prompt, target).to_category(np.nan_to_num(values[rows]))
    return out


def scored(frame: pd.DataFrame, schema: DatasetSchema, target: str) -> pd.DataFrame:
    """The rows whose prompt scores `target` (all rows, unless `dataset.prompt_targets` says otherwise)."""
    mask = schema.scored_mask(frame["prompt"].to_numpy(), target)
    return frame if mask.all() else frame[mask]


def table_qwk(frame: pd.DataFrame, schema: DatasetSchema, target: str) -> float:
    """QWK of a table's essays: on their shared grid when their prompts share one, else the mean of the
    per-prompt QWKs (each on its own grid); NaN when undefined."""
    frame = scored(frame, schema, target)
    prompts = frame["prompt"].unique()
    if schema.shares_scale(prompts, target):
        grid = schema.grid_for(prompts[0], target) if len(prompts) else schema.grid
        return qk.qwk(frame[f"true_{target}"].to_numpy(), frame[f"grid_{target}"].to_numpy(), grid)
    per_prompt = [qk.qwk(g[f"true_{target}"].to_numpy(), g[f"grid_{target}"].to_numpy(),
                        schema.grid_for(name, target)) for name, g in frame.groupby("prompt", sort=True)]
    return float(np.nanmean(per_prompt)) if np.isfinite(per_prompt).any() else float("nan")


def per_prompt_table(frame: pd.DataFrame, schema: DatasetSchema, target: str | None = None) -> pd.DataFrame:
    """Per prompt scoring `target` (default the primary): n, fold, its scale, QWK, exact and adjacent agreement
    on its own grid, and the mean residual on the common scale."""
    p = schema.primary if target is None else target
    frame = scored(frame, schema, p)
    residual = common(frame, schema, "grid", p) - common(frame, schema, "true", p)
    rows = []
    for prompt, index in frame.groupby("prompt", sort=True).indices.items():
        group = frame.iloc[index]
        grid = schema.grid_for(prompt, p)
        t, g = group[f"true_{p}"].to_numpy(), group[f"grid_{p}"].to_numpy()
        rows.append({
            "prompt": prompt,
            "n": len(group),
            "fold": int(group["fold"].iloc[0]) if group["fold"].nunique() == 1 else -1,
            "scale": grid.label(),
            "qwk": qk.qwk(t, g, grid),
            "exact": m.exact_agreement(t, g, grid),
            "adjacent": m.adjacent_agreement(t, g, grid),
            "mean_residual": float(np.mean(residual[index])),
        })
    return pd.DataFrame(rows, columns=["prompt", "n", "fold", "scale", "qwk", "exact", "adjacent", "mean_residual"])


def smd_by_subgroup(frame: pd.DataFrame, schema: DatasetSchema) -> dict[str, dict[str, dict[str, float]]]:
    """SMD of the on-grid primary prediction (common scale) within each level of each subgroup column."""
    p = schema.primary
    frame = frame.assign(_true=common(frame, schema, "true", p), _grid=common(frame, schema, "grid", p))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in schema.subgroups:
        levels = {}
        for level, group in frame.dropna(subset=[column]).groupby(column, sort=True):
            levels[str(level)] = {"n": len(group), "smd": m.smd(group["_true"].to_numpy(), group["_grid"].to_numpy())}
        out[column] = levels
    return out


def fold_qwk(frame: pd.DataFrame, schema: DatasetSchema, target: str) -> list[float]:
    """Each fold's QWK over its essays scoring `target`, on the grid they share; NaN for a fold whose prompts
    use different grids (its essays cannot be pooled) or that has none."""
    out = []
    for _, group in frame.groupby("fold", sort=True):
        group = scored(group, schema, target)
        prompts = group["prompt"].unique()
        if not len(prompts) or not schema.shares_scale(prompts, target):
            out.append(float("nan"))
            continue
        out.append(qk.qwk(group[f"true_{target}"].to_numpy(), group[f"grid_{target}"].to_numpy(),
                         schema.grid_for(prompts[0], target)))
    return out


def folds_share_scales(rows: pd.DataFrame, schema: DatasetSchema, target: str) -> bool:
    """Whether every fold's prompts share one scale for `target`: QWK is then averaged over folds, else over
    prompts."""
    return all(schema.shares_scale(g["prompt"].unique(), target) for _, g in rows.groupby("fold"))


MIXED_SCALES = "prompts use different score scales: pooled QWK would measure which prompt an essay came from"


def qwk_summary(frame: pd.DataFrame, schema: DatasetSchema, target: str, min_prompt_n: int) -> dict[str, Any]:
    """QWK of `target`: mean ± SD over folds where every fold's prompts share a scale, else over prompts (those
    with ≥ `min_prompt_n` essays, each on its own grid); which one in `averaged_over`. Pooled over all essays only
    where they share one scale (else None, with the reason)."""
    rows = scored(frame, schema, target)
    prompts = per_prompt_table(rows, schema, target)
    eligible = prompts[prompts["n"] >= min_prompt_n]["qwk"].to_numpy(float)
    prompt_mean = float(np.nanmean(eligible)) if np.isfinite(eligible).any() else float("nan")
    per_fold = fold_qwk(rows, schema, target)
    over_folds = folds_share_scales(rows, schema, target)
    values = per_fold if over_folds else eligible[np.isfinite(eligible)].tolist()
    same = schema.shares_scale(rows["prompt"].unique(), target)
    grid = schema.grid_for(rows["prompt"].iloc[0], target) if len(rows) else schema.grid
    return {
        "mean": float(np.nanmean(per_fold)) if over_folds else prompt_mean,
        "std": float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0,
        "averaged_over": "folds" if over_folds else "prompts",
        "fold_mean": float(np.nanmean(per_fold)) if over_folds else None,
        "prompt_mean": prompt_mean,
        "n_prompts": len(prompts),
        "pooled": qk.qwk(rows[f"true_{target}"].to_numpy(), rows[f"grid_{target}"].to_numpy(), grid)
        if same else None,
        "pooled_omitted": None if same else MIXED_SCALES,
        "per_fold": per_fold,
    }


def continuous_qwk_summary(frame: pd.DataFrame, schema: DatasetSchema, target: str, min_prompt_n: int
                           ) -> dict[str, Any]:
    """QWK of the continuous predictions (clipped to the scale; `metrics.continuous_qwk`), averaged like the
    on-grid QWK (`qwk_summary`): over folds where each fold's prompts share a scale, else over prompts with
    ≥ `min_prompt_n` essays. Computed on the common scale: per prompt the map is affine, which QWK ignores."""
    rows = scored(frame, schema, target)
    t, c = common(rows, schema, "true", target), _clip(common(rows, schema, "pred", target), schema)
    over_folds = folds_share_scales(rows, schema, target)
    by = "fold" if over_folds else "prompt"
    values = [m.continuous_qwk(t[index], c[index]) for _, index in rows.groupby(by, sort=True).indices.items()
              if over_folds or len(index) >= min_prompt_n]
    finite = [v for v in values if np.isfinite(v)]
    return {"mean": float(np.mean(finite)) if finite else float("nan"),
            "averaged_over": "folds" if over_folds else "prompts"}


def subgroup_levels(frame: pd.DataFrame, column: str) -> pd.Series:
    """Each essay's level of a subgroup column as text; essays without a value form the level `missing`."""
    values = frame[column]
    return values.astype(str).where(values.notna(), "missing")


def subgroup_fairness(frame: pd.DataFrame, schema: DatasetSchema) -> dict[str, Any]:
    """Per subgroup column (primary target, common scale): every level's n and DSM of the on-grid and of the
    continuous (clipped) predictions, and the fairness analyses (`stages.lib.scoring.fairness`) of both."""
    p = schema.primary
    t, g = common(frame, schema, "true", p), common(frame, schema, "grid", p)
    c = _clip(common(frame, schema, "pred", p), schema)
    out: dict[str, Any] = {}
    for column in schema.subgroups:
        if column not in frame.columns:
            continue
        levels = subgroup_levels(frame, column)
        by_level = {}
        for level, index in frame.groupby(levels.to_numpy(), sort=True).indices.items():
            by_level[str(level)] = {"n": len(index), "dsm": m.dsm(t[index], g[index], t, g),
                                    "dsm_continuous": m.dsm(t[index], c[index], t, c)}
        out[column] = {"levels": by_level, "on_grid": fairness_analyses(t, g, levels),
                       "continuous": fairness_analyses(t, c, levels)}
    return out


def own_scale_errors(frame: pd.DataFrame, schema: DatasetSchema) -> dict[str, Any]:
    """Per prompt, on its own scales: RMSE of the primary target and MCRMSE over the analytic traits it scores
    (as `trait_mcrmse`; continuous predictions clipped to each grid), each also as a share of the grid's range,
    with the means of the shares over prompts. Where prompts use different scales, these are errors a reader can
    relate to a rubric (the common-scale RMSE and MCRMSE are not)."""
    by_prompt: dict[str, dict[str, float]] = {}
    for prompt, index in frame.groupby("prompt", sort=True).indices.items():
        group = frame.iloc[index]
        errors = {}
        for target in schema.targets:
            if not schema.scores(prompt, target):
                continue
            grid = schema.grid_for(prompt, target)
            truth = group[f"true_{target}"].to_numpy(float)
            ok = np.isfinite(truth)
            if ok.any():
                pred = np.clip(group[f"pred_{target}"].to_numpy(float)[ok], grid.low, grid.high)
                rmse = m.rmse(truth[ok], pred)
                errors[target] = (rmse, rmse / (grid.high - grid.low))
        if not errors:
            continue
        primary = errors.get(schema.primary, (float("nan"), float("nan")))
        traits = [errors[t] for t in schema.traits if t in errors]
        by_prompt[str(prompt)] = {"rmse": primary[0], "rmse_share": primary[1],
                                  "mcrmse": float(np.mean([e[0] for e in traits])) if traits else float("nan"),
                                  "mcrmse_share": float(np.mean([e[1] for e in traits])) if traits else float("nan")}

    def mean(key: str) -> float:
        values = [v[key] for v in by_prompt.values() if np.isfinite(v[key])]
        return float(np.mean(values)) if values else float("nan")

    return {"rmse_share_mean": mean("rmse_share"), "mcrmse_share_mean": mean("mcrmse_share"), "by_prompt": by_prompt}


def trait_mcrmse(frame: pd.DataFrame, schema: DatasetSchema) -> float:
    """MCRMSE over the analytic traits on the common scale (clipped continuous predictions), each trait over the
    essays that have it."""
    traits = list(schema.traits)
    if not traits:
        return float("nan")
    truth = np.column_stack([common(frame, schema, "true", t) for t in traits])
    pred = _clip(np.column_stack([common(frame, schema, "pred", t) for t in traits]), schema)
    if np.isfinite(truth).all():
        return m.mcrmse(truth, pred)
    return float(np.mean([m.rmse(truth[ok, j], pred[ok, j]) for j in range(len(traits))
                          if (ok := np.isfinite(truth[:, j])).any()]))


def summarise(frame: pd.DataFrame, schema: DatasetSchema, cfg: Evaluate) -> dict[str, Any]:
    """The metrics file's body for one arm and scheme. Agreement is on each essay's own grid; RMSE, MAE,
    Pearson r, SMD and the tails' membership use the common scale."""
    p, min_n = schema.primary, cfg.min_prompt_n
    t, g = common(frame, schema, "true", p), common(frame, schema, "grid", p)
    c = _clip(common(frame, schema, "pred", p), schema)
    t_cat, g_cat = categories(frame, schema, "true", p), categories(frame, schema, "grid", p)
    primary = qwk_summary(frame, schema, p, min_n)
    by_trait = {}
    for target in schema.targets:
        q = primary if target == p else qwk_summary(frame, schema, target, min_n)
        by_trait[target] = {k: q[k] for k in ("mean", "std", "pooled", "averaged_over", "n_prompts")}
    prompts = per_prompt_table(frame, schema)
    worst, worst_names = m.worst_prompt_qwk(
        {r.prompt: (r.n, r.qwk) for r in prompts.itertuples()}, min_n, cfg.bottom_k
    )
    eligible = prompts[prompts["n"] >= min_n]
    return {
        "n_essays": len(frame),
        "n_folds": int(frame["fold"].nunique()),
        "qwk": primary,
        "qwk_by_trait": by_trait,
        "mcrmse": trait_mcrmse(frame, schema),
        "agreement": {
            "exact": float(np.mean(t_cat == g_cat)),
            "adjacent": float(np.mean(np.abs(t_cat - g_cat) <= 1)),
            "mae": m.mae(t, g),
            "rmse": m.rmse(t, g),
            "rmse_continuous": m.rmse(t, c),
            "pearson_r": m.pearson_r(t, c),
        },
        "worst_prompt_qwk": worst,
        "worst_prompts": worst_names,
        "prompts_eligible": len(eligible),
        "min_prompt_n": min_n,
        "bottom_k": cfg.bottom_k,
        "per_prompt_qwk": {r.prompt: r.qwk for r in eligible.itertuples()},
        "tails": m.tail_adjacent(t, t_cat, g_cat, cfg.low_tail, cfg.high_tail),
        "smd": {"overall": m.smd(t, g), "by_subgroup": smd_by_subgroup(frame, schema)},
        "continuous": {"qwk": continuous_qwk_summary(frame, schema, p, min_n), "rmse": m.rmse(t, c),
                       "smd": m.smd(t, c)},
        "subgroups": subgroup_fairness(frame, schema),
        "own_scale_error": own_scale_errors(frame, schema),
    }


def score_label(grid_step: float) -> str:
    """The format of a score on a grid with this step (one decimal for ELLIPSE's 0.5)."""
    decimals = max(1, len(f"{grid_step:g}".partition(".")[2]))
    return f"{{:.{decimals}f}}"


def common_grid_labels(values: pd.Series, schema: DatasetSchema) -> pd.Series:
    """Common-scale scores as labels of their nearest common-grid point (ELLIPSE: `3.5`)."""
    return pd.Series(schema.grid.snap(values.to_numpy()), index=values.index).map(score_label(schema.grid.step).format)


def residual_rows(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Per-essay residual rows (primary target) on the common scale: on-grid and continuous residuals with
    context; `score_band` is the human score's nearest common-grid point."""
    p = schema.primary
    rows = frame[["essay_id", "fold", "prompt", "n_words", *schema.subgroups]].copy()
    rows["true"] = common(frame, schema, "true", p)
    rows["pred_continuous"] = common(frame, schema, "pred", p)
    rows["pred_grid"] = common(frame, schema, "grid", p)
    rows["residual"] = rows["pred_grid"] - rows["true"]
    rows["residual_continuous"] = _clip(rows["pred_continuous"].to_numpy(), schema) - rows["true"]
    rows["length_band"] = pd.qcut(rows["n_words"], 4, duplicates="drop").astype(str)
    rows["score_band"] = common_grid_labels(rows["true"], schema)
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
    """Essays per point of the common grid: human scores and on-grid predictions (each at its nearest common
    point), with the human share."""
    decimals = max(1, len(f"{schema.grid.step:g}".partition(".")[2]))
    points = pd.Index(schema.grid.points().round(decimals), name="score")
    human = pd.Series(schema.grid.snap(rows["true"].to_numpy())).round(decimals).value_counts()
    system = pd.Series(schema.grid.snap(rows["pred_grid"].to_numpy())).round(decimals).value_counts()
    human, system = human.reindex(points, fill_value=0), system.reindex(points, fill_value=0)
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
    """Actual (rows) × on-grid predicted (columns) counts of the primary target on the full common grid (scores
    of other grids at their nearest common point)."""
    p = schema.primary
    labels = [score_label(schema.grid.step).format(v) for v in schema.grid.points()]
    snapped = {kind: common_grid_labels(pd.Series(common(frame, schema, kind, p)), schema) for kind in ("true", "grid")}
    table = pd.crosstab(snapped["true"], snapped["grid"])
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
