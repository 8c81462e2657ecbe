"""Render the decision record (an ADR in markdown) from the evidence; no numbers are typed by hand."""

from __future__ import annotations

from typing import Any

from stages.lib.core.errors import InputError
from stages.lib.core.formatting import md_table, num
from stages.lib.gate.checklist import ChecklistItem
from stages.lib.gate.criteria import GateConfig
from stages.lib.gate.decision import ACCEPT, Decision, noise_reason
from stages.lib.scoring.training_record import parse_record

RULE = """\
Accept requires one candidate with **every** criterion evaluated, **every** point estimate at or above
its threshold, and **gate-valid** evidence under every scheme the gate reads: GPU budget, the run marked
gate-valid, every fold present with NaN/inf checks covering its training steps and predictions, precision
and device recorded.
Evidence from the CPU budget is never gate-valid, so it can only defer.

Every metric is the mean over each arm's training seeds. Training noise is measured, not assumed: the
SD over seeds of each arm's metric (same data, folds and settings), combined for the delta of a one-seed-each
comparison as sqrt(SD_candidate² + SD_reference²). The interval is a two-level bootstrap: each resample draws
prompts with replacement (paired across arms) and, independently per arm, that arm's seeds with replacement,
averaging the metric over the drawn seeds; so it reflects prompt sampling and seed-to-seed variation at once.
Seeds are drawn independently because a candidate's seed has no counterpart among the reference's.

A criterion whose point estimate passes but whose paired bootstrap interval reaches below the threshold,
whose margin over the threshold is smaller than the training-noise SD, or whose training noise is
unmeasured (an arm with a single seed), passes *inside the noise*. Such a pass still counts, and the
verdict reads **accept (fragile)**: the review set its thresholds on point estimates, and with about
forty prompts a rule requiring the interval's lower bound above +0.010 worst-prompt QWK would demand an
uplift several times the threshold, quietly replacing the review's gate with a stricter one. The
consequence of accepting is bounded and reversible (one constrained tuning round), so the record names
the fragile criteria and that round must show them clear of their thresholds before any further
investment."""


def evidence_rows(cfg: GateConfig, arm_metrics: dict[str, dict[str, Any] | None]) -> list[list[str]]:
    rows = []
    for arm in (cfg.reference, *cfg.candidates):
        for scheme in cfg.schemes:
            s = arm_metrics.get(f"{arm}_{scheme}")
            if s is None:
                rows.append([arm, scheme, "not run", "—", "—", "—", "—", "—", "—", "—", "—"])
                continue
            sd = s.get("seed_sd", {})
            rows.append([arm, scheme, str(s["n_essays"]), str(s.get("n_seeds", 1)),
                         f"{num(s['qwk']['mean'])} ± {num(s['qwk']['std'])}", _seed_sd(sd.get("qwk", {}).get("mean")),
                         num(s["qwk"]["pooled"]), num(s["worst_prompt_qwk"]), _seed_sd(sd.get("worst_prompt_qwk")),
                         num(s["tails"]["low_adjacent"]), num(s["tails"]["high_adjacent"])])
    return rows


def _seed_sd(value: Any) -> str:
    return "unmeasured" if value is None else num(value)


def criteria_rows(cfg: GateConfig, gate: dict[str, Any]) -> list[list[str]]:
    rows = []
    for arm in cfg.candidates:
        for c in cfg.criteria:
            key = c.key(arm)
            if not gate.get(f"{key}.evaluated"):
                rows.append([arm, c.scheme, c.metric, "not run", "—", "—", "—", f"≥ {c.threshold:+.3f}",
                             "not evaluated"])
                continue
            status = "pass" if gate[f"{key}.pass"] else "fail"
            if gate[f"{key}.pass"] and not gate[f"{key}.robust_pass"]:
                status = f"pass (inside the noise: {noise_reason(gate, key)})"
            noise = num(gate.get(f"{key}.noise_sd")) if gate.get(f"{key}.noise_measured") else "unmeasured"
            rows.append([arm, c.scheme, c.metric, num(gate[f"{key}.delta"], signed=True),
                         f"{num(gate[f'{key}.ci_low'], signed=True)} to {num(gate[f'{key}.ci_high'], signed=True)}",
                         noise,
                         f"{gate.get(f'{key}.n_seeds_candidate')} / {gate.get(f'{key}.n_seeds_reference')}",
                         f"≥ {c.threshold:+.3f}", status])
    return rows


def validity_rows(cfg: GateConfig, training: dict[str, dict[int, dict[str, Any] | None]],
                  decision: Decision) -> list[list[str]]:
    valid = {a.arm: a for a in decision.arms}
    rows = []
    for arm in cfg.candidates:
        for scheme in cfg.schemes:
            runs = training.get(f"{arm}_{scheme}") or {}
            t = next((r for r in runs.values() if r is not None), None)
            if t is None:
                rows.append([arm, scheme, "not run", "—", "—", "—", "—", "no"])
                continue
            problems = [p.split(": ", 1)[1] for p in valid[arm].validity if p.startswith(f"{scheme}: ")] \
                if arm in valid else []
            try:
                record = parse_record(t)
            except InputError:
                rows.append([arm, scheme, "—", "—", "—", "—", "—", "no: " + "; ".join(problems)])
                continue
            rows.append([arm, scheme, record.budget, record.device, record.precision, record.finite_summary(),
                         str(len(record.folds)), "yes" if not problems else "no: " + "; ".join(problems)])
    return rows


def outcome(decision: Decision, cfg: GateConfig) -> tuple[str, str]:
    """The verdict sentence and its consequences."""
    if decision.verdict == ACCEPT:
        arm = next(a for a in decision.arms if a.arm == decision.chosen)
        text = (f"**{decision.label}** — `{decision.chosen}` clears every criterion against `{cfg.reference}` on "
                "gate-valid evidence. Continue the transformer track with one constrained tuning round.")
        consequences = [f"One constrained tuning round of `{decision.chosen}` (same splits, same gate); no open-ended "
                        "search.", "The heavier training stack (transformers, peft, accelerate) is adopted for that "
                        "round only."]
        if arm.inside_noise:
            consequences.append("Fragile: " + ", ".join(f"`{c}`" for c in arm.inside_noise) + " pass inside the "
                                "noise; the tuning round must show them clear of their thresholds, or the track "
                                "is deferred.")
        return text, "\n".join(f"- {c}" for c in consequences)
    passing_but_invalid = [a.arm for a in decision.arms if a.evaluated and a.passed and not a.gate_valid]
    text = f"**defer** — no justified uplift over `{cfg.reference}`; the transformer track is deferred."
    if passing_but_invalid:
        text += (" " + ", ".join(f"`{a}`" for a in passing_but_invalid) + " clear the numbers but the evidence is "
                 "not gate-valid (e.g. CPU budget), which can never yield accept.")
    consequences = [f"`{cfg.reference}` stays the production scorer; the heavier training stack is not adopted.",
                    "Revisit only with new gate-valid evidence (GPU budget, both schemes, every fold finite): "
                    "`dvc repro` re-renders this record."]
    return text, "\n".join(f"- {c}" for c in consequences)


def noise_statement(cfg: GateConfig, arm_metrics: dict[str, dict[str, Any] | None]) -> list[str]:
    """How many seeds each arm's evidence rests on, and where the training noise is unmeasured."""
    counts = {}
    for arm in (cfg.reference, *cfg.candidates):
        present = [m for s in cfg.schemes if (m := arm_metrics.get(f"{arm}_{s}")) is not None]
        if present:
            counts[arm] = max(int(m.get("n_seeds", 1)) for m in present)
    rests = ", ".join(f"`{arm}` {n} seed{'s' if n > 1 else ''}" for arm, n in counts.items())
    single = [arm for arm, n in counts.items() if n < 2]
    out = [f"Seeds per arm: {rests}."]
    if single:
        out.append("Training noise is **unmeasured** for " + ", ".join(f"`{a}`" for a in single) + " (one seed): "
                   "no pass involving them can be robust.")
    return out


def mean_qwk_statement(gate: dict[str, Any]) -> list[str]:
    """Which mean the gate's `mean_qwk` criteria take per scheme (over folds, or over prompts where folds mix
    score scales), as compare recorded it."""
    over = {k.removeprefix("mean_qwk_over."): v for k, v in gate.items() if k.startswith("mean_qwk_over.")}
    if not over:
        return []
    return ["", "Mean QWK in the gate: " + "; ".join(
        f"`{scheme}` over {how}" + (" (its folds mix score scales: each prompt's QWK on its own grid)"
                                     if how == "prompts" else "") for scheme, how in over.items()) + "."]


def render_adr(cfg: GateConfig, gate: dict[str, Any], decision: Decision, checklist: list[ChecklistItem],
               arm_metrics: dict[str, dict[str, Any] | None], training: dict[str, dict[int, dict[str, Any] | None]],
               date: str | None) -> str:
    """The whole decision record."""
    pct = round(100 * cfg.confidence)
    text, consequences = outcome(decision, cfg)
    lines = [
        "# ADR 0001: Continue or defer the transformer scoring track",
        "",
        f"- Status: decided — **{decision.label}**",
        f"- Date: {date[:10] if date else 'unknown'} (latest evidence run{', ' + date if date else ''})",
        "- Generated by the `decide` stage from `metrics/gate.json` and the runs' metadata; regenerate with "
        "`dvc repro`, never edit by hand.",
        "",
        "## Context",
        "",
        "Does a fine-tuned transformer (LoRA, with and without prompt invariance) justify its heavier training "
        f"stack over the `{cfg.reference}` reference, on essays written to prompts the model has never seen? The "
        "risk is that fine-tuning learns prompt shortcuts, which hurts exactly the worst prompts. Criteria, each "
        "a candidate − reference delta:",
        "",
        *(f"- `{c.scheme}` · `{c.metric}` ≥ {c.threshold:+.3f}" for c in cfg.criteria),
        "",
        f"Per-prompt QWK counts prompts with at least {cfg.metric_config.min_prompt_n} essays; worst-prompt QWK is "
        f"the mean of the bottom {cfg.metric_config.bottom_k}. Tails: truth ≤ {cfg.metric_config.low_tail} and ≥ "
        f"{cfg.metric_config.high_tail}. Each delta carries a paired {pct}% percentile interval from "
        f"{cfg.n_resamples} bootstrap resamples of prompts (clusters), not essays.",
        "",
        "## Review checklist",
        "",
    ]
    for item in checklist:
        lines.append(f"- {item.box} {item.number}. {item.text}")
        lines += [f"  - {e}" for e in item.evidence]
        if item.note:
            lines.append(f"  - not done: {item.note}")
    lines += ["", "## Evidence", "", "Agreement by arm (primary target; means over training seeds; QWK ± SD over "
              "folds; seed SD = SD over training seeds, the training noise):", ""]
    lines += md_table(["arm", "scheme", "essays", "seeds", "mean QWK", "seed SD", "pooled QWK", "worst-prompt QWK",
                     "seed SD", "low-tail adjacent", "high-tail adjacent"], evidence_rows(cfg, arm_metrics))
    lines += ["", *noise_statement(cfg, arm_metrics), *mean_qwk_statement(gate), ""]
    lines += ["", f"Gate criteria (candidate − `{cfg.reference}` on seed means, paired {pct}% two-level bootstrap "
              "interval over prompts and seeds; training-noise SD of the delta; seeds candidate / reference):", ""]
    lines += md_table(["candidate", "scheme", "criterion", "delta", "interval", "noise SD", "seeds", "threshold",
                     "result"], criteria_rows(cfg, gate))
    lines += ["", "Gate validity of the candidates' runs:", ""]
    lines += md_table(["candidate", "scheme", "budget", "device", "precision", "finite checks", "folds", "gate-valid"],
                    validity_rows(cfg, training, decision))
    lines += ["", "## Decision", "", text, ""]
    lines += [f"- {r}" for r in decision.reasons] or ["- every candidate clears the gate robustly"]
    lines += ["", "### Decision rule", "", RULE, "", "## Consequences", "", consequences, ""]
    return "\n".join(lines)
