"""Stage `report`: the evaluation report a measurement specialist reads, as one self-contained HTML file
(`reports/evaluation_report.html`: inline CSS, figures as data URIs), and the first screen: the headline
record `metrics/headline.json` and its plain-text summary `reports/summary.txt`. It displays what the other
stages computed (evaluate's tables, the figures, compare's gate record and figure, decide's verdict) and
computes nothing itself. Arms that have not run appear as "not run"."""

from __future__ import annotations

import pandas as pd

from stages.lib.core.atomic import write_json, write_text
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.params import Params
from stages.lib.core.paths import ADR, DATA_METRICS, DECISION, FIGURES_DIR, GATE, GATE_FIGURE, HEADLINE, REPORT, SUMMARY
from stages.lib.data.schema import DatasetSchema
from stages.lib.gate.criteria import GateConfig
from stages.lib.gate.evidence import load_arm_files, read_json, read_required_json
from stages.lib.reporting.headline import headline, summary_text
from stages.lib.reporting.html import page
from stages.lib.reporting.sections import Flags, ReportInputs, build_sections
from stages.lib.reporting.tables import read_arm_tables


def load_inputs(params: Params) -> ReportInputs:
    cfg = GateConfig.from_params(params)
    arms, schemes = [cfg.reference, *cfg.candidates], list(cfg.schemes)
    tables = {f"{a}_{s}": read_arm_tables(a, s) for a in arms for s in schemes}
    per_prompt_path = FIGURES_DIR / "per_prompt_qwk.csv"
    per_prompt = pd.read_csv(per_prompt_path) if per_prompt_path.is_file() else pd.DataFrame(
        columns=["scheme", "arm", "series", "prompt", "n", "eligible", "qwk"])
    figures = {f"per_prompt_{s}": FIGURES_DIR / f"per_prompt_qwk_{s}.png" for s in schemes}
    figures |= {"residual_by_band": FIGURES_DIR / "residual_by_band.png", "confusion": FIGURES_DIR / "confusion.png",
                "gate": GATE_FIGURE}
    return ReportInputs(
        cfg=cfg, schema=DatasetSchema.from_params(params), flags=Flags.from_params(params.report),
        data=read_json(DATA_METRICS), arm_metrics=load_arm_files(arms, schemes),
        tables=tables, per_prompt=per_prompt,
        gate=read_required_json(GATE, "compare"),
        decision=read_required_json(DECISION, "decide"), figures=figures)


def first_screen(r: ReportInputs) -> tuple[dict, str]:
    """The headline record and the summary text that `scripts/repro.sh` prints."""
    runs = r.runs()
    record = headline(r.decision, r.arm_metrics, runs)
    mc = r.cfg.metric_config
    definitions = (f"Reference {r.cfg.reference}; QWK mean ± SD over folds; worst prompt = mean of the bottom "
                   f"{mc.bottom_k} prompts (≥ {mc.min_prompt_n} essays); tails = adjacent accuracy at truth ≤ "
                   f"{mc.low_tail} / ≥ {mc.high_tail}.")
    not_run = [f"{a}/{s}" for s in r.cfg.schemes for a in r.arms if (a, s) not in runs]
    text = summary_text(record, runs, not_run, list(r.decision.get("reasons") or []), REPORT, ADR, definitions)
    return record, text


def main() -> None:
    inputs = load_inputs(load_params())
    html = page("Automated essay scoring: evaluation report", [], build_sections(inputs))
    write_text(REPORT, html)
    record, text = first_screen(inputs)
    write_json(HEADLINE, record)
    write_text(SUMMARY, text)
    print(f"report: {REPORT} ({len(html) / 1e6:.1f} MB, {len(inputs.runs())} arm/scheme runs); summary: {SUMMARY}")


if __name__ == "__main__":
    run_stage(main)
