"""A small end-to-end `dvc repro` of the whole pipeline on a sample of the real corpus (every stage,
real backbone, shrunken budgets), in a scratch copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages.lib.data.fold_files import FOLDS_DIR, read_fold
from stages.lib.scoring.training_record import parse_record
from tests.conftest import CORPUS_DIR, REPO

CORPUS_CSV = CORPUS_DIR / "ELLIPSE_Final_github_test.csv"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CORPUS_CSV.is_file(), reason="the ELLIPSE corpus is not beside the repository"),
]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HUB_OFFLINE="1", PYTHONPATH=str(cwd))
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def scratch_repo(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(("metrics/", "plots/", "reports/", "docs/decisions/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    (dest / "dvc.lock").unlink(missing_ok=True)
    run(["git", "init", "-q"], dest)
    return dest


def sample_corpus(dest: Path, n_prompts: int = 9, per_prompt: int = 22) -> Path:
    """The largest prompts' first essays within the word window: a few minutes of pipeline on 2 cores."""
    corpus = pd.read_csv(CORPUS_CSV, dtype=str, keep_default_na=False)
    words = corpus["full_text"].str.split().str.len()
    corpus = corpus[(words >= 200) & (words <= 600)]
    prompts = corpus["prompt"].value_counts().index[:n_prompts]
    sample = pd.concat([corpus[corpus["prompt"] == p].head(per_prompt) for p in prompts])
    path = dest / "sample.csv"
    sample.to_csv(path, index=False)
    return path


def shrink_params(repo: Path, corpus: Path) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["corpus"].update(source=str(corpus), file=corpus.name, sha256=None)
    params["folds"]["n_splits"] = 3
    params["features"]["n_process"] = 1
    params["embeddings"].update(max_length=128, stride=16)
    params["xgb"].update(n_estimators=30, inner_splits=2, embedding_pca=4)
    params["evaluate"].update(min_prompt_n=10, bottom_k=2)
    params["gate"]["bootstrap"]["n_resamples"] = 200
    params["seeds"]["xgb"] = params["seeds"]["xgb"][:2]  # two reference seeds: the training noise is measured
    params["finetune"]["folds"] = [0, 1, 2]
    params["finetune"]["budgets"]["cpu"].update(max_length=64, stride=8, max_train_essays=12, max_holdout_essays=12)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    repo = scratch_repo(root / "repo")
    shrink_params(repo, sample_corpus(root))
    run(["dvc", "repro"], repo)
    return repo


def test_every_stage_output_exists(pipeline):
    for name in ["metrics/data.json", "metrics/arms/xgb_prompt_holdout.json", "metrics/arms/xgb_stratified_text.json",
                 "metrics/arms/lora_prompt_holdout.json", "metrics/arms/adversarial_prompt_holdout.json",
                 "metrics/arms/groupdro_prompt_holdout.json", "metrics/gate.json", "metrics/preflight.json",
                 "docs/decisions/0001-transformer-track-gate.md", "reports/evaluation_report.html",
                 "reports/arms/xgb_prompt_holdout/residuals.md", "plots/arms/xgb_prompt_holdout/per_prompt_qwk.csv",
                 "reports/arms/lora_prompt_holdout/subgroup_dsm.csv", "plots/gate/deltas.png", "reports/summary.txt",
                 "metrics/headline.json"]:
        assert (pipeline / name).is_file(), name
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
