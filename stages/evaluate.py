"""Stage `evaluate` (shared by every arm): read only the arm's predictions tables (one per training seed) and write
`metrics/arms/<arm>_<scheme>.json`; under `reports/arms/<arm>_<scheme>/` the per-essay residual rows, one
named table per analysis (`stages.lib.core.paths.ARM_TABLES`: descriptives, score distribution, subgroup
SMD/DSM, residual breakdowns, confusion matrix — every statistic the report shows) and a residual-diagnostics
report; and plot data for `dvc plots` under `plots/arms/<arm>_<scheme>/`."""

from __future__ import annotations

import argparse

import pandas as pd

from stages.lib.core.atomic import write_csv, write_json, write_text
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.params import Params
from stages.lib.core.paths import (
    arm_table_path,
    metrics_path,
    plot_data_path,
    predictions_path,
    residual_report_path,
    residuals_path,
    run_name,
)
from stages.lib.core.runinfo import run_info
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.evaluation import (
    common_grid_labels,
    evaluation_tables,
    per_prompt_table,
    residual_rows,
    summarise,
)
from stages.lib.scoring.predictions import read_predictions
from stages.lib.scoring.seeds import ESTIMATE, combine_seeds


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (floats to 3 decimals)."""
    cells = frame.map(lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(row) + " |" for row in cells.to_numpy().tolist()]
    return "\n".join([head, rule, *body])


def _seed_line(summary: dict) -> str:
    sd = summary["seed_sd"]
    if summary["n_seeds"] < 2:
        return (f"One training seed ({summary['seeds'][0]}): the seed-to-seed training noise is unmeasured. "
                "The tables below are that seed's.")
    seeds = ", ".join(map(str, summary["seeds"]))
    return (f"Figures above are means over {summary['n_seeds']} training seeds ({seeds}); "
            f"SD over seeds: QWK {sd['qwk']['mean']:.3f}, worst-prompt QWK {sd['worst_prompt_qwk']:.3f}. "
            f"The tables below are seed {summary['tables_seed']}'s.")


def qwk_line(summary: dict) -> str:
    """Mean QWK (over folds or prompts, as the gate takes it), the mean over prompts beside it, pooled or why not."""
    q = summary["qwk"]
    pooled = f"pooled {q['pooled']:.3f}" if q["pooled"] is not None else f"no pooled QWK ({q['pooled_omitted']})"
    return (f"QWK mean over {q['averaged_over']} {q['mean']:.3f} ± {q['std']:.3f} (mean over the "
            f"{summary['prompts_eligible']} prompts with ≥ {summary['min_prompt_n']} essays {q['prompt_mean']:.3f}), "
            f"{pooled}; worst-prompt QWK (bottom {summary['bottom_k']} of those prompts) "
            f"{summary['worst_prompt_qwk']:.3f}.")


def residual_report(arm: str, scheme: str, summary: dict, tables: dict[str, pd.DataFrame],
                    schema: DatasetSchema) -> str:
    """The residual-diagnostics report: residual = on-grid prediction − truth (primary target)."""
    scale = "" if schema.single_scale else (
        f" Prompts use different score scales: residuals are on the common scale ({schema.grid.label()}), each "
        "prompt's scores mapped onto it min–max.")
    sections = [
        f"# Residual diagnostics: {arm}, {scheme}",
        "",
        f"{summary['n_essays']} out-of-fold essays over {summary['n_folds']} folds. Residual = on-grid prediction − "
        "human score; positive means the model scores too high. `rmse_continuous` uses the clipped continuous "
        f"prediction.{scale}",
        "",
        qwk_line(summary),
        "",
        _seed_line(summary),
    ]
    for title, name in [("score band (human score)", "residual_by_band"),
                        ("length (word-count quartile)", "residual_by_length"), ("fold", "residual_by_fold")]:
        sections += ["", f"## Residuals by {title}", "", markdown_table(tables[name])]
    by_subgroup = tables["residual_by_subgroup"]
    for column, group in by_subgroup.groupby("subgroup", sort=False):
        sections += ["", f"## Residuals by {column}", "", markdown_table(group.drop(columns="subgroup"))]
    sections += ["", "## Residuals by prompt", "", markdown_table(tables["residual_by_prompt"])]
    return "\n".join(sections) + "\n"


def evaluate(arm: str, scheme: str, params: Params) -> dict:
    """Judge the arm's predictions, every training seed's table, and write every output of the stage; returns
    the metrics (seed means at the top level, `seed_sd`, `per_seed`). The per-essay tables and plot data are
    the first seed's."""
    schema = DatasetSchema.from_params(params)
    seeds = params.seeds.of(arm)
    frames = [read_predictions(predictions_path(arm, scheme, seed), schema) for seed in seeds]
    per_seed = [summarise(frame, schema, params.evaluate) for frame in frames]
    mean, sd = combine_seeds(per_seed)
    summary = {"seeds": seeds, "n_seeds": len(seeds), "estimate": ESTIMATE, "tables_seed": seeds[0], **mean,
               "seed_sd": sd, "per_seed": {str(seed): one for seed, one in zip(seeds, per_seed, strict=True)}}
    frame = frames[0]
    rows = residual_rows(frame, schema)
    prompts = per_prompt_table(frame, schema)
    tables = evaluation_tables(frame, rows, prompts, schema)

    write_csv(residuals_path(arm, scheme), rows)
    for name, table in tables.items():
        write_csv(arm_table_path(arm, scheme, name), table)
    write_text(residual_report_path(arm, scheme), residual_report(arm, scheme, summary, tables, schema))
    write_csv(plot_data_path(arm, scheme, "per_prompt_qwk"),
              prompts.assign(arm=arm)[["arm", "prompt", "n", "scale", "qwk"]])
    write_csv(plot_data_path(arm, scheme, "confusion"),
              pd.DataFrame({"actual": common_grid_labels(rows["true"], schema),
                            "predicted": common_grid_labels(rows["pred_grid"], schema)}))
    write_csv(plot_data_path(arm, scheme, "residual_vs_length"), rows[["n_words", "residual_continuous", "residual"]])
    write_json(metrics_path(arm, scheme), {"arm": arm, "scheme": scheme, **summary, "run": run_info(params.seed)})
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arm", required=True)
    parser.add_argument("--scheme", required=True)
    args = parser.parse_args()
    summary = evaluate(args.arm, args.scheme, load_params())
    name = run_name(args.arm, args.scheme)
    sd = summary["seed_sd"].get("qwk", {}).get("mean")
    noise = f", ± {sd:.3f} over {summary['n_seeds']} seeds" if sd is not None else " (one seed: noise unmeasured)"
    print(f"{name}: QWK {summary['qwk']['mean']:.3f} ± {summary['qwk']['std']:.3f} over "
          f"{summary['qwk']['averaged_over']}{noise}, "
          f"worst-prompt {summary['worst_prompt_qwk']:.3f}, MCRMSE {summary['mcrmse']:.3f}")


if __name__ == "__main__":
    run_stage(main)
