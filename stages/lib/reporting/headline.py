"""The first screen: a flat headline record (`metrics/headline.json`, readable in `dvc exp show` and
`dvc metrics diff`) and a short plain-text summary of it (`reports/summary.txt`), from decide's verdict and
evaluate's metrics. Nothing is computed here but the selection of numbers already in those files.

Every key starts with `headline.`: DVC names a column by its bare key only when no other metrics file has
that key (decision.json also has `verdict`), so the prefix keeps `dvc exp show --keep 'headline'` exact."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from stages.lib.core.formatting import num

PER_RUN = (("mean_qwk", ("qwk", "mean")), ("sd_qwk", ("qwk", "std")), ("worst_prompt_qwk", ("worst_prompt_qwk",)),
           ("low_tail_adjacent", ("tails", "low_adjacent")), ("high_tail_adjacent", ("tails", "high_adjacent")),
           ("n_seeds", ("n_seeds",)), ("seed_sd_mean_qwk", ("seed_sd", "qwk", "mean")),
           ("seed_sd_worst_prompt_qwk", ("seed_sd", "worst_prompt_qwk")))
PREFIX = "headline."
MAX_REASONS = 4
WIDTH = 118


def _get(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        record = record.get(key) if isinstance(record, dict) else None
    return record


def headline(decision: dict[str, Any], arm_metrics: dict[str, dict[str, Any] | None],
             runs: list[tuple[str, str]]) -> dict[str, Any]:
    """Flat keys `headline.<name>`: `verdict`, `accept`, `gate_valid`, `chosen_arm`, then `<arm>.<scheme>.<stat>`
    for every run present (`PER_RUN`: seed means of the mean and SD of QWK over folds, worst-prompt QWK and
    low/high-tail adjacent accuracy; the number of training seeds and the SD over seeds of mean and worst-prompt
    QWK)."""
    record: dict[str, Any] = {
        "verdict": str(decision.get("verdict", "not decided")),
        "accept": int(bool(decision.get("accept"))),
        "gate_valid": int(bool(decision.get("gate_valid"))),
        "chosen_arm": str(decision.get("chosen_arm") or ""),
    }
    for arm, scheme in runs:
        metrics = arm_metrics[f"{arm}_{scheme}"] or {}
        for name, keys in PER_RUN:
            record[f"{arm}.{scheme}.{name}"] = _get(metrics, keys)
    return {PREFIX + key: value for key, value in record.items()}


def _line(text: str) -> str:
    return text if len(text) <= WIDTH else text[:WIDTH - 1] + "…"


def _wrap(text: str, lines: int = 2) -> list[str]:
    """`text` in at most `lines` lines of `WIDTH`, continuation indented."""
    return textwrap.wrap(text, WIDTH, subsequent_indent="  ", max_lines=lines, placeholder=" …")


def summary_text(record: dict[str, Any], runs: list[tuple[str, str]], not_run: list[str], reasons: list[str],
                 report: Path, adr: Path, definitions: str) -> str:
    """At most ~25 lines: the verdict, one row per run from `record` (see `headline`), what has not run, the
    first reasons and where the report and the decision record are."""
    record = {key.removeprefix(PREFIX): value for key, value in record.items()}
    chosen = record["chosen_arm"] or "none"
    lines = [f"Verdict: {record['verdict'].upper()}  (gate-valid evidence: {'yes' if record['gate_valid'] else 'no'}; "
             f"chosen arm: {chosen})", *_wrap(definitions), "",
             f"{'arm':<12} {'scheme':<16} {'QWK mean ± SD':<15} {'worst prompt':>12} {'low tail':>9} {'high tail':>9} "
             f"{'seeds':>5} {'seed SD: QWK / worst':>21}"]
    for arm, scheme in runs:
        value = {name: num(record[f"{arm}.{scheme}.{name}"]) for name, _ in PER_RUN}
        qwk = f"{value['mean_qwk']} ± {value['sd_qwk']}"
        seeds = record[f"{arm}.{scheme}.n_seeds"] or 1
        noise = (f"{value['seed_sd_mean_qwk']} / {value['seed_sd_worst_prompt_qwk']}" if seeds > 1
                 else "unmeasured")
        lines.append(f"{arm:<12} {scheme:<16} {qwk:<15} {value['worst_prompt_qwk']:>12} "
                     f"{value['low_tail_adjacent']:>9} {value['high_tail_adjacent']:>9} {seeds:>5} {noise:>21}")
    if not_run:
        lines += _wrap("Not run: " + ", ".join(not_run))
    if reasons:
        lines += ["Why:", *(_line(f"  - {r}") for r in reasons[:MAX_REASONS])]
        if len(reasons) > MAX_REASONS:
            lines.append(f"  (+{len(reasons) - MAX_REASONS} more in the decision record)")
    lines += ["", f"Report: {report}", f"Decision record: {adr}"]
    return "\n".join(lines) + "\n"
