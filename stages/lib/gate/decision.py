"""The gate's decision rule, as a pure function from the compare record and the candidates' training
metadata to a verdict with its reasons.

Rule: accept when some candidate has every criterion evaluated, every point estimate at or above its
threshold, and gate-valid evidence (GPU budget, marked gate-valid, every configured fold recorded, each
fold's NaN/inf checks covering its training steps and validation predictions, precision and device recorded)
under every scheme the gate reads. A passing criterion whose interval's lower bound falls below the
threshold passes *inside the noise*: the verdict stays accept, labelled "accept (fragile)", and the record
names the criteria the tuning round must re-check. CPU-budget evidence is never gate-valid, so it can only
defer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stages.lib.core.errors import InputError
from stages.lib.core.formatting import num
from stages.lib.gate.criteria import criteria_in
from stages.lib.scoring.training_record import parse_record

ACCEPT, DEFER = "accept", "defer"


@dataclass(frozen=True)
class ArmAssessment:
    """One candidate judged against the gate."""

    arm: str
    run: bool  # at least one criterion evaluated
    evaluated: bool  # every criterion evaluated
    passed: bool  # every point estimate passes
    robust: bool  # and every interval's lower bound too
    gate_valid: bool
    failed: tuple[str, ...] = ()
    inside_noise: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    validity: tuple[str, ...] = ()  # why the evidence is not gate-valid

    @property
    def accepted(self) -> bool:
        return self.evaluated and self.passed and self.gate_valid


@dataclass(frozen=True)
class Decision:
    verdict: str  # ACCEPT or DEFER
    chosen: str | None
    fragile: bool
    arms: tuple[ArmAssessment, ...]
    reasons: tuple[str, ...]

    @property
    def label(self) -> str:
        return "accept (fragile)" if self.verdict == ACCEPT and self.fragile else self.verdict

    @property
    def gate_valid(self) -> bool:
        """Whether any candidate's evidence is gate-valid."""
        return any(a.gate_valid for a in self.arms)


def validity_problems(runs: dict[int, dict[str, Any] | None] | None, expected_folds: int | None) -> list[str]:
    """Why one arm × scheme's training records, one per selected seed, are not gate-valid evidence (empty when
    they are); a problem every seed shares is named once."""
    if not runs or all(r is None for r in runs.values()):
        return ["no training metadata"]
    by_seed = {seed: record_problems(record, expected_folds) for seed, record in runs.items()}
    shared = [p for p in next(iter(by_seed.values())) if all(p in ps for ps in by_seed.values())]
    labels = "every seed" if len(by_seed) > 1 else f"seed {next(iter(by_seed))}"
    out = [f"{labels}: {p}" for p in shared]
    return out + [f"seed {seed}: {p}" for seed, ps in by_seed.items() for p in ps if p not in shared]


def record_problems(training: dict[str, Any] | None, expected_folds: int | None) -> list[str]:
    """Why one seed's training record (`stages.lib.scoring.training_record`) is not gate-valid evidence
    (empty when it is)."""
    if training is None:
        return ["no training metadata"]
    try:
        record = parse_record(training)
    except InputError as exc:
        return [f"training record invalid ({exc})"]
    problems = []
    if record.budget != "gpu":
        problems.append(f"budget {record.budget!r} (only GPU-budget runs are gate-valid)")
    if not record.gate_valid:
        problems.append("run not marked gate_valid")
    problems += [f"training metrics not shown finite: {p}" for p in record.finite_problems()]
    for key in ("precision", "device"):
        if not getattr(record, key):
            problems.append(f"{key} not recorded")
    if not record.complete:
        problems.append("run marked incomplete (not every configured fold)")
    if expected_folds is not None and len(record.folds) != expected_folds:
        problems.append(f"{len(record.folds)} of {expected_folds} folds recorded")
    return problems


def _signed(value: Any) -> str:
    return num(value, signed=True, missing="n/a")


def assess(arm: str, gate: dict[str, Any], pairs: list[tuple[str, str]],
           training: dict[str, dict[int, dict[str, Any] | None]]) -> ArmAssessment:
    """Judge one candidate; `training` maps "<arm>_<scheme>" to {seed: training record, None if absent}."""
    failed, noisy, missing, evaluated_any = [], [], [], False
    for scheme, metric in pairs:
        key = f"{arm}.{scheme}.{metric}"
        if not gate.get(f"{key}.evaluated"):
            missing.append(f"{scheme}.{metric}")
            continue
        evaluated_any = True
        if not gate.get(f"{key}.pass"):
            failed.append(f"{scheme}.{metric}")
        elif not gate.get(f"{key}.robust_pass"):
            noisy.append(f"{scheme}.{metric}")
    validity = []
    for scheme in dict.fromkeys(s for s, _ in pairs):
        expected = gate.get(f"{arm}.{scheme}.n_folds")
        validity += [f"{scheme}: {p}" for p in validity_problems(training.get(f"{arm}_{scheme}"), expected)]
    evaluated = bool(pairs) and not missing
    return ArmAssessment(arm, evaluated_any, evaluated, evaluated and not failed,
                         evaluated and not failed and not noisy, not validity, tuple(failed), tuple(noisy),
                         tuple(missing), tuple(validity))


def noise_reason(gate: dict[str, Any], key: str) -> str:
    """Why a passing criterion is not robust: its interval crosses the threshold, its margin is within the
    training noise, or that noise is unmeasured (an arm with one seed)."""
    delta, threshold = gate.get(f"{key}.delta"), gate.get(f"{key}.threshold")
    why = []
    if (gate.get(f"{key}.ci_low") or 0.0) < (threshold or 0.0) - 1e-12:
        why.append(f"interval {_signed(gate.get(f'{key}.ci_low'))} to {_signed(gate.get(f'{key}.ci_high'))} crosses "
                   f"{_signed(threshold)}")
    if not gate.get(f"{key}.noise_measured"):
        why.append(f"training noise unmeasured: {gate.get(f'{key}.n_seeds_candidate')} seed(s) for the candidate, "
                   f"{gate.get(f'{key}.n_seeds_reference')} for the reference")
    elif gate.get(f"{key}.within_noise"):
        why.append(f"margin {_signed(delta - threshold)} is within the training-noise SD "
                   f"{gate.get(f'{key}.noise_sd'):.3f}")
    return "; ".join(why) or "not robust"


def reasons_for(a: ArmAssessment, gate: dict[str, Any]) -> list[str]:
    """Plain-language reasons behind one candidate's assessment."""
    if not a.run:
        return [f"{a.arm}: not run"]
    out = []
    for name in a.failed:
        key = f"{a.arm}.{name}"
        out.append(f"{a.arm}: {name} fails (delta {_signed(gate.get(f'{key}.delta'))} < threshold "
                   f"{_signed(gate.get(f'{key}.threshold'))})")
    for name in a.inside_noise:
        out.append(f"{a.arm}: {name} passes inside the noise ({noise_reason(gate, f'{a.arm}.{name}')})")
    out += [f"{a.arm}: {name} not evaluated (no run under that scheme)" for name in a.missing]
    if a.validity:
        out.append(f"{a.arm}: evidence not gate-valid ({'; '.join(a.validity)})")
    return out


def verdict(gate: dict[str, Any], training: dict[str, dict[int, dict[str, Any] | None]]) -> Decision:
    """Accept or defer from the compare record `gate` (metrics/gate.json) and `training`, which maps
    "<arm>_<scheme>" to {seed: that run's training record (None when not run)}."""
    arms = tuple(assess(arm, gate, pairs, training) for arm, pairs in criteria_in(gate).items())
    accepted = [a for a in arms if a.accepted]
    reasons = [r for a in arms for r in reasons_for(a, gate)]
    if not accepted:
        if not any(a.run for a in arms):
            reasons.insert(0, "no candidate arm has been run")
        return Decision(DEFER, None, False, arms, tuple(reasons))
    chosen = next((a for a in accepted if a.robust), accepted[0])
    return Decision(ACCEPT, chosen.arm, not chosen.robust, arms, tuple(reasons))
