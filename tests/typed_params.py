"""Typed params for tests: a raw mapping checked as a stage would get it, and a changed copy of loaded params."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from stages.lib.core.params import Params, validate_params


def typed(raw: dict[str, Any], source: str = "test params") -> Params:
    """`raw` (a params.yaml mapping) as `load_params` returns it."""
    return validate_params(copy.deepcopy(raw), source)


def edited(params: Params, change: Callable[[dict[str, Any]], Any]) -> Params:
    """A copy of `params` with `change` applied to its mapping, checked again (so a test sees what a stage would)."""
    raw = params.model_dump()
    change(raw)
    return validate_params(raw, params.source)
