"""Read `params.yaml` (DVC's parameter file) once per stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from stages.lib.core.errors import InputError

PARAMS_ENV = "AES_PARAMS"


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Load the parameter file (default `params.yaml`, or `$AES_PARAMS`)."""
    params_path = Path(path or os.environ.get(PARAMS_ENV, "params.yaml"))
    if not params_path.is_file():
        raise InputError(f"{params_path}: parameter file not found")
    with params_path.open(encoding="utf-8") as fh:
        params = yaml.safe_load(fh)
    if not isinstance(params, dict):
        raise InputError(f"{params_path}: expected a mapping at the top level")
    return params


def section(params: dict[str, Any], *keys: str) -> Any:
    """Return `params[k1][k2]...`, raising an `InputError` that names the missing key."""
    node: Any = params
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise InputError(f"params.yaml: missing key {'.'.join(keys[: depth + 1])}")
        node = node[key]
    return node
