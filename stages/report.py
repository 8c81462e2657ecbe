"""Stage `report`: the evaluation report a measurement specialist reads, as one self-contained HTML file
(`reports/evaluation_report.html`: inline CSS, figures as data URIs). Also renders the gate deltas
figure `plots/gate/deltas.png`. Arms that have not run appear as "not run"."""

from __future__ import annotations

import pandas as pd

from stages.lib.core.atomic import write_text
from stages.lib.core.config import load_params, section
from stages.lib.core.errors import run_stage
from stages.lib.core.paths import DATA_METRICS, DECISION, FIGURES_DIR, GATE, GATE_FIGURE, REPORT, residuals_path
from stages.lib.data.schema import DatasetSchema
from stages.lib.gate.criteria import GateConfig, deltas_table
from stages.lib.gate.evidence import load_arm_files, read_json, read_required_json
from stages.lib.reporting.figures import gate_figure, save_png
from stages.lib.reporting.html import page
from stages.lib.reporting.sections import Flags, ReportInputs, build_sections


def load_inputs(params: dict) -> ReportInputs:
    cfg = GateConfig.from_params(params)
    flags = section(params, "report")
    arms, schemes = [cfg.reference, *cfg.candidates], list(cfg.schemes)
    schema = DatasetSchema.from_params(params)
    as_text = {c: str for c in schema.subgroups}  # levels keyed as evaluate keys them
    residuals = {f"{a}_{s}": pd.read_csv(residuals_path(a, s), dtype=as_text) if residuals_path(a, s).is_file()
                 else None for a in arms for s in schemes}
    per_prompt_path = FIGURES_DIR / "per_prompt_qwk.csv"
    per_prompt = pd.read_csv(per_prompt_path) if per_prompt_path.is_file() else pd.DataFrame(
        columns=["scheme", "arm", "series", "prompt", "n", "eligible", "qwk"])
    figures = {f"per_prompt_{s}": FIGURES_DIR / f"per_prompt_qwk_{s}.png" for s in schemes}
    figures |= {"residual_by_band": FIGURES_DIR / "residual_by_band.png", "confusion": FIGURES_DIR / "confusion.png",
                "gate": GATE_FIGURE}
    return ReportInputs(
        cfg=cfg, schema=schema,
        flags=Flags(float(flags["qwk_flag"]), float(flags["smd_flag"]), float(flags["dsm_flag"])),
        data=read_json(DATA_METRICS), arm_metrics=load_arm_files(arms, schemes, "metrics"),
        residuals=residuals, per_prompt=per_prompt,
        gate=read_required_json(GATE, "compare"),
        decision=read_required_json(DECISION, "decide"), figures=figures)


def main() -> None:
    inputs = load_inputs(load_params())
    save_png(gate_figure(deltas_table(inputs.gate), f"Gate: candidate − {inputs.cfg.reference}"), GATE_FIGURE)
    html = page("Automated essay scoring: evaluation report", [], build_sections(inputs))
    write_text(REPORT, html)
    print(f"report: {REPORT} ({len(html) / 1e6:.1f} MB, {len(inputs.runs())} arm/scheme runs)")


if __name__ == "__main__":
    run_stage(main)
