"""Read `params.yaml` (DVC's parameter file) once per stage."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from stages.lib.core.errors import InputError
from stages.lib.core.params import Params, validate_params

PARAMS_ENV = "AES_PARAMS"


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


def load_params(path: str | Path | None = None) -> Params:
    """Load the parameter file (default `params.yaml`, or `$AES_PARAMS` outside DVC) as the frozen, typed `Params`
    (`.source` names the file); the first mistake fails in one line naming the file and the key. Under
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
            raw = yaml.load(fh, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(" ".join(f"{params_path}: not valid YAML ({exc})".split())) from exc
    return validate_params(raw, str(params_path))


def select_budget(params: Params, budget: str, overrides: Iterable[str] = (), *,
                  arms: Iterable[str] | None = None, schemes: Iterable[str] | None = None,
                  seeds: Iterable[int] | None = None) -> Params:
    """`params` selecting `budget`, as `dvc exp run -S finetune.budget=…` would, with `KEY=VALUE` overrides (YAML
    values, dotted keys) applied to that budget and, when given, other arms or schemes. The transformer seeds become
    `seeds` when given, else the budget profile's own `seeds`. An unknown key fails naming it; the result is checked
    against the schema like a parameter file, its source naming the overrides."""
    overrides = list(overrides)
    raw = params.model_dump()
    finetune = raw["finetune"]
    if budget not in finetune["budgets"]:
        raise InputError(f"{params.source}: finetune.budgets.{budget} not found "
                         f"(expected one of {sorted(finetune['budgets'])})")
    finetune["budget"] = budget
    block = finetune["budgets"][budget]
    for item in overrides:
        key, sep, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = block
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not sep or not isinstance(node, dict) or leaf not in node:
            raise InputError(f"override {item!r}: finetune.budgets.{budget} has no such key (expected KEY=VALUE)")
        node[leaf] = yaml.safe_load(value)
    if arms is not None:
        finetune["arms"] = list(arms)
    if schemes is not None:
        finetune["schemes"] = list(schemes)
    raw["seeds"]["finetune"] = list(seeds) if seeds is not None else list(block["seeds"])
    source = f"{params.source} with {' '.join(overrides)}" if overrides else params.source
    return validate_params(raw, source)
