"""The gate's configuration (params `gate`) and its record: one flat key per candidate, scheme, criterion
and field (`lora.prompt_holdout.worst_prompt_qwk.ci_low`), so `dvc metrics diff` lists every delta,
interval and pass flag. Every criterion reads "candidate − reference ≥ threshold" on seed-averaged metrics.
A pass is robust only when the interval's lower bound clears the threshold AND the margin exceeds the
training noise (the SD over seeds of a one-seed-each delta), which therefore must be measured (≥ 2 seeds
per arm)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from stages.lib.core.params import Params
from stages.lib.gate.bootstrap import Interval, MetricConfig

FIELDS = ("delta", "ci_low", "ci_high", "threshold", "pass", "robust_pass", "evaluated", "candidate_value",
          "reference_value", "noise_sd", "noise_measured", "within_noise", "n_seeds_candidate", "n_seeds_reference")
_EPS = 1e-12  # a delta equal to its threshold passes despite float rounding


@dataclass(frozen=True)
class Criterion:
    """Pass when the candidate's `metric` minus the reference's, under `scheme`, is at least `threshold`."""

    scheme: str
    metric: str
    threshold: float

    def key(self, candidate: str) -> str:
        return f"{candidate}.{self.scheme}.{self.metric}"


@dataclass(frozen=True)
class GateConfig:
    reference: str
    baseline: str
    candidates: tuple[str, ...]
    schemes: tuple[str, ...]  # every scheme shown; criteria may use a subset
    criteria: tuple[Criterion, ...]
    n_resamples: int
    confidence: float
    seed: int
    metric_config: MetricConfig

    @property
    def criteria_schemes(self) -> tuple[str, ...]:
        return tuple(s for s in self.schemes if any(c.scheme == s for c in self.criteria))

    def metrics_for(self, scheme: str) -> list[str]:
        return [c.metric for c in self.criteria if c.scheme == scheme]

    @classmethod
    def from_params(cls, params: Params) -> GateConfig:
        """The gate params (checked by the schema) with the `evaluate` definitions the metrics use."""
        gate, ev = params.gate, params.evaluate
        criteria = tuple(Criterion(scheme, metric, threshold)
                         for scheme, by_metric in gate.criteria.items() for metric, threshold in by_metric.items())
        return cls(gate.reference, gate.baseline_arm, tuple(gate.candidates), tuple(gate.schemes), criteria,
                   gate.bootstrap.n_resamples, gate.bootstrap.confidence, params.seed,
                   MetricConfig(ev.min_prompt_n, ev.bottom_k, ev.low_tail, ev.high_tail))


def criterion_record(candidate: str, criterion: Criterion, interval: Interval | None) -> dict[str, float]:
    """The flat keys of one criterion; an unevaluated one (inputs missing) keeps only its threshold and flags."""
    key = criterion.key(candidate)
    if interval is None:
        return {f"{key}.threshold": criterion.threshold, f"{key}.evaluated": 0, f"{key}.pass": 0,
                f"{key}.robust_pass": 0}
    passed = interval.delta >= criterion.threshold - _EPS  # False for NaN
    noise = interval.noise_sd
    # inside the training noise: the margin over the threshold is smaller than one seed-to-seed SD of the delta
    within_noise = noise is not None and interval.delta - criterion.threshold < noise
    robust = passed and interval.ci_low >= criterion.threshold - _EPS and noise is not None and not within_noise
    return {
        f"{key}.delta": interval.delta,
        f"{key}.ci_low": interval.ci_low,
        f"{key}.ci_high": interval.ci_high,
        f"{key}.threshold": criterion.threshold,
        f"{key}.pass": int(passed),
        f"{key}.robust_pass": int(robust),
        f"{key}.evaluated": 1,
        f"{key}.candidate_value": interval.candidate,
        f"{key}.reference_value": interval.reference,
        f"{key}.candidate_seed_sd": interval.candidate_seed_sd,
        f"{key}.reference_seed_sd": interval.reference_seed_sd,
        f"{key}.noise_sd": noise,
        f"{key}.noise_measured": int(noise is not None),
        f"{key}.within_noise": int(within_noise),
        f"{key}.n_seeds_candidate": interval.n_seeds_candidate,
        f"{key}.n_seeds_reference": interval.n_seeds_reference,
    }


def gate_record(cfg: GateConfig, intervals: dict[tuple[str, str], dict[str, Interval] | None],
                sizes: dict[tuple[str, str], dict[str, int]], mean_over: dict[str, str] | None = None
                ) -> dict[str, Any]:
    """The whole flat record. `intervals[(candidate, scheme)]` is None when that run is absent; `sizes`
    holds n_essays / n_prompts per evaluated pair; `mean_over[scheme]` says whether mean QWK is over `folds`
    or `prompts` there."""
    record: dict[str, Any] = {
        "reference": cfg.reference,
        "bootstrap.n_resamples": cfg.n_resamples,
        "bootstrap.confidence": cfg.confidence,
        "bootstrap.seed": cfg.seed,
        "bootstrap.unit": "prompt, then each arm's seeds (two-level)",
        "estimate": "mean over seeds of each seed's metric; the fold-level spread is in metrics/arms",
        **{f"mean_qwk_over.{scheme}": over for scheme, over in (mean_over or {}).items()},
    }
    for candidate in cfg.candidates:
        flags = []
        for scheme in cfg.criteria_schemes:
            pair = intervals.get((candidate, scheme))
            record[f"{candidate}.{scheme}.run"] = int(pair is not None)
            for name, value in sizes.get((candidate, scheme), {}).items():
                record[f"{candidate}.{scheme}.{name}"] = value
            for criterion in (c for c in cfg.criteria if c.scheme == scheme):
                rec = criterion_record(candidate, criterion, None if pair is None else pair[criterion.metric])
                record.update(rec)
                key = criterion.key(candidate)
                flags.append((rec[f"{key}.evaluated"], rec[f"{key}.pass"], rec[f"{key}.robust_pass"]))
        evaluated = all(e for e, _, _ in flags)
        record[f"{candidate}.n_criteria"] = len(flags)
        record[f"{candidate}.n_evaluated"] = sum(e for e, _, _ in flags)
        record[f"{candidate}.n_pass"] = sum(p for _, p, _ in flags)
        record[f"{candidate}.evaluated"] = int(evaluated)
        record[f"{candidate}.pass"] = int(evaluated and all(p for _, p, _ in flags))
        record[f"{candidate}.robust_pass"] = int(evaluated and all(r for _, _, r in flags))
    return record


def criteria_in(gate: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Per candidate, the (scheme, metric) pairs a gate record holds, in record order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for key in gate:
        parts = key.split(".")
        if len(parts) == 4 and parts[3] == "evaluated":
            out.setdefault(parts[0], []).append((parts[1], parts[2]))
    for key in gate:
        parts = key.split(".")
        if len(parts) == 2 and parts[1] == "evaluated":
            out.setdefault(parts[0], [])
    return out


def deltas_table(gate: dict[str, Any]) -> pd.DataFrame:
    """One row per evaluated criterion (plot data for `dvc plots` and the report's figure)."""
    rows = []
    for candidate, pairs in criteria_in(gate).items():
        for scheme, metric in pairs:
            key = f"{candidate}.{scheme}.{metric}"
            if not gate.get(f"{key}.evaluated"):
                continue
            rows.append({"criterion": f"{candidate} · {scheme} · {metric}", "arm": candidate, "scheme": scheme,
                         "metric": metric, **{f: gate.get(f"{key}.{f}") for f in FIELDS if f != "evaluated"}})
    columns = ["criterion", "arm", "scheme", "metric", *(f for f in FIELDS if f != "evaluated")]
    return pd.DataFrame(rows, columns=columns)
