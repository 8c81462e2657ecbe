"""Metrics over training seeds: each seed's evaluation summary, combined into the mean over seeds (the
estimate the gate uses) and the SD over seeds (training noise: same data, folds and settings)."""

from __future__ import annotations

from typing import Any

import numpy as np

ESTIMATE = ("mean over training seeds of each seed's metric (each seed's own mean over folds, pooled, worst-prompt "
            "and tail values); `seed_sd` is the SD over seeds (training noise, null with one seed); the gate "
            "compares these seed means")


def combine_seeds(summaries: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(mean, sd) trees over seeds' summaries of the same shape. Leaves equal in every seed are kept as they
    are; numbers are averaged (lists element-wise); other leaves (e.g. the worst prompts' names) keep the
    first seed's value. The SD tree holds the float leaves only, None with one seed."""
    if not summaries:
        raise ValueError("combine_seeds: no summaries")
    return _mean(summaries), _sd(summaries)


def seed_sd(values: Any) -> float | None:
    """Sample SD over seeds (ddof 1); None (training noise unmeasured) with fewer than two."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mean(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, dict):
        return {k: _mean([v.get(k) for v in values]) for k in first}
    if all(v == first for v in values):
        return first
    if isinstance(first, list) and all(isinstance(v, list) and len(v) == len(first) for v in values):
        return [_mean([v[i] for v in values]) for i in range(len(first))]
    present = [v for v in values if _is_number(v)]
    if present and len(present) == len([v for v in values if v is not None]):
        return float(np.mean(present))
    return first


def _sd(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, dict):
        out = {k: _sd([v.get(k) for v in values]) for k in first}
        return {k: v for k, v in out.items() if v != {} and v is not _SKIP}
    if isinstance(first, list) and first and all(isinstance(v, list) and len(v) == len(first) for v in values):
        items = [_sd([v[i] for v in values]) for i in range(len(first))]
        return _SKIP if all(i is _SKIP for i in items) else items
    if isinstance(first, float) or (_is_number(first) and any(isinstance(v, float) for v in values)):
        return seed_sd([float(v) for v in values if _is_number(v)])
    return _SKIP


_SKIP = object()
