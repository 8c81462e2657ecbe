"""The review's four checklist items, each ticked only when the stage outputs it rests on exist and are
valid, and cited by the producing stage's name and output hash from `dvc.lock`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.lib.core.errors import InputError
from stages.lib.core.hashing import file_digest
from stages.lib.core.paths import ADR, GATE, metrics_path, predictions_path, residuals_path, training_path
from stages.lib.gate.criteria import GateConfig
from stages.lib.gate.evidence import LockedOutput
from stages.lib.scoring.training_record import parse_record

ITEMS = (
    "A baseline fine-tuning run completed with prompt-holdout CV and residual diagnostics.",
    "An invariance variant run completed on the same splits with comparable artifacts.",
    "Worst-prompt slices and mean QWK reviewed against the current XGBoost baseline.",
    "A recommendation recorded (accept or defer) in a decision record.",
)


@dataclass(frozen=True)
class ChecklistItem:
    number: int
    text: str
    done: bool
    evidence: tuple[str, ...] = ()  # one line per output: stage, path, md5
    note: str = ""  # what is missing when not done

    @property
    def box(self) -> str:
        return "[x]" if self.done else "[ ]"


@dataclass
class Citation:
    """Cites outputs by the stage that produced them, per `dvc.lock`."""

    lock: dict[str, LockedOutput]
    lines: list[str] = field(default_factory=list)

    def cite(self, path: Path) -> None:
        entry = self.lock.get(path.as_posix())
        if entry is None:
            self.lines.append(f"`{path}` — not in dvc.lock (not yet produced by `dvc repro`)")
            return
        stale = "" if entry.md5.endswith(".dir") or not path.is_file() or file_digest(path, "md5") == entry.md5 else \
            " — workspace file differs from dvc.lock"
        self.lines.append(f"stage `{entry.stage}` → `{path}` md5 `{entry.md5}`{stale}")


def run_complete(arm: str, scheme: str, gate: dict[str, Any], runs: dict[int, dict[str, Any] | None]) -> list[str]:
    """What is missing for a run to count as completed with comparable artifacts (empty when complete):
    predictions validated and aligned with the reference by compare, evaluate's metrics and residual
    diagnostics, and for every training seed a record whose NaN/inf checks cover every fold."""
    missing = []
    if not gate.get(f"{arm}.{scheme}.run"):
        missing.append("no predictions on the reference's essays and splits")
    if not metrics_path(arm, scheme).is_file():
        missing.append(f"no {metrics_path(arm, scheme)}")
    if not residuals_path(arm, scheme).is_file():
        missing.append(f"no {residuals_path(arm, scheme)}")
    for seed, training in runs.items():
        if training is None:
            missing.append(f"no {training_path(arm, scheme, seed)}")
            continue
        try:
            missing += [f"seed {seed}: training metrics not shown finite: {p}"
                        for p in parse_record(training).finite_problems()]
        except InputError as exc:
            missing.append(f"seed {seed}: training record invalid ({exc})")
    return missing


def _run_paths(arm: str, scheme: str, seeds: list[int]) -> list[Path]:
    return [*(predictions_path(arm, scheme, s) for s in seeds), *(training_path(arm, scheme, s) for s in seeds),
            metrics_path(arm, scheme), residuals_path(arm, scheme)]


def build_checklist(cfg: GateConfig, gate: dict[str, Any], training: dict[str, dict[int, dict[str, Any] | None]],
                    lock: dict[str, LockedOutput]) -> list[ChecklistItem]:
    """The four items, from the compare record, the training metadata and the files on disk."""
    primary = cfg.criteria_schemes[0]  # the review's primary scheme comes first
    items = []

    runs = training.get(f"{cfg.baseline}_{primary}") or {}
    missing = run_complete(cfg.baseline, primary, gate, runs)
    cite = Citation(lock)
    for path in _run_paths(cfg.baseline, primary, list(runs)):
        cite.cite(path)
    items.append(ChecklistItem(1, ITEMS[0], not missing, tuple(cite.lines) if not missing else (),
                               "" if not missing else f"{cfg.baseline}/{primary}: {'; '.join(missing)}"))

    variants = [a for a in cfg.candidates if a != cfg.baseline]
    done, notes, cite = [], [], Citation(lock)
    for arm in variants:
        runs = training.get(f"{arm}_{primary}") or {}
        missing = run_complete(arm, primary, gate, runs)
        if missing:
            notes.append(f"{arm}/{primary}: {'; '.join(missing)}")
            continue
        done.append(arm)
        for path in _run_paths(arm, primary, list(runs)):
            cite.cite(path)
    items.append(ChecklistItem(2, ITEMS[1], bool(done), tuple(cite.lines), "" if done else "; ".join(notes)))

    reviewed = [a for a in cfg.candidates
                if all(gate.get(f"{a}.{primary}.{m}.evaluated") for m in ("worst_prompt_qwk", "mean_qwk"))]
    cite = Citation(lock)
    for path in (GATE, metrics_path(cfg.reference, primary)):
        cite.cite(path)
    items.append(ChecklistItem(3, ITEMS[2], bool(reviewed) and metrics_path(cfg.reference, primary).is_file(),
                               tuple(cite.lines) if reviewed else (),
                               "" if reviewed else f"no candidate compared with {cfg.reference} under {primary}"))

    items.append(ChecklistItem(4, ITEMS[3], True, (
        f"stage `decide` → `{ADR}` (this record; its hash enters dvc.lock when `dvc repro` finishes)",)))
    return items
