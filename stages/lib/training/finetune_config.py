"""The `finetune` section of params.yaml: the selected budget and the arms' own hyperparameters,
checked once (unknown or missing keys fail with the key's name)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import yaml

from stages.lib.core.config import params_source, remember_source, section
from stages.lib.core.errors import InputError
from stages.lib.core.params import ARMS, SCHEMES, validate_params

OBJECTIVE_KEYS = {"lora": (), "adversarial": ("lambda_max", "head_lr", "hidden"), "groupdro": ("eta",)}


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (`enabled: false` means a full fine-tune); `layers: null` adapts every layer."""

    enabled: bool
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]
    layers: tuple[int, ...] | None


@dataclass(frozen=True)
class SpeedSettings:
    """How fast a run executes, never what it learns (up to floating-point rounding)."""

    attention: str  # sdpa (PyTorch scaled-dot-product kernels) | eager (the backbone's own matmul + softmax)
    compile: bool  # torch.compile the encoder (dynamic shapes)
    fused_optimizer: bool  # fused AdamW kernel on CUDA (ignored on the CPU)
    finite_check_every: int  # micro-batches between host reads of the non-finite flags (1 = every micro-batch)
    loader_workers: int  # DataLoader worker processes collating batches beside the compute (0 = in the loop)
    pin_memory: bool  # page-locked host batches, copied to the GPU asynchronously (ignored on the CPU)


@dataclass(frozen=True)
class Budget:
    """One compute profile (`cpu` or `gpu`): backbone, windows, optimisation and precision."""

    name: str
    gate_valid: bool
    seeds: tuple[int, ...]  # the profile's transformer training seeds (params `seeds.finetune` includes them)
    device: str  # auto | cpu | cuda
    threads: int | None
    backbone: str
    max_length: int
    stride: int
    epochs: int
    max_train_essays: int | None
    holdout_fraction: float
    max_holdout_essays: int | None
    lr: float
    head_lr: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    batch_size: int
    effective_batch: int
    eval_batch_size: int
    gradient_checkpointing: bool
    precision: str
    head_dropout: float
    encoder_dropout: float | None  # None keeps the backbone's own dropout
    head_init: str  # ridge (linear probe first, LP-FT) | random
    calibration: str
    lora: LoraSettings
    speed: SpeedSettings

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per optimizer step, so that batch_size × steps = effective_batch."""
        return self.effective_batch // self.batch_size


@dataclass(frozen=True)
class FinetuneConfig:
    budget: Budget
    arms: tuple[str, ...]
    schemes: tuple[str, ...]
    folds: tuple[int, ...]
    objectives: Mapping[str, dict[str, float]]  # per arm: its own hyperparameters (lora has none)


class ArmObjectives(Mapping):
    """Each arm's objective hyperparameters (`finetune.objectives.<arm>`), read and checked when an arm's are asked
    for, so that a run reads only its own arm's settings (the ones its DVC stage declares)."""

    def __init__(self, objectives: dict[str, Any], src: str):
        self._objectives, self._src = objectives, src

    def __getitem__(self, arm: str) -> dict[str, float]:
        if arm not in OBJECTIVE_KEYS:
            raise KeyError(arm)
        return _numbers(self._objectives, arm, OBJECTIVE_KEYS[arm], self._src)

    def __iter__(self) -> Iterator[str]:
        return iter(OBJECTIVE_KEYS)

    def __len__(self) -> int:
        return len(OBJECTIVE_KEYS)


def finetune_config(params: dict[str, Any]) -> FinetuneConfig:
    """Parse and check `params['finetune']` for the budget it selects; errors name the file `params` came from."""
    src = params_source(params)
    name = section(params, "finetune", "budget")
    budgets = section(params, "finetune", "budgets")
    if name not in budgets:
        raise InputError(f"{src}: finetune.budget {name!r} is not one of finetune.budgets {sorted(budgets)}")
    raw = dict(budgets[name])
    lora_raw = raw.pop("lora", None)
    if isinstance(lora_raw, dict):
        layers = lora_raw.get("layers")
        lora_raw = {**lora_raw, "target_modules": tuple(lora_raw.get("target_modules") or ()),
                    "layers": None if layers is None else tuple(int(i) for i in layers)}
    lora = _build(LoraSettings, lora_raw, f"{src}: finetune.budgets.{name}.lora")
    speed = _build(SpeedSettings, raw.pop("speed", None), f"{src}: finetune.budgets.{name}.speed")
    if isinstance(raw.get("seeds"), list):
        raw["seeds"] = tuple(int(seed) for seed in raw["seeds"])
    budget = _build(Budget, {**raw, "name": name, "lora": lora, "speed": speed}, f"{src}: finetune.budgets.{name}")
    _check_budget(budget, src)
    arms = tuple(section(params, "finetune", "arms"))
    schemes = tuple(section(params, "finetune", "schemes"))
    for key, values, allowed in (("arms", arms, ARMS), ("schemes", schemes, SCHEMES)):
        unknown = sorted(set(values) - set(allowed))
        if unknown or not values:
            raise InputError(f"{src}: finetune.{key} {list(values)}: "
                             f"expected a non-empty subset of {list(allowed)}")
    return FinetuneConfig(
        budget=budget,
        arms=arms,
        schemes=schemes,
        folds=tuple(int(k) for k in section(params, "finetune", "folds")),
        objectives=ArmObjectives(section(params, "finetune", "objectives"), src),
    )


def select_budget(params: dict[str, Any], budget: str, overrides: Iterable[str] = (), *,
                  arms: Iterable[str] | None = None, schemes: Iterable[str] | None = None,
                  seeds: Iterable[int] | None = None) -> dict[str, Any]:
    """A copy of `params` selecting `budget`, as `dvc exp run -S finetune.budget=…` would, with `KEY=VALUE`
    overrides (YAML values, dotted keys) applied to that budget and, when given, other arms or schemes. The
    transformer seeds become `seeds` when given, else the budget profile's own `seeds`.
    An unknown key fails naming it; the result is checked against the params schema (one line per mistake)."""
    overrides = list(overrides)
    base = params_source(params, fallback="params.yaml")
    params = copy.deepcopy(params)
    finetune = params.setdefault("finetune", {})
    finetune["budget"] = budget
    block = finetune.get("budgets", {}).get(budget)
    if not isinstance(block, dict):
        raise InputError(f"params: finetune.budgets.{budget} not found")
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
    params.setdefault("seeds", {})["finetune"] = list(seeds) if seeds is not None else list(block.get("seeds") or [])
    source = f"{base} with {' '.join(overrides)}" if overrides else base
    return remember_source(validate_params(params, source), source)


def _build(kind: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise InputError(f"{where} must be a mapping")
    names = [f.name for f in fields(kind)]
    missing = [n for n in names if n not in raw]
    unknown = sorted(set(raw) - set(names))
    if missing or unknown:
        raise InputError(f"{where}: missing key(s) {missing}, unknown key(s) {unknown}")
    return kind(**raw)


def _check_budget(b: Budget, src: str) -> None:
    where = f"{src}: finetune.budgets.{b.name}"
    if b.device not in ("auto", "cpu", "cuda"):
        raise InputError(f"{where}.device {b.device!r}: expected auto, cpu or cuda")
    if not 0 <= b.stride < b.max_length - 2:
        raise InputError(f"{where}: need 0 <= stride < max_length - 2 (special tokens), "
                         f"got stride={b.stride}, max_length={b.max_length}")
    if b.batch_size < 1 or b.effective_batch % b.batch_size:
        raise InputError(f"{where}: effective_batch {b.effective_batch} must be a multiple of "
                         f"batch_size {b.batch_size}")
    if b.epochs < 1 or not 0 <= b.holdout_fraction < 1 or not 0 <= b.warmup_ratio < 1:
        raise InputError(f"{where}: need epochs >= 1, 0 <= holdout_fraction < 1 and 0 <= warmup_ratio < 1")
    if b.calibration not in ("round", "cutpoints"):
        raise InputError(f"{where}.calibration {b.calibration!r}: expected round or cutpoints")
    if b.head_init not in ("ridge", "random"):
        raise InputError(f"{where}.head_init {b.head_init!r}: expected ridge or random")
    if b.speed.attention not in ("sdpa", "eager"):
        raise InputError(f"{where}.speed.attention {b.speed.attention!r}: expected sdpa or eager")
    if b.speed.finite_check_every < 1 or b.speed.loader_workers < 0:
        raise InputError(f"{where}.speed: need finite_check_every >= 1 and loader_workers >= 0")
    if b.calibration == "cutpoints" and b.holdout_fraction == 0:
        raise InputError(f"{where}: calibration cutpoints needs a held-out training slice (holdout_fraction > 0)")


def _numbers(cfg: dict[str, Any], key: str, names: tuple[str, ...], src: str) -> dict[str, float]:
    block = cfg.get(key)
    if not isinstance(block, dict) or sorted(block) != sorted(names):
        raise InputError(f"{src}: finetune.objectives.{key} must have exactly the keys {list(names)}")
    return {n: float(block[n]) for n in names}
