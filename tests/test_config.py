"""Which parameter file a stage reads: params.yaml, `$AES_PARAMS` outside DVC, never `$AES_PARAMS` under DVC."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError
from tests.conftest import REPO


def _profile(tmp_path, seed: int):
    path = tmp_path / "profile.yaml"
    text = (REPO / "params.yaml").read_text(encoding="utf-8")
    assert "\nseed: " in text
    path.write_text(text.replace("\nseed: ", f"\nseed: {seed}  # was ", 1), encoding="utf-8")
    return path


def test_aes_params_is_read_outside_dvc(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.setenv("AES_PARAMS", str(_profile(tmp_path, 7)))
    assert load_params().seed == 7


def test_aes_params_is_refused_under_dvc_repro(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STAGE", "folds")
    monkeypatch.setenv("AES_PARAMS", str(_profile(tmp_path, 7)))
    with pytest.raises(InputError, match=r"^\$AES_PARAMS=.*profile\.yaml is set, but under `dvc repro` \(stage "
                                         r"folds\) DVC tracks params\.yaml"):
        load_params()
    monkeypatch.delenv("AES_PARAMS")
    assert load_params().seed != 7


def _prepare_with(tmp_path, edit):
    """`python -m stages.prepare` on an invented corpus with edited params: (exit status, stderr lines)."""
    from tests.conftest import synthetic_raw

    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    edit(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    synthetic_raw().to_csv(tmp_path / "data" / "raw" / "corpus.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k not in ("AES_PARAMS", "DVC_STAGE")}
    done = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO)})
    assert not (tmp_path / "data" / "prepared").exists() or done.returncode == 0
    return done.returncode, done.stderr.strip().splitlines()


@pytest.mark.parametrize(("key", "value"), [
    ("prompt_grids", {"Prompt 11": {"min": 0.0, "max": 8.0, "step": 1.0}}),
    ("prompt_targets", {"Prompt 11": ["Overall"]}),
])
def test_a_declared_prompt_the_corpus_lacks_fails_at_prepare(tmp_path, key, value):
    status, err = _prepare_with(tmp_path, lambda p: p["dataset"].update({key: value}))
    assert status == 2 and len(err) == 1, err
    assert re.fullmatch(rf"error: dataset\.{key} names prompt 'Prompt 11', which data/raw/corpus\.csv does not have; "
                        r"did you mean 'Prompt 1'\? \(raw copy of .*\)", err[0]), err[0]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["gate"].update(reference="xbg"), "gate.reference: got the string 'xbg', expected one of xgb"),
    (lambda p: p["gate"]["criteria"]["prompt_holdout"].update(worst_promt_qwk=0.01),
     "gate.criteria.prompt_holdout: key 'worst_promt_qwk': expected one of mean_qwk, worst_prompt_qwk"),
])
def test_a_misspelt_gate_metric_or_reference_fails_at_the_first_stage(tmp_path, edit, message):
    status, err = _prepare_with(tmp_path, edit)
    assert status == 2 and len(err) == 1 and err[0].startswith(f"error: params.yaml: {message}"), err


def test_the_schema_knows_exactly_the_gate_metrics_the_bootstrap_computes():
    from stages.lib.core.params import GATE_METRICS
    from stages.lib.gate.bootstrap import METRICS

    assert set(GATE_METRICS) == set(METRICS)
