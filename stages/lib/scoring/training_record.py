"""The training record `metrics/training/<arm>_<scheme>.json`: one contract for every arm. `build_record` is
the only writer (the `xgb` and `collect` stages), `parse_record` the only reader (the gate's decision rule,
checklist and decision record), so a field the gate checks is a field some stage actually writes.

Finiteness is evidence, not a flag: each fold lists the NaN/inf checks its run performed (`finite_checks`:
quantity → values checked; a failed check stops the run, so a finished fold's counts are checks that passed)
and the training steps it ran; `FoldRecord.finite_problems` says where that coverage falls short."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stages.lib.core.errors import InputError

LOSS, PREDICTION = "training loss", "prediction"  # the checks every fold needs (a loss per step if it has steps)


@dataclass(frozen=True)
class FoldRecord:
    """What one fold's run did: how long, where, in which precision, under which settings, and which values it
    checked for NaN/inf."""

    fold: int
    seconds: float
    device: str
    precision: str
    steps: int  # training steps run (micro-batches); 0 for an arm without a gradient loop (XGBoost)
    essays_scored: int  # validation essays predicted
    finite_checks: dict[str, int]  # quantity -> values checked (losses, gradient norms: one per step; predictions:
    #                                one per essay)
    settings: dict[str, Any]  # the settings the fold trained under (identical across folds)
    details: dict[str, Any] = field(default_factory=dict)  # arm-specific facts (cutpoints, final loss, …)

    def finite_problems(self) -> list[str]:
        """Why this fold's finiteness is not established by its checks (empty when it is)."""
        checks = self.finite_checks
        if not any(checks.values()):
            return [f"fold {self.fold}: no finite checks recorded"]
        problems = []
        if self.steps and checks.get(LOSS, 0) < self.steps:
            problems.append(f"fold {self.fold}: {LOSS} checked at {checks.get(LOSS, 0)} of {self.steps} steps")
        if checks.get(PREDICTION, 0) < self.essays_scored:
            problems.append(f"fold {self.fold}: {checks.get(PREDICTION, 0)} of {self.essays_scored} validation "
                            "predictions checked")
        return problems


@dataclass(frozen=True)
class TrainingRecord:
    """One arm × scheme's training evidence: arm-level settings shared by every fold, and the folds."""

    arm: str
    scheme: str
    budget: str
    gate_valid: bool  # the budget is one whose evidence the gate may accept
    backbone: str
    device: str
    precision: str
    seed: int
    complete: bool  # every configured fold is present
    n_essays: int
    folds: tuple[FoldRecord, ...]
    details: dict[str, Any] = field(default_factory=dict)  # arm-level facts (truncation coverage, leakage, …)
    run: dict[str, Any] = field(default_factory=dict)  # `stages.lib.core.runinfo.run_info`

    @property
    def fold_ids(self) -> list[int]:
        return [f.fold for f in self.folds]

    def finite_problems(self) -> list[str]:
        """Every fold's shortfall in finite checks (empty when every fold's checks cover its run)."""
        if not self.folds:
            return ["no folds recorded"]
        return [p for f in self.folds for p in f.finite_problems()]

    @property
    def finite(self) -> bool:
        return not self.finite_problems()

    def finite_summary(self) -> str:
        """e.g. `5/5 folds checked (160 training loss, 2310 prediction)`."""
        ok = sum(not f.finite_problems() for f in self.folds)
        totals: dict[str, int] = {}
        for f in self.folds:
            for name, n in f.finite_checks.items():
                totals[name] = totals.get(name, 0) + int(n)
        return f"{ok}/{len(self.folds)} folds checked (" + ", ".join(f"{n} {k}" for k, n in totals.items()) + ")"

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["folds"] = [asdict(f) for f in self.folds]
        return record


def build_record(*, arm: str, scheme: str, budget: str, gate_valid: bool, backbone: str, seed: int,
                 folds: list[FoldRecord], expected_folds: list[int], n_essays: int,
                 details: dict[str, Any] | None = None, run: dict[str, Any] | None = None) -> TrainingRecord:
    """The record of one arm × scheme. Device, precision and settings must be the same in every fold (folds
    trained under different settings are not one run: fail, naming the fold)."""
    if not folds:
        raise InputError(f"{arm}/{scheme}: no folds to record")
    first = folds[0]
    for fold in folds[1:]:
        for key in ("device", "precision", "settings"):
            if getattr(fold, key) != getattr(first, key):
                raise InputError(f"{arm}/{scheme}: fold {fold.fold} has {key} {getattr(fold, key)!r} but fold "
                                 f"{first.fold} has {getattr(first, key)!r}; rerun every fold under one setting")
    return TrainingRecord(
        arm=arm, scheme=scheme, budget=budget, gate_valid=bool(gate_valid), backbone=backbone, device=first.device,
        precision=first.precision, seed=int(seed), complete=sorted(f.fold for f in folds) == sorted(expected_folds),
        n_essays=int(n_essays), folds=tuple(folds), details=dict(details or {}), run=dict(run or {}))


_ARM_FIELDS = {"arm": str, "scheme": str, "budget": str, "gate_valid": bool, "backbone": str, "device": str,
               "precision": str, "seed": int, "complete": bool, "n_essays": int, "folds": list}
_FOLD_FIELDS = {"fold": int, "seconds": float, "device": str, "precision": str, "steps": int, "essays_scored": int,
                "finite_checks": dict, "settings": dict}


def _check(raw: dict[str, Any], fields: dict[str, type], where: str) -> None:
    for key, kind in fields.items():
        if key not in raw:
            raise InputError(f"{where}: missing {key!r}")
        value = raw[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) if kind is float else \
            isinstance(value, int) and not isinstance(value, bool) if kind is int else isinstance(value, kind)
        if not ok:
            raise InputError(f"{where}: {key!r} is {value!r}, expected {kind.__name__}")


def parse_record(raw: dict[str, Any], where: str = "training record") -> TrainingRecord:
    """The typed record from its JSON object; an `InputError` naming the first missing or mistyped field."""
    _check(raw, _ARM_FIELDS, where)
    folds = []
    for i, entry in enumerate(raw["folds"]):
        if not isinstance(entry, dict):
            raise InputError(f"{where}: folds[{i}] is {entry!r}, expected a per-fold record")
        _check(entry, _FOLD_FIELDS, f"{where}: folds[{i}]")
        checks = entry["finite_checks"]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in checks.values()):
            raise InputError(f"{where}: folds[{i}].finite_checks must count checks ({checks!r})")
        folds.append(FoldRecord(**{k: entry[k] for k in (*_FOLD_FIELDS, "details") if k in entry}))
    return TrainingRecord(**{k: raw[k] for k in (*_ARM_FIELDS, "details", "run") if k in raw and k != "folds"},
                          folds=tuple(folds))
