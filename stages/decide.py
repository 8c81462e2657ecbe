"""Stage `decide`: render the decision record `docs/decisions/0001-transformer-track-gate.md` from the
gate record, the runs' metrics and training metadata, and the output hashes in `dvc.lock` (read at run
time, not a dependency); write the verdict as `metrics/decision.json`."""

from __future__ import annotations

from typing import Any

from stages.lib.core.atomic import write_json, write_text
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.paths import ADR, DECISION, GATE
from stages.lib.gate.adr import render_adr
from stages.lib.gate.checklist import ChecklistItem, build_checklist
from stages.lib.gate.criteria import GateConfig
from stages.lib.gate.decision import ACCEPT, Decision, verdict
from stages.lib.gate.evidence import (
    latest_finish,
    load_arm_files,
    load_training,
    lock_outputs,
    read_required_json,
    training_records,
)


def decision_record(decision: Decision, checklist: list[ChecklistItem], date: str | None) -> dict[str, Any]:
    """Flat, mostly numeric keys for `dvc metrics diff`."""
    record: dict[str, Any] = {
        "verdict": decision.label,
        "accept": int(decision.verdict == ACCEPT),
        "fragile": int(decision.fragile),
        "gate_valid": int(decision.gate_valid),
        "chosen_arm": decision.chosen or "",
        "evidence_utc": date or "",
    }
    for item in checklist:
        record[f"checklist.{item.number}"] = int(item.done)
    for arm in decision.arms:
        record[f"{arm.arm}.gate_valid"] = int(arm.gate_valid)
        record[f"{arm.arm}.accepted"] = int(arm.accepted)
    record["reasons"] = list(decision.reasons)
    return record


def main() -> None:
    params = load_params()
    cfg = GateConfig.from_params(params)
    gate = read_required_json(GATE, "compare")
    arms, schemes = [cfg.reference, *cfg.candidates], list(cfg.schemes)
    arm_metrics = load_arm_files(arms, schemes)
    training = load_training(arms, schemes, {arm: params.seeds.of(arm) for arm in arms})
    decision = verdict(gate, training)
    checklist = build_checklist(cfg, gate, training, lock_outputs())
    date = latest_finish(*arm_metrics.values(), *training_records(training))
    write_text(ADR, render_adr(cfg, gate, decision, checklist, arm_metrics, training, date))
    write_json(DECISION, decision_record(decision, checklist, date))
    ticked = sum(i.done for i in checklist)
    print(f"decide: {decision.label} (gate-valid evidence: {'yes' if decision.gate_valid else 'no'}; "
          f"checklist {ticked}/{len(checklist)}) -> {ADR}")


if __name__ == "__main__":
    run_stage(main)
