"""The speed settings a machine can actually run. Preflight tries the budget's configured settings first and,
when the canary fails or gives non-finite values, falls back one rung at a time (eager attention, then the
unfused optimizer, then no loader workers, then no compile); `metrics/preflight.json` records every attempt and
the settings used, and every training run takes the used settings from there (`proven_budget`), so its log
says what ran. Speed settings never change what is learned (up to floating-point rounding)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stages.lib.core.errors import InputError
from stages.lib.core.io import read_json_object
from stages.lib.core.params import Budget, Speed

# each rung switches off one more optional speed-up, in the order the riskiest CUDA paths fail
FALLBACKS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("eager attention", {"attention": "eager"}),
    ("unfused optimizer", {"fused_optimizer": False}),
    ("no loader workers", {"loader_workers": 0, "pin_memory": False}),
    ("no compile", {"compile": False}),
)


def speed_ladder(configured: Speed) -> list[tuple[str, Speed]]:
    """The configured settings, then each fallback rung that changes something (cumulative)."""
    rungs = [("configured", configured)]
    for name, change in FALLBACKS:
        fallback = rungs[-1][1].model_copy(update=change)
        if fallback != rungs[-1][1]:
            rungs.append((name, fallback))
    return rungs


def first_working(configured: Speed, attempt: Callable[[Speed], dict[str, Any]]
                  ) -> tuple[Speed, dict[str, Any], list[dict[str, Any]]]:
    """Run `attempt` (the canary) on each rung until one returns; returns the settings used, that rung's result
    and the record of every attempt. Raises `InputError` listing each rung's failure when none works."""
    attempts: list[dict[str, Any]] = []
    for name, settings in speed_ladder(configured):
        try:
            result = attempt(settings)
        except Exception as exc:  # a failing kernel, compiler or loader worker is what a rung tests
            reason = (str(exc).strip().splitlines() or [""])[0][:300]
            attempts.append({"rung": name, "speed": settings.model_dump(), "passed": False,
                             "error": f"{type(exc).__name__}: {reason}"})
            continue
        attempts.append({"rung": name, "speed": settings.model_dump(), "passed": True})
        return settings, result, attempts
    failures = "; ".join(f"{a['rung']}: {a['error']}" for a in attempts)
    raise InputError(f"preflight: the canary failed with every speed setting ({failures})")


def speed_record(configured: Speed, used: Speed, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """What preflight.json says of the speed settings."""
    return {"configured": configured.model_dump(), "used": used.model_dump(), "fell_back": used != configured,
            "attempts": attempts}


def proven_budget(budget: Budget, preflight: Path) -> Budget:
    """`budget` with the speed settings `preflight` (metrics/preflight.json) proved on this machine; fails when
    that record is for another budget or other configured settings (run the preflight stage again)."""
    record = read_json_object(preflight, "preflight")
    speed = record.get("speed")
    if record.get("budget") != budget.name or not isinstance(speed, dict):
        raise InputError(f"{preflight}: written for budget {record.get('budget')!r} without a speed record; run "
                         f"the preflight stage for budget {budget.name!r}")
    if speed.get("configured") != budget.speed.model_dump():
        raise InputError(f"{preflight}: checked speed settings {speed.get('configured')} but the params now say "
                         f"{budget.speed.model_dump()}; run the preflight stage again")
    try:
        used = Speed.model_validate(speed["used"])
    except (KeyError, ValueError) as exc:
        raise InputError(f"{preflight}: speed.used is not a speed record ({' '.join(str(exc).split())}); run the "
                         "preflight stage again") from None
    return budget.model_copy(update={"speed": used})
