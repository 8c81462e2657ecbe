"""The params schema: every mistake in params.yaml fails at load, in one line naming the file actually read,
the dotted key, the value and what was expected."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from stages.lib.core.config import load_params, select_budget
from stages.lib.core.errors import InputError
from stages.lib.core.params import Params, validate_params
from tests.conftest import REPO
from tests.typed_params import edited as edited_params

TEXT = (REPO / "params.yaml").read_text(encoding="utf-8")
SHA = "7e990c6392a9df9554d15bdd22f0b568d19095cd6676ad39cb1eaa69c977ed7a"
# Keys the schema fills with a default: leaving them out is not a mistake.
OPTIONAL = {"corpus.sha256", "corpus.archive", "corpus.archive_sha256", "corpus.archive_password",
            "corpus.published_at", "dataset.source_id", "dataset.prompt_grids", "dataset.subgroups",
            "prepare.exclude_prompts", "gate.baseline"}


def edited(old: str, new: str) -> str:
    """params.yaml's text with the one occurrence of `old` replaced (the YAML as a user would type it)."""
    assert TEXT.count(old) == 1, old
    return TEXT.replace(old, new)


def load_error(tmp_path: Path, text: str, name: str = "params.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


PROBES = [
    ("lr: 2.0e-4", "lr: abc", "finetune.budgets.gpu.lr: got the string 'abc', expected a number > 0"),
    ("lr: 2.0e-4", "lr: 2e-4", "finetune.budgets.gpu.lr: got the string '2e-4', expected a number > 0 "
                               "(YAML reads 2e-4 as text, not a number: write 2.0e-4"),
    ("lr: 2.0e-4", 'lr: "2.0e-4"', "finetune.budgets.gpu.lr: got the string '2.0e-4', expected a number > 0 "
                                   "(a number, not text: remove the quotes)"),
    ("      epochs: 3\n", '      epochs: "3"\n', "finetune.budgets.gpu.epochs: got the string '3', expected an "
                                                "integer >= 1 (a number, not text: remove the quotes)"),
    ("  n_estimators: 300", "  n_estimators: abc", "xgb.n_estimators: got the string 'abc', expected an integer >= 1"),
    ("  n_splits: 5", "  n_splits: abc", "folds.n_splits: got the string 'abc', expected an integer >= 2"),
    ("  n_splits: 5", "  n_splits: 0", "folds.n_splits: got 0, expected an integer >= 2"),
    ("  n_splits: 5", "  n_splits: 1", "folds.n_splits: got 1, expected an integer >= 2"),
    ("  n_splits: 5", "  n_splits: 2.0", "folds.n_splits: got 2.0, expected an integer >= 2 (write 2)"),
    ("  n_estimators: 300", "  n_estimator: 300", "xgb.n_estimator: unknown key (value 300); did you mean "
                                                  "n_estimators, which is missing?"),
    ("  n_estimators: 300", "  n_estimators: 300\n  n_estimator: 30", "xgb.n_estimator: unknown key (value 30); "
                                                                      "did you mean n_estimators?"),
    ("  max_depth: 4\n", "", "xgb.max_depth: missing key (expected an integer >= 1)"),
    (f"  sha256: {SHA}", "  sha256: 0", "corpus.sha256: got 0, expected 64 hex characters (a sha256 digest), or "
                                        "null for no check (YAML reads an all-digit value as a number"),
    (f"  sha256: {SHA}", "  sha256: " + "1" * 64, "corpus.sha256: got 1111"),
    (f"  sha256: {SHA}", "  sha256: abc123", "corpus.sha256: got the string 'abc123', expected 64 hex characters"),
    ("  archive_password: ellipse_test", "  archive_password: 1234",
     "corpus.archive_password: got 1234, expected text or null (YAML reads it as a number: quote it)"),
    ("  subsample: 0.8", "  subsample: 1.5", "xgb.subsample: got 1.5, expected a number in (0, 1]"),
    ("  calibration: cutpoints  # round | cutpoints\n  inner_splits", "  calibration: cutpoint\n  inner_splits",
     "xgb.calibration: got the string 'cutpoint', expected one of round, cutpoints"),
    ("  duplicate_scores: keep_first", "  duplicate_scores: keep_last",
     "prepare.duplicate_scores: got the string 'keep_last', expected one of drop_both, keep_first, average"),
    ("  n_splits: 5", "  n_splits: 3", "finetune.folds: got [0, 1, 2, 3, 4]: fold(s) [3, 4] do not exist with "
                                       "folds.n_splits 3"),
    ("  low_tail: 2.0", "  low_tail: .nan", "evaluate.low_tail: got nan, expected a number (a finite one"),
    ("  budget: cpu\n", "  budget: tpu\n", "finetune.budget: got 'tpu', expected one of ['cpu', 'gpu']"),
    ("  primary: Overall", "  primary: overall", "dataset.primary: got 'overall', expected one of dataset.targets"),
    ("confidence: 0.95}", "confidence: 95}", "gate.bootstrap.confidence: got 95, expected a number in [0.5, 1)"),
    ("      stride: 16", "      stride: 126", "finetune.budgets.cpu.stride: got 126, expected < max_length - 2"),
    ("    stratified_text:  # stability", "    stratified_txt:", "gate.criteria: key 'stratified_txt': expected one "
                                                                   "of prompt_holdout, stratified_text"),
    ("    lora: {}", "    lora: {eta: 0.1}", "finetune.objectives.lora.eta: unknown key (value 0.1); "
                                             "finetune.objectives.lora takes no keys"),
    ("xgb:\n", "xgb: [\n", "not valid YAML"),
]


@pytest.mark.parametrize(("old", "new", "expected"), PROBES, ids=[p[1].strip()[:40] for p in PROBES])
def test_probe_fails_in_one_line_naming_key_value_and_expectation(tmp_path, old, new, expected):
    assert expected in load_error(tmp_path, edited(old, new))


def test_repeated_key_names_the_key_and_line(tmp_path):
    text = edited("      lr: 1.0e-3\n", "      lr: 1.0e-3\n      lr: 1.0e-2\n")
    message = load_error(tmp_path, text)
    line = text.splitlines().index("      lr: 1.0e-2") + 1
    assert "not valid YAML (key 'lr' appears twice" in message and f"line {line}," in message


def _flat(node, prefix=()):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def test_committed_params_load_with_every_default_filled_in_once():
    """What params.yaml says comes back unchanged; what it leaves out comes back with the schema's default."""
    raw, loaded = dict(_flat(yaml.safe_load(TEXT))), dict(_flat(load_params(REPO / "params.yaml").model_dump()))
    assert set(Params.model_fields) == set(yaml.safe_load(TEXT))
    assert {k: loaded[k] for k in raw} == raw
    assert {".".join(k): v for k, v in loaded.items() if k not in raw} == {
        "embeddings.threads": 2, "folds.leave_one_prompt_out": False, "dataset.prompt_targets": None}


def test_uppercase_sha256_is_accepted_and_normalised(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(edited(f"  sha256: {SHA}", f"  sha256: {SHA.upper()}"), encoding="utf-8")
    assert load_params(path).corpus.sha256 == SHA
    for empty in ("null", '""'):
        path.write_text(edited(f"  sha256: {SHA}", f"  sha256: {empty}"), encoding="utf-8")
        assert load_params(path).corpus.sha256 in (None, "")


def leaves(node, prefix=()):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, (*prefix, key))
        yield (*prefix, key)


LEAVES = sorted(leaves(yaml.safe_load(TEXT)))
_PROFILE = ("expected a mapping with keys gate_valid, seeds, device, threads, backbone, max_length, stride, epochs, "
            "max_train_essays, holdout_fraction")
_SCHEME = "expected one of prompt_holdout, stratified_text"
# Entries of mappings that take any name (a budget profile, a gate scheme, a criterion's metric): removing one is a
# choice (None: accepted) unless something else names it; an unknown sibling is a bad entry of that mapping.
NAMED_ENTRIES = {
    "finetune.budgets.cpu": ("finetune.budget: got 'cpu', expected one of ['gpu'] (the keys of finetune.budgets)",
                             f"finetune.budgets.cpu_typo: got 1, {_PROFILE}"),
    "finetune.budgets.gpu": (None, f"finetune.budgets.gpu_typo: got 1, {_PROFILE}"),
    "gate.criteria.prompt_holdout": (None, f"gate.criteria: key 'prompt_holdout_typo': {_SCHEME}"),
    "gate.criteria.stratified_text": (None, f"gate.criteria: key 'stratified_text_typo': {_SCHEME}"),
}
CRITERIA = {".".join(p) for p in LEAVES if len(p) == 4 and p[:2] == ("gate", "criteria")}
# A scheme's only criterion: removing it leaves the scheme's block empty, which the schema refuses.
SOLE_CRITERIA = {c for c in CRITERIA if sum(o.startswith(c.rsplit(".", 1)[0] + ".") for o in CRITERIA) == 1}
assert len(CRITERIA) == 5 and not CRITERIA & set(NAMED_ENTRIES)


def _edited_at(path: tuple, edit) -> dict:
    params = yaml.safe_load(TEXT)
    target = params
    for key in path[:-1]:
        target = target[key]
    edit(target, path[-1])
    return params


def _message(params: dict) -> str:
    with pytest.raises(InputError) as info:
        validate_params(params, "p.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("path", LEAVES, ids=".".join)
def test_every_key_is_required_or_declared_optional(path):
    dotted = ".".join(path)
    removed = _edited_at(path, lambda node, key: node.pop(key))
    scheme = dotted.rsplit(".", 1)[0]
    expected = (NAMED_ENTRIES[dotted][0] if dotted in NAMED_ENTRIES
                else f"{scheme}: got {{}}, expected a mapping, non-empty" if dotted in SOLE_CRITERIA
                else None if dotted in OPTIONAL | CRITERIA else f"{dotted}: missing key (expected ")
    if expected is None:
        loaded = validate_params(copy.deepcopy(removed), "p.yaml")
        assert isinstance(loaded, Params) and loaded.source == "p.yaml"
        node = loaded.model_dump()
        for key in path[:-1]:
            node = node[key]
        assert path[-1] in node or dotted in NAMED_ENTRIES or dotted in CRITERIA  # an optional key: its default
    else:
        assert _message(removed).startswith(f"p.yaml: {expected}")


@pytest.mark.parametrize("path", LEAVES, ids=".".join)
def test_every_unknown_sibling_fails_naming_it(path):
    dotted = ".".join(path)
    extra = _edited_at(path, lambda node, key: node.__setitem__(f"{key}_typo", 1))
    message = _message(extra)
    if dotted in NAMED_ENTRIES:
        assert message.startswith(f"p.yaml: {NAMED_ENTRIES[dotted][1]}")
    elif dotted in CRITERIA:
        assert message.startswith(f"p.yaml: {'.'.join(path[:3])}") and f"{path[-1]}_typo" in message
        assert "expected one of " in message and "worst_prompt_qwk" in message
    else:
        assert re.match(rf"p\.yaml: {re.escape(dotted)}_typo: unknown key \(value 1\); (did you mean|expected one of) ",
                        message), message


def test_aes_params_file_is_the_one_named(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere" / "selected.yaml"
    other.parent.mkdir()
    other.write_text(edited("  n_splits: 5", "  n_splits: 1"), encoding="utf-8")
    monkeypatch.setenv("AES_PARAMS", str(other))
    with pytest.raises(InputError, match=rf"^{re.escape(str(other))}: folds\.n_splits: got 1"):
        load_params()
    other.write_text(TEXT, encoding="utf-8")
    params = load_params()
    assert params.source == str(other)
    where = re.escape(str(other))
    with pytest.raises(InputError, match=rf"^{where}: gate\.reference: missing key"):
        edited_params(params, lambda raw: raw["gate"].pop("reference"))  # checked again: still names the file read
    with pytest.raises(ValidationError, match="frozen"):
        params.finetune.budgets["cpu"].lora.r = 8  # the loaded params cannot be changed after the check
    with pytest.raises(ValidationError, match="frozen"):
        params.finetune.budget = "gpu"
    assert params.finetune.budgets["cpu"].lora == load_params().finetune.budgets["cpu"].lora
    with pytest.raises(InputError, match=rf"^{where}: finetune\.budgets\.cpu\.lora\.rank: unknown key \(value 8\)"):
        edited_params(params, lambda raw: raw["finetune"]["budgets"]["cpu"]["lora"].__setitem__("rank", 8))


def test_budget_overrides_end_in_validated_params(params):
    with pytest.raises(InputError) as info:
        select_budget(params, "gpu", ["batch_size=16", "lr=2e-4"])
    assert str(info.value).startswith(f"{REPO / 'params.yaml'} with batch_size=16 lr=2e-4: finetune.budgets.gpu.lr: "
                                      "got the string '2e-4'")  # the file the params were read from
    assert "write 2.0e-4" in str(info.value)
    with pytest.raises(InputError, match=r"finetune\.budgets\.cpu\.effective_batch: got 8, expected a multiple of "
                                         r"batch_size \(16\)"):
        select_budget(params, "cpu", ["batch_size=16"])
    selected = select_budget(params, "gpu", ["lr=2.0e-4"])
    assert isinstance(selected, Params) and selected.finetune.selected.lr == 2.0e-4
    assert selected.finetune.budgets["gpu"].lr == 2.0e-4 and selected.finetune.selected.name == "gpu"
    assert selected.source == f"{REPO / 'params.yaml'} with lr=2.0e-4"


def run_stage_module(module: str, params_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "bad.yaml").write_text(params_text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AES_PARAMS": str(tmp_path / "bad.yaml"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", module], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("module", "old", "new", "expected"), [
    ("stages.folds", "  n_splits: 5", "  n_splits: abc", "folds.n_splits: got the string 'abc'"),
    ("stages.folds", "  max_depth: 4\n", "", "xgb.max_depth: missing key"),
    ("stages.acquire", f"  sha256: {SHA}", "  sha256: 0", "corpus.sha256: got 0"),
    ("stages.preflight", "      lr: 1.0e-3\n", "      lr: 1e-3\n", "finetune.budgets.cpu.lr: got the string '1e-3'"),
])
def test_stage_exits_2_with_one_line_naming_the_file_read(tmp_path, module, old, new, expected):
    result = run_stage_module(module, edited(old, new), tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'bad.yaml'}: {expected}")
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


def test_training_seeds_are_checked_and_follow_the_budget_profile(params, tmp_path):
    """`seeds.finetune` must include the selected budget's own seeds (the gpu profile lists three), repeated
    seeds are refused, and selecting a budget outside dvc (the GPU runner) takes its profile's seeds."""
    raw = params.model_dump()
    gpu = {**raw, "finetune": {**raw["finetune"], "budget": "gpu"}}
    with pytest.raises(InputError, match=r"seeds\.finetune: got \[20231124\], expected every seed of the gpu profile"):
        validate_params(gpu, "params.yaml")
    with pytest.raises(InputError, match=r"seeds\.xgb: .*expected no repeated entries"):
        validate_params({**raw, "seeds": {**raw["seeds"], "xgb": [1, 1]}}, "params.yaml")
    selected = select_budget(params, "gpu")
    assert selected.seeds.finetune == params.finetune.budgets["gpu"].seeds
    assert len(selected.seeds.finetune) == 3 and selected.seeds.of("lora") == selected.seeds.finetune
    assert select_budget(params, "gpu", seeds=[5, 20231124, 20231125, 20231126]).seeds.finetune[0] == 5


def test_the_old_corpus_url_key_fails_naming_the_new_one(tmp_path):
    """`corpus.url` was renamed `corpus.published_at`: the old key fails in one line naming the file and the new key,
    whether it replaces the new key or sits beside it."""
    line = next(x for x in TEXT.splitlines() if x.startswith("  published_at: "))
    renamed = "corpus.url: renamed corpus.published_at; write corpus.published_at: instead"
    message = load_error(tmp_path, edited(line, line.replace("published_at:", "url:")), "old.yaml")
    assert message == f"{tmp_path / 'old.yaml'}: {renamed}"
    both = yaml.safe_load(TEXT)
    both["corpus"]["url"] = both["corpus"]["published_at"]
    assert _message(both) == f"p.yaml: {renamed}"
    assert load_params(REPO / "params.yaml").corpus.published_at == line.split(": ", 1)[1]
