"""Read `params.yaml` (DVC's parameter file) once per stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from stages.lib.core.errors import InputError
from stages.lib.core.params import validate_params

PARAMS_ENV = "AES_PARAMS"
_SOURCES: dict[int, tuple[dict[str, Any], str]] = {}  # id(params) -> (params, the file it was read from)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping fails instead of the last one winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Load the parameter file (default `params.yaml`, or `$AES_PARAMS` outside DVC) and check it against the
    schema (`stages.lib.core.params`); the first mistake fails in one line naming the file and the key. Under
    `dvc repro` (`$DVC_STAGE` set) `$AES_PARAMS` is refused: DVC hashes params.yaml, whatever a stage reads."""
    params_path = Path(path or os.environ.get(PARAMS_ENV, "params.yaml"))
    if path is None and os.environ.get(PARAMS_ENV) and os.environ.get("DVC_STAGE"):
        raise InputError(f"${PARAMS_ENV}={os.environ[PARAMS_ENV]} is set, but under `dvc repro` (stage "
                         f"{os.environ['DVC_STAGE']}) DVC tracks params.yaml: unset ${PARAMS_ENV}, or copy the "
                         "profile to params.yaml")
    if not params_path.is_file():
        raise InputError(f"{params_path}: parameter file not found")
    try:
        with params_path.open(encoding="utf-8") as fh:
            params = yaml.load(fh, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(" ".join(f"{params_path}: not valid YAML ({exc})".split())) from exc
    return remember_source(validate_params(params, str(params_path)), str(params_path))


def remember_source(params: dict[str, Any], source: str) -> dict[str, Any]:
    """Record where `params` came from, for error messages (`params_source`); returns `params`."""
    _SOURCES[id(params)] = (params, source)
    while len(_SOURCES) > 64:
        del _SOURCES[next(iter(_SOURCES))]
    return params


def params_source(params: dict[str, Any] | None = None, fallback: str | None = None) -> str:
    """The file `params` was read from; for a mapping `load_params` did not return, `fallback` or else the
    file `load_params()` would read (`$AES_PARAMS` or params.yaml)."""
    known = _SOURCES.get(id(params)) if params is not None else None
    if known is not None and known[0] is params:
        return known[1]
    return fallback or os.environ.get(PARAMS_ENV, "params.yaml")


def section(params: dict[str, Any], *keys: str) -> Any:
    """Return `params[k1][k2]...`, raising an `InputError` that names the missing key."""
    node: Any = params
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise InputError(f"{params_source(params)}: missing key {'.'.join(keys[: depth + 1])}")
        node = node[key]
    return node


def arm_seeds(params: dict[str, Any], arm: str) -> list[int]:
    """The training seeds of an arm, in run order: `seeds.xgb` for the reference, `seeds.finetune` for the
    transformer arms."""
    seeds = section(params, "seeds")
    key = arm if arm in seeds else "finetune"
    return [int(s) for s in section(params, "seeds", key)]


def final_seed(params: dict[str, Any], arm: str) -> int:
    """The seed an arm's final model is fitted with: the first of its training seeds, the seed of its first
    cross-validation run."""
    return arm_seeds(params, arm)[0]
