"""Stage `report`: the evaluation report a measurement specialist reads, as one self-contained HTML file
(`reports/evaluation_report.html`: inline CSS, figures as data URIs). Also renders the gate deltas
figure `plots/gate/deltas.png`. Arms that have not run appear as "not run"."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages.lib.atomic import write_text
from stages.lib.config import load_params, section
from stages.lib.errors import run_stage
from stages.lib.evidence import load_arm_files, read_json, read_required_json, residuals_path
from stages.lib.figures import gate_figure, save_png
from stages.lib.gate import GateConfig, deltas_table
from stages.lib.html import page
from stages.lib.report_sections import Flags, ReportInputs, build_sections
from stages.lib.schema import DatasetSchema

REPORT_PATH = Path("reports/evaluation_report.html")
GATE_FIGURE = Path("plots/gate/deltas.png")
ARM_FIGURES = Path("plots/arms")


def load_inputs(params: dict) -> ReportInputs:
    cfg = GateConfig.from_params(params)
    flags = section(params, "report")
    arms, schemes = [cfg.reference, *cfg.candidates], list(cfg.schemes)
    schema = DatasetSchema.from_params(params)
    as_text = {c: str for c in schema.subgroups}  # levels keyed as evaluate keys them
    residuals = {f"{a}_{s}": pd.read_csv(residuals_path(a, s), dtype=as_text) if residuals_path(a, s).is_file()
                 else None for a in arms for s in schemes}
    per_prompt_path = ARM_FIGURES / "per_prompt_qwk.csv"
    per_prompt = pd.read_csv(per_prompt_path) if per_prompt_path.is_file() else pd.DataFrame(
        columns=["scheme", "arm", "series", "prompt", "n", "eligible", "qwk"])
    figures = {f"per_prompt_{s}": ARM_FIGURES / f"per_prompt_qwk_{s}.png" for s in schemes}
    figures |= {"residual_by_band": ARM_FIGURES / "residual_by_band.png", "confusion": ARM_FIGURES / "confusion.png",
                "gate": GATE_FIGURE}
    return ReportInputs(
        cfg=cfg, schema=schema,
        flags=Flags(float(flags["qwk_flag"]), float(flags["smd_flag"]), float(flags["dsm_flag"])),
        data=read_json(Path("metrics/data.json")), arm_metrics=load_arm_files(arms, schemes, "metrics"),
        residuals=residuals, per_prompt=per_prompt,
        gate=read_required_json(Path("metrics/gate.json"), "compare"),
        decision=read_required_json(Path("metrics/decision.json"), "decide"), figures=figures)


def main() -> None:
    inputs = load_inputs(load_params())
    save_png(gate_figure(deltas_table(inputs.gate), f"Gate: candidate − {inputs.cfg.reference}"), GATE_FIGURE)
    html = page("Automated essay scoring: evaluation report", [], build_sections(inputs))
    write_text(REPORT_PATH, html)
    print(f"report: {REPORT_PATH} ({len(html) / 1e6:.1f} MB, {len(inputs.runs())} arm/scheme runs)")


if __name__ == "__main__":
    run_stage(main)
