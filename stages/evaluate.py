"""Stage `evaluate` (shared by every arm): read only the arm's predictions table and write
`metrics/<arm>_<scheme>.json`, a residual-diagnostics report and per-essay residual rows under
`reports/<arm>_<scheme>/`, and plot data for `dvc plots` under `plots/<arm>_<scheme>/`."""

from __future__ import annotations

import argparse

import pandas as pd

from stages.lib.core.atomic import write_csv, write_json, write_text
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.paths import arm_report_dir, metrics_path, plot_dir, predictions_path, residuals_path, run_name
from stages.lib.core.runinfo import run_info
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.evaluation import per_prompt_table, residual_breakdown, residual_rows, summarise
from stages.lib.scoring.predictions import read_predictions


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (floats to 3 decimals)."""
    cells = frame.map(lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(row) + " |" for row in cells.to_numpy().tolist()]
    return "\n".join([head, rule, *body])


def residual_report(arm: str, scheme: str, summary: dict, rows: pd.DataFrame, prompts: pd.DataFrame) -> str:
    """The residual-diagnostics report: residual = on-grid prediction − truth (primary target)."""
    sections = [
        f"# Residual diagnostics: {arm}, {scheme}",
        "",
        f"{summary['n_essays']} out-of-fold essays over {summary['n_folds']} folds. Residual = on-grid prediction − "
        "human score; positive means the model scores too high. `rmse_continuous` uses the clipped continuous "
        "prediction.",
        "",
        f"QWK mean over folds {summary['qwk']['mean']:.3f} ± {summary['qwk']['std']:.3f}, pooled "
        f"{summary['qwk']['pooled']:.3f}; worst-prompt QWK (bottom {summary['bottom_k']} of prompts with ≥ "
        f"{summary['min_prompt_n']} essays) {summary['worst_prompt_qwk']:.3f}.",
    ]
    for title, by in [("score band (human score)", "score_band"), ("length (word-count quartile)", "length_band"),
                      ("grade", "grade"), ("fold", "fold")]:
        if by in rows.columns:
            sections += ["", f"## Residuals by {title}", "", markdown_table(residual_breakdown(rows, by))]
    sections += ["", "## Residuals by prompt", "", markdown_table(prompts.sort_values("qwk"))]
    return "\n".join(sections) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arm", required=True)
    parser.add_argument("--scheme", required=True)
    args = parser.parse_args()
    params = load_params()
    schema = DatasetSchema.from_params(params)
    name = run_name(args.arm, args.scheme)
    reports, plots = arm_report_dir(args.arm, args.scheme), plot_dir(args.arm, args.scheme)
    frame = read_predictions(predictions_path(args.arm, args.scheme), schema)
    summary = summarise(frame, schema, params["evaluate"])
    rows = residual_rows(frame, schema)
    prompts = per_prompt_table(frame, schema)
    p = schema.primary

    write_csv(residuals_path(args.arm, args.scheme), rows)
    write_text(reports / "residuals.md", residual_report(args.arm, args.scheme, summary, rows, prompts))
    write_csv(plots / "per_prompt_qwk.csv", prompts.assign(arm=args.arm)[["arm", "prompt", "n", "qwk"]])
    write_csv(plots / "confusion.csv",
              pd.DataFrame({"actual": frame[f"true_{p}"].map("{:.1f}".format),
                            "predicted": frame[f"grid_{p}"].map("{:.1f}".format)}))
    write_csv(plots / "residual_vs_length.csv", rows[["n_words", "residual_continuous", "residual"]])
    write_json(metrics_path(args.arm, args.scheme),
               {"arm": args.arm, "scheme": args.scheme, **summary, "run": run_info(params["seed"])})
    print(f"{name}: QWK {summary['qwk']['mean']:.3f} ± {summary['qwk']['std']:.3f} over folds, "
          f"worst-prompt {summary['worst_prompt_qwk']:.3f}, MCRMSE {summary['mcrmse']:.3f}")


if __name__ == "__main__":
    run_stage(main)
