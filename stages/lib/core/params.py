"""The schema of `params.yaml`: one strict pydantic model per section. Unknown and missing keys, wrong
types (no str→number coercion: YAML reads `2e-4` as text), out-of-range values and inconsistent
combinations fail with one line naming the file, the dotted key, the value and what was expected."""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from stages.lib.core.errors import InputError

ARMS = ("lora", "adversarial", "groupdro")
REFERENCE_ARMS = ("xgb", *ARMS)  # arms whose predictions the gate can compare
GATE_METRICS = ("mean_qwk", "worst_prompt_qwk", "low_tail_adjacent", "high_tail_adjacent")  # gate/bootstrap METRICS
SCHEMES = ("prompt_holdout", "stratified_text")
DUPLICATE_POLICIES = ("drop_both", "keep_first", "average")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SPECIAL_TOKENS = 2  # [CLS] … [SEP]: a window holds max_length - 2 content tokens

Arm = Literal[ARMS]
AnyArm = Literal[REFERENCE_ARMS]
GateMetric = Literal[GATE_METRICS]
Scheme = Literal[SCHEMES]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(gt=0, le=1)]  # a sampled share: (0, 1]
Rate = Annotated[float, Field(ge=0, lt=1)]  # dropout, warm-up, held-out share: [0, 1)
Name = Annotated[str, Field(min_length=1)]
WindowLength = Annotated[int, Field(ge=SPECIAL_TOKENS + 1)]
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _sha256(value: Any) -> Any:
    if value is None or value == "" or (isinstance(value, str) and _HEX64.fullmatch(value)):
        return value.lower() if value else value
    hint = (" (YAML reads an all-digit value as a number: quote the hash)"
            if isinstance(value, int | float) and not isinstance(value, bool) else "")
    raise PydanticCustomError("params_sha256", "64 hex characters (a sha256 digest), or null for no check" + hint)


Sha256 = Annotated[str | None, BeforeValidator(_sha256)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Corpus(_Section):
    source: Name
    file: Name
    sha256: Sha256 = None
    archive: Name | None = None  # a zip holding `file` (optional)
    archive_sha256: Sha256 = None
    archive_password: str | None = None
    published_at: str | None = None  # where people can find the corpus (shown in reports; never downloaded)


class Grid(_Section):
    min: float
    max: float
    step: PosFloat


class PromptGrid(Grid):
    targets: dict[str, Grid] | None = None  # per-target overrides of this prompt's grid


class Dataset(_Section):
    text: Name
    prompt: Name
    source_id: str | None = None
    targets: Annotated[list[Name], Field(min_length=1)]
    primary: Name
    grid: Grid
    prompt_grids: dict[str, PromptGrid] | None = None
    prompt_targets: dict[str, Annotated[list[Name], Field(min_length=1)]] | None = None
    subgroups: list[Name] | None = None


class Prepare(_Section):
    min_words: NonNegInt
    max_words: PosInt
    exclude_prompts: list[str] | None = None
    duplicate_scores: Literal[DUPLICATE_POLICIES]


class Folds(_Section):
    n_splits: Annotated[int, Field(ge=2)]
    min_essays_per_prompt: PosInt
    leave_one_prompt_out: bool = False  # prompt_holdout: one fold per prompt (n_splits then counts stratified folds)


class Features(_Section):
    spacy_model: Name
    n_process: PosInt
    batch_size: PosInt
    mattr_window: PosInt
    hdd_draws: PosInt
    mtld_threshold: Share
    spelling_min_chars: NonNegInt


class Embeddings(_Section):
    backbone: Name
    max_length: WindowLength
    stride: NonNegInt
    batch_tokens: PosInt
    threads: PosInt = 2


class Xgb(_Section):
    embedding_pca: PosInt
    n_estimators: PosInt
    learning_rate: Share
    max_depth: PosInt
    min_child_weight: NonNegFloat
    subsample: Share
    colsample_bytree: Share
    reg_lambda: NonNegFloat
    n_jobs: PosInt
    sample_weighting: Literal["none", "inverse_band"]
    weight_power: NonNegFloat
    calibration: Literal["round", "cutpoints"]
    inner_splits: Annotated[int, Field(ge=2)]


class Evaluate(_Section):
    min_prompt_n: PosInt
    bottom_k: PosInt
    low_tail: float
    high_tail: float


class Bootstrap(_Section):
    n_resamples: Annotated[int, Field(ge=100)]
    confidence: Annotated[float, Field(ge=0.5, lt=1)]


class Gate(_Section):
    reference: AnyArm
    baseline: AnyArm | None = None  # null: the first candidate
    candidates: Annotated[list[AnyArm], Field(min_length=1)]
    schemes: Annotated[list[Scheme], Field(min_length=1)]
    bootstrap: Bootstrap
    criteria: Annotated[dict[Scheme, Annotated[dict[GateMetric, float], Field(min_length=1)]], Field(min_length=1)]

    @property
    def baseline_arm(self) -> str:
        """The baseline candidate (the plain fine-tune the invariance variants are compared with): `baseline`, else
        the first candidate."""
        return self.baseline or self.candidates[0]


class Report(_Section):
    qwk_flag: Annotated[float, Field(ge=-1, le=1)]
    smd_flag: NonNegFloat
    dsm_flag: NonNegFloat


class Lora(_Section):
    enabled: bool
    r: PosInt
    alpha: PosFloat
    dropout: Rate
    target_modules: list[Name]
    layers: list[NonNegInt] | None


class Speed(_Section):
    attention: Literal["sdpa", "eager"]
    compile: bool
    fused_optimizer: bool
    finite_check_every: PosInt
    loader_workers: NonNegInt
    pin_memory: bool


class Budget(_Section):
    gate_valid: bool
    seeds: Annotated[list[NonNegInt], Field(min_length=1)]
    device: Literal["auto", "cpu", "cuda"]
    threads: PosInt | None
    backbone: Name
    max_length: WindowLength
    stride: NonNegInt
    epochs: PosInt
    max_train_essays: PosInt | None
    holdout_fraction: Rate
    max_holdout_essays: PosInt | None
    lr: PosFloat
    head_lr: PosFloat
    weight_decay: NonNegFloat
    warmup_ratio: Rate
    max_grad_norm: PosFloat
    batch_size: PosInt
    effective_batch: PosInt
    eval_batch_size: PosInt
    gradient_checkpointing: bool
    precision: Literal[PRECISIONS]
    head_dropout: Rate
    encoder_dropout: Rate | None
    head_init: Literal["ridge", "random"]
    calibration: Literal["round", "cutpoints"]
    lora: Lora
    speed: Speed
    _name: str = PrivateAttr(default="")

    @property
    def name(self) -> str:
        """The profile's key under `finetune.budgets`."""
        return self._name

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per optimizer step, so that batch_size × steps = effective_batch."""
        return self.effective_batch // self.batch_size

    def record(self) -> dict[str, Any]:
        """The profile as a JSON record, its name first (a run log's hyperparameters, an artifact's budget)."""
        return {"name": self.name, **self.model_dump()}

    @classmethod
    def from_record(cls, record: dict[str, Any], source: str) -> Budget:
        """A profile back from its `record()`; one-line errors name `source`."""
        body = {k: v for k, v in record.items() if k != "name"}
        try:
            budget = cls.model_validate(body)
        except ValidationError as exc:
            problems = [(_dotted(("budget", *err["loc"])), err["msg"]) for err in exc.errors()]
            raise InputError(_one_line(source, problems)) from None
        budget._name = str(record.get("name", ""))
        return budget


class NoHyperparameters(_Section):
    pass


class Adversarial(_Section):
    lambda_max: NonNegFloat
    head_lr: PosFloat
    hidden: PosInt


class GroupDro(_Section):
    eta: PosFloat


class Objectives(_Section):
    lora: NoHyperparameters
    adversarial: Adversarial
    groupdro: GroupDro

    def of(self, arm: str) -> dict[str, float]:
        """One arm's objective hyperparameters (lora has none)."""
        return getattr(self, arm).model_dump()


class Finetune(_Section):
    budget: Name
    arms: Annotated[list[Arm], Field(min_length=1)]
    schemes: Annotated[list[Scheme], Field(min_length=1)]
    folds: Annotated[list[NonNegInt], Field(min_length=1)]
    objectives: Objectives
    budgets: Annotated[dict[Name, Budget], Field(min_length=1)]

    @model_validator(mode="after")
    def _name_budgets(self) -> Finetune:
        for name, budget in self.budgets.items():
            budget._name = name
        return self

    @property
    def selected(self) -> Budget:
        """The profile `budget` names."""
        return self.budgets[self.budget]


class Seeds(_Section):
    """Training seeds per arm, in run order (each seed is its own cached run)."""

    xgb: Annotated[list[NonNegInt], Field(min_length=1)]
    finetune: Annotated[list[NonNegInt], Field(min_length=1)]

    def of(self, arm: str) -> list[int]:
        """An arm's seeds in run order: `xgb` for the reference, `finetune` for the transformer arms."""
        return list(self.xgb if arm == "xgb" else self.finetune)

    def final(self, arm: str) -> int:
        """The seed an arm's final model is fitted with: its first seed, that of its first cross-validation run."""
        return self.of(arm)[0]


class Params(_Section):
    """The whole of `params.yaml`."""

    seed: NonNegInt
    seeds: Seeds
    corpus: Corpus
    dataset: Dataset
    prepare: Prepare
    folds: Folds
    features: Features
    embeddings: Embeddings
    xgb: Xgb
    evaluate: Evaluate
    gate: Gate
    report: Report
    finetune: Finetune
    _source: str = PrivateAttr(default="params.yaml")

    @property
    def source(self) -> str:
        """The file these params were read from (named in every error about them)."""
        return self._source


RENAMED = {("corpus", "url"): "corpus.published_at"}  # old key -> new key: the old one fails naming the new one
Problem = tuple[str, str]  # (dotted key, what is wrong)


def validate_params(raw: Any, source: str) -> Params:
    """Check a loaded parameter mapping against the schema and return the frozen, typed `Params` (which remembers
    `source`): every optional key present with its default (declared here and nowhere else), hashes lower-cased.
    The first mistake (renamed keys first, then unknown keys: they explain missing ones) raises an `InputError` of
    one line naming `source`."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of sections at the top level, got {_show(raw)}")
    for (section, key), new in RENAMED.items():
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raise InputError(f"{source}: {section}.{key}: renamed {new}; write {new}: instead")
    try:
        model = Params.model_validate(raw)
    except ValidationError as exc:
        raise InputError(_one_line(source, _problems(exc.errors()))) from None
    problems = _consistency(model)
    if problems:
        raise InputError(_one_line(source, problems))
    model._source = source
    return model


def validate_section(name: str, raw: Any, source: str) -> Any:
    """Check one section read on its own (a model artifact keeps `dataset`, `features` and `embeddings`) and return
    its typed model; one-line errors name `source` and the key."""
    try:
        return Params.model_fields[name].annotation.model_validate(raw)
    except ValidationError as exc:
        errors = [{**err, "loc": (name, *err["loc"])} for err in exc.errors()]
        raise InputError(_one_line(source, _problems(errors))) from None


def _one_line(source: str, problems: list[Problem]) -> str:
    (key, text), rest = problems[0], problems[1:]
    keys = ", ".join(k for k, _ in rest[:4]) + (", …" if len(rest) > 4 else "")
    more = f" (and {len(rest)} more: {keys})" if rest else ""
    return " ".join(f"{source}: {key}: {text}{more}".split())


def _problems(errors: list[dict[str, Any]]) -> list[Problem]:
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    explained: set[tuple] = set()
    unknown: list[Problem] = []
    for err in errors:
        if err["type"] != "extra_forbidden":
            continue
        loc = tuple(err["loc"])
        allowed = list(_fields(_annotation_at(loc[:-1])[0]))
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if guess and (*loc[:-1], guess[0]) in missing:
            explained.add((*loc[:-1], guess[0]))
            hint = f"did you mean {guess[0]}, which is missing?"
        elif guess:
            hint = f"did you mean {guess[0]}?"
        elif allowed:
            hint = f"expected one of {', '.join(allowed)}"
        else:
            hint = f"{_dotted(loc[:-1])} takes no keys: write {{}}"
        unknown.append((_dotted(loc), f"unknown key (value {_show(err['input'])}); {hint}"))
    others = [_problem(e) for e in errors if e["type"] != "extra_forbidden" and tuple(e["loc"]) not in explained]
    return unknown + others


def _problem(err: dict[str, Any]) -> Problem:
    loc, value, kind = tuple(err["loc"]), err.get("input"), err["type"]
    if loc and loc[-1] == "[key]":  # a mapping's key, e.g. gate.criteria.<scheme>
        annotation = get_args(_non_null(_annotation_at(loc[:-2])[0]))
        expected = _describe(annotation[0], []) if annotation else "another key"
        return _dotted(loc[:-2]), f"key {loc[-2]!r}: expected {expected}"
    key = _dotted(loc)
    annotation, meta = _annotation_at(loc)
    expected = _describe(annotation, meta) if annotation is not None else ""
    if kind == "missing":
        return key, f"missing key (expected {expected})"
    if kind.startswith("params_"):
        return key, f"got {_show(value)}, expected {err['msg']}"
    if annotation is None:
        return key, f"got {_show(value)}: {err['msg']}"
    return key, f"got {_show(value)}, expected {expected}{_hint(value, annotation)}"


def _hint(value: Any, annotation: Any) -> str:
    """The YAML trap behind a type error, spelled out."""
    wants = _base_types(annotation)
    if isinstance(value, float) and not math.isfinite(value):
        return " (a finite one: not .nan or .inf)"
    if isinstance(value, str) and (float in wants or int in wants):
        if isinstance(_yaml_scalar(value), int | float):
            return " (a number, not text: remove the quotes)"
        try:
            number = float(value)
        except ValueError:
            return ""
        match = re.fullmatch(r"\s*([+-]?)(\d+)(?:\.(\d*))?[eE]([+-]?)(\d+)\s*", value)
        if float in wants and match and math.isfinite(number):
            sign, whole, frac, esign, exp = match.groups()
            fixed = f"{sign}{whole}.{frac or 0}e{esign or '+'}{exp}"
            return f" (YAML reads {value.strip()} as text, not a number: write {fixed}, a dot and a signed exponent)"
        return ""
    if isinstance(value, float) and int in wants and float not in wants and value.is_integer():
        return f" (write {int(value)})"
    if isinstance(value, bool) and str in wants:
        return " (YAML reads yes/no/on/off/true/false as a boolean: quote it)"
    if isinstance(value, int | float) and str in wants:
        return " (YAML reads it as a number: quote it)"
    if isinstance(value, str) and bool in wants:
        return " (write true or false, without quotes)"
    return ""


def _yaml_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _consistency(p: Params) -> list[Problem]:
    """Checks that span keys (or a key and the file's other sections)."""
    problems: list[Problem] = []
    ds = p.dataset
    if ds.primary not in ds.targets:
        problems.append(("dataset.primary", f"got {ds.primary!r}, expected one of dataset.targets {ds.targets}"))
    for key, values in (("dataset.targets", ds.targets), ("dataset.subgroups", ds.subgroups or []),
                        ("finetune.arms", p.finetune.arms), ("finetune.schemes", p.finetune.schemes),
                        ("finetune.folds", p.finetune.folds), ("gate.candidates", p.gate.candidates),
                        ("gate.schemes", p.gate.schemes), ("seeds.xgb", p.seeds.xgb),
                        ("seeds.finetune", p.seeds.finetune)):
        if len(set(values)) < len(values):
            problems.append((key, f"got {values}, expected no repeated entries"))
    grids = {"dataset.grid": ds.grid, **{f"dataset.prompt_grids.{k}": g for k, g in (ds.prompt_grids or {}).items()}}
    for prompt, g in (ds.prompt_grids or {}).items():
        for target, tg in (g.targets or {}).items():
            grids[f"dataset.prompt_grids.{prompt}.targets.{target}"] = tg
            if target not in ds.targets:
                problems.append((f"dataset.prompt_grids.{prompt}.targets.{target}",
                                 f"{target!r} is not one of dataset.targets {ds.targets}"))
    for prompt, targets in (ds.prompt_targets or {}).items():
        unknown = [t for t in targets if t not in ds.targets]
        if unknown:
            problems.append((f"dataset.prompt_targets.{prompt}", f"got {unknown}, not in dataset.targets {ds.targets}"))
        if ds.primary not in targets:
            problems.append((f"dataset.prompt_targets.{prompt}", f"got {targets}, expected the primary target "
                                                                 f"{ds.primary!r} among them (every prompt scores it)"))
    for key, g in grids.items():
        steps = (g.max - g.min) / g.step
        if g.max <= g.min or abs(steps - round(steps)) > 1e-6:
            problems.append((key, f"got min {g.min}, max {g.max}, step {g.step}: expected max > min and "
                                  "max - min a whole number of steps"))
    if p.prepare.max_words < p.prepare.min_words:
        problems.append(("prepare.max_words", f"got {p.prepare.max_words}, expected >= prepare.min_words "
                                              f"({p.prepare.min_words})"))
    if p.embeddings.stride >= p.embeddings.max_length - SPECIAL_TOKENS:
        problems.append(("embeddings.stride", f"got {p.embeddings.stride}, expected < max_length - 2 "
                                              f"({p.embeddings.max_length - SPECIAL_TOKENS}: special tokens)"))
    if p.evaluate.low_tail >= p.evaluate.high_tail:
        problems.append(("evaluate.low_tail", f"got {p.evaluate.low_tail}, expected < evaluate.high_tail "
                                              f"({p.evaluate.high_tail})"))
    gate = p.gate
    if gate.reference in gate.candidates:
        problems.append(("gate.reference", f"got {gate.reference!r}, which is also in gate.candidates"))
    if gate.baseline is not None and gate.baseline not in gate.candidates:
        problems.append(("gate.baseline", f"got {gate.baseline!r}, expected one of gate.candidates {gate.candidates}"))
    for scheme in sorted(set(gate.criteria) - set(gate.schemes)):
        problems.append((f"gate.criteria.{scheme}", f"scheme {scheme!r} is missing from gate.schemes {gate.schemes}"))
    ft = p.finetune
    if ft.budget not in ft.budgets:
        problems.append(("finetune.budget", f"got {ft.budget!r}, expected one of {sorted(ft.budgets)} "
                                            "(the keys of finetune.budgets)"))
    beyond = [k for k in ft.folds if k >= p.folds.n_splits]
    if beyond and not p.folds.leave_one_prompt_out:  # there, the number of prompts bounds them (folds stage)
        problems.append(("finetune.folds", f"got {ft.folds}: fold(s) {beyond} do not exist with "
                                           f"folds.n_splits {p.folds.n_splits} (expected 0 … {p.folds.n_splits - 1})"))
    selected = ft.budgets.get(ft.budget)
    if selected is not None and not set(selected.seeds) <= set(p.seeds.finetune):
        problems.append(("seeds.finetune", f"got {p.seeds.finetune}, expected every seed of the {ft.budget} "
                                           f"profile (finetune.budgets.{ft.budget}.seeds {selected.seeds}): set "
                                           f"-S 'seeds.finetune={selected.seeds}'".replace(" ", " ")))
    for name, b in ft.budgets.items():
        where = f"finetune.budgets.{name}"
        if b.stride >= b.max_length - SPECIAL_TOKENS:
            problems.append((f"{where}.stride", f"got {b.stride}, expected < max_length - 2 "
                                                f"({b.max_length - SPECIAL_TOKENS}: special tokens)"))
        if b.effective_batch % b.batch_size:
            problems.append((f"{where}.effective_batch", f"got {b.effective_batch}, expected a multiple of "
                                                         f"batch_size ({b.batch_size})"))
        if b.calibration == "cutpoints" and b.holdout_fraction == 0:
            problems.append((f"{where}.holdout_fraction", "got 0, expected > 0: calibration cutpoints is fitted "
                                                          "on the held-out training slice"))
    return problems


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _annotation_at(loc: tuple) -> tuple[Any, list]:
    """The declared type (and its constraints) of the value at `loc`, or (None, []) if unknown."""
    tp, meta = Params, []
    for part in loc:
        tp, meta = _strip(tp, meta)
        tp = _non_null(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None, []
            tp, meta = field.annotation, list(field.metadata)
        elif get_origin(tp) is dict:
            tp, meta = get_args(tp)[0 if part == "[key]" else 1], []
        elif get_origin(tp) is list and isinstance(part, int):
            tp, meta = get_args(tp)[0], []
        else:
            return None, []
    return _strip(tp, meta)


def _strip(tp: Any, meta: list) -> tuple[Any, list]:
    """Unwrap `Annotated[...]`, collecting its constraints."""
    while get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        meta = meta + extra
    flat = []
    for m in meta:
        flat.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return tp, flat


def _union_args(tp: Any) -> tuple:
    return get_args(tp) if get_origin(tp) in (typing.Union, types.UnionType) else ()


def _non_null(tp: Any) -> Any:
    args = [a for a in _union_args(tp) if a is not type(None)]
    return args[0] if args else tp


def _base_types(tp: Any) -> set:
    tp = _strip(tp, [])[0]
    args = _union_args(tp)
    if args:
        return set().union(*(_base_types(a) for a in args))
    return {tp}


def _fields(tp: Any) -> dict[str, Any]:
    tp = _non_null(_strip(tp, [])[0])
    return dict(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else {}


def _describe(tp: Any, meta: list) -> str:
    tp, meta = _strip(tp, meta)
    args = _union_args(tp)
    if args:
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(_describe(a, meta) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(tp))
    if origin is list:
        return f"a list ({_plural(get_args(tp)[0])}){_length(meta)}"
    if origin is dict:
        return f"a mapping{_length(meta)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        names = list(tp.model_fields)
        return f"a mapping with keys {', '.join(names)}" if names else "an empty mapping {}"
    base = {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(tp, str(tp))
    if tp is str and any(isinstance(m, annotated_types.MinLen) and m.min_length > 0 for m in meta):
        return "non-empty text"
    return base + _bounds(meta)


def _plural(tp: Any) -> str:
    text = _describe(tp, [])
    return "each " + text.removeprefix("an ").removeprefix("a ")


def _length(meta: list) -> str:
    return ", non-empty" if any(isinstance(m, annotated_types.MinLen) and m.min_length > 0 for m in meta) else ""


def _bounds(meta: list) -> str:
    low = next(((f"[{m.ge}" if isinstance(m, annotated_types.Ge) else f"({m.gt}") for m in meta
                if isinstance(m, annotated_types.Ge | annotated_types.Gt)), None)
    high = next(((f"{m.le}]" if isinstance(m, annotated_types.Le) else f"{m.lt})") for m in meta
                 if isinstance(m, annotated_types.Le | annotated_types.Lt)), None)
    if low and high:
        return f" in {low}, {high}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {low[1:]}"
    if high:
        return f" {'<=' if high[-1] == ']' else '<'} {high[:-1]}"
    return ""


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
