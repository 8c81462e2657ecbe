"""Everything checked on the shared end-to-end project (`conftest.e2e_pipeline`: `dvc repro` of every stage on a
sample of the real corpus, real backbone, shrunken budgets, in a scratch copy of the repository), in one module so
that the build happens once, on one worker: the evidence it produces; what each stage reads, writes and is
re-run by (the audited DAG); and sharing the evidence through a DVC remote (`docs/sharing.md`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages.lib.core.paths import ESSAYS
from stages.lib.data.fold_files import FOLDS_DIR, read_fold
from stages.lib.scoring.training_record import parse_record
from tests.dag_check import undeclared
from tests.e2e_project import run

pytestmark = pytest.mark.e2e


@pytest.fixture
def pipeline(e2e_pipeline):
    """The shared end-to-end project; its params.yaml is put back after each test."""
    params = e2e_pipeline / "params.yaml"
    text = params.read_text()
    yield e2e_pipeline
    params.write_text(text)


def test_every_training_record_is_complete_and_finite(pipeline):
    seeds = yaml.safe_load((pipeline / "params.yaml").read_text())["seeds"]
    for arm, key in (("xgb", "xgb"), ("lora", "finetune")):  # both writers of the training record, one reader
        for seed in seeds[key]:
            path = pipeline / f"metrics/training/{arm}_prompt_holdout/seed_{seed}.json"
            record = parse_record(json.loads(path.read_text()))
            assert record.complete and record.finite and record.seed == seed, record.finite_problems()
    assert record.budget == "cpu" and record.gate_valid is False and record.folds[0].steps > 0


def test_metrics_are_seed_means_with_the_seed_noise_beside_them(pipeline):
    xgb = json.loads((pipeline / "metrics/arms/xgb_prompt_holdout.json").read_text())
    per_seed = [xgb["per_seed"][str(s)]["qwk"]["mean"] for s in xgb["seeds"]]
    assert xgb["n_seeds"] == 2 and len(set(per_seed)) == 2  # the seed changes the reference's predictions
    assert xgb["qwk"]["mean"] == pytest.approx(sum(per_seed) / 2)
    assert xgb["seed_sd"]["qwk"]["mean"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5)
    lora = json.loads((pipeline / "metrics/arms/lora_prompt_holdout.json").read_text())
    assert lora["n_seeds"] == 1 and lora["seed_sd"]["qwk"]["mean"] is None
    gate = json.loads((pipeline / "metrics/gate.json").read_text())
    key = "lora.prompt_holdout.worst_prompt_qwk"
    assert (gate[f"{key}.n_seeds_candidate"], gate[f"{key}.n_seeds_reference"]) == (1, 2)
    assert gate[f"{key}.noise_measured"] == 0 and gate[f"{key}.robust_pass"] == 0
    adr = (pipeline / "docs/decisions/0001-transformer-track-gate.md").read_text()
    assert "Training noise is **unmeasured** for `lora`, `adversarial`, `groupdro` (one seed)" in adr


def test_the_verdict_shown_is_the_verdict_decided(pipeline):
    decision = json.loads((pipeline / "metrics/decision.json").read_text())
    assert decision["verdict"] == "defer" and decision["gate_valid"] == 0  # CPU-budget evidence can only defer
    adr = (pipeline / "docs/decisions/0001-transformer-track-gate.md").read_text()
    assert [line for line in adr.splitlines() if line.startswith("- Status:")] == [
        f"- Status: decided — **{decision['verdict']}**"]
    summary = (pipeline / "reports/summary.txt").read_text().splitlines()
    assert len(summary) <= 25 and summary[0].startswith(f"Verdict: {decision['verdict'].upper()}  ")
    headline = json.loads((pipeline / "metrics/headline.json").read_text())
    assert headline["headline.verdict"] == decision["verdict"]
    assert "headline.lora.prompt_holdout.worst_prompt_qwk" in headline


def test_prompt_holdout_folds_on_the_real_sample_never_share_a_prompt(pipeline):
    for fold in range(3):
        train, val = read_fold("prompt_holdout", fold, pipeline / FOLDS_DIR)
        assert not set(train["prompt"]) & set(val["prompt"])


def test_metrics_show_prints_the_agreement_numbers(pipeline):
    shown = run(["dvc", "metrics", "show"], pipeline).stdout
    for key in ["qwk.mean", "worst_prompt_qwk", "tails.low_adjacent", "mcrmse"]:
        assert key in shown
    headline = run(["dvc", "metrics", "show", "metrics/headline.json"], pipeline).stdout
    assert "headline.xgb.prompt_holdout.mean_qwk" in headline and "qwk.mean" not in headline


def test_threshold_change_reruns_only_the_gate(pipeline):
    assert "up to date" in run(["dvc", "status"], pipeline).stdout
    params = yaml.safe_load((pipeline / "params.yaml").read_text())
    params["gate"]["criteria"]["prompt_holdout"]["worst_prompt_qwk"] = 0.02
    (pipeline / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = {line.rstrip(":") for line in run(["dvc", "status"], pipeline).stdout.splitlines()
             if line and not line.startswith((" ", "\t"))}
    assert stale == {"compare", "decide", "report"}


@pytest.mark.e2e
def test_stages_read_write_and_read_params_only_as_declared(e2e_pipeline):
    problems = undeclared(e2e_pipeline, e2e_pipeline.parent / "audit")
    assert problems == [], "\n".join(problems)


def _stale(project: Path) -> set[str]:
    return {line.rstrip(":") for line in run(["dvc", "status"], project).stdout.splitlines()
            if line and not line.startswith((" ", "\t"))}


def _edit_params(project: Path, edit) -> str:
    path = project / "params.yaml"
    before = path.read_text(encoding="utf-8")
    params = yaml.safe_load(before)
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return before


@pytest.mark.e2e
def test_a_prompt_grid_change_marks_folds_and_what_follows_changed(e2e_pipeline):
    prompt = pd.read_parquet(e2e_pipeline / ESSAYS)["prompt"].iloc[0]
    before = _edit_params(e2e_pipeline, lambda p: p["dataset"].update(
        prompt_grids={prompt: {"min": 0.0, "max": 10.0, "step": 1.0}}))
    try:
        stale = _stale(e2e_pipeline)
    finally:
        (e2e_pipeline / "params.yaml").write_text(before, encoding="utf-8")
    assert {"prepare", "folds"} <= stale and "acquire" not in stale


@pytest.mark.e2e
def test_a_score_column_change_reruns_neither_features_nor_embeddings(e2e_pipeline):
    """Dropping a trait changes the prepared table, not the texts: the label-free stages stay cached."""
    params = yaml.safe_load((e2e_pipeline / "params.yaml").read_text(encoding="utf-8"))
    dropped = params["dataset"]["targets"][-1]
    before = _edit_params(e2e_pipeline, lambda p: p["dataset"]["targets"].remove(dropped))
    try:
        run(["dvc", "repro", "prepare"], e2e_pipeline)
        assert dropped not in pd.read_parquet(e2e_pipeline / ESSAYS).columns
        stale = _stale(e2e_pipeline)
        assert "folds" in stale and not stale & {"features", "embeddings"}, stale
    finally:
        (e2e_pipeline / "params.yaml").write_text(before, encoding="utf-8")
        run(["dvc", "repro", "prepare"], e2e_pipeline)
    assert "up to date" in run(["dvc", "status"], e2e_pipeline).stdout


@pytest.mark.e2e
@pytest.mark.parametrize("module", ["stages/lib/scoring/metrics.py", "stages/lib/scoring/evaluation.py"])
def test_mending_a_metric_reruns_evaluation_never_training(e2e_pipeline, module):
    path = e2e_pipeline / module
    before = path.read_text(encoding="utf-8")
    path.write_text(before + "\n# a mended metric\n", encoding="utf-8")
    try:
        stale = _stale(e2e_pipeline)
    finally:
        path.write_text(before, encoding="utf-8")
    assert any(s.startswith("evaluate@") for s in stale), stale
    training = sorted(s for s in stale if s.split("@")[0] in ("xgb", "finetune", "train_final",
                                                              "train_final_transformer"))
    assert training == [], training


def git(*args: str, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.mark.e2e
def test_a_clone_reaches_a_clean_status_by_dvc_pull_alone(e2e_pipeline, tmp_path):
    remote = tmp_path / "remote"
    author = e2e_pipeline
    run(["dvc", "remote", "add", "--force", "-d", "team", str(remote)], author)
    try:
        git("add", "-A", cwd=author)
        git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "evidence", cwd=author)
        run(["dvc", "push"], author)
        assert any(remote.rglob("*")), "dvc push wrote nothing to the remote"

        reviewer = tmp_path / "clone"
        git("clone", "-q", str(author), str(reviewer), cwd=tmp_path)
        assert not (reviewer / "data" / "predictions").exists()  # the evidence is not in git
        status = run(["dvc", "status"], reviewer).stdout
        assert "deleted" in status  # before the pull, every cached output is missing
        run(["dvc", "pull"], reviewer)
        assert "up to date" in run(["dvc", "status"], reviewer).stdout
        repro = run(["dvc", "repro"], reviewer).stdout
        assert "Running stage" not in repro, repro
        author_lock = (author / "dvc.lock").read_text()
        assert (reviewer / "dvc.lock").read_text() == author_lock
    finally:
        run(["dvc", "remote", "remove", "team"], author)
