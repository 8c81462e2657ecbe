"""A scratch copy of the repository running the whole pipeline on a sample of the real corpus (every stage, real
backbone, shrunken budgets), shared by the end-to-end tests; optionally with `tests/dag_audit` recording what
each stage process reads and writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from tests.conftest import CORPUS_DIR, REPO

CORPUS_CSV = CORPUS_DIR / "ELLIPSE_Final_github_test.csv"
AUDIT_SITE = Path(__file__).resolve().parent / "dag_audit"


def run(cmd: list[str], cwd: Path, audit: Path | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` in the scratch project with this interpreter's tools first on PATH; fail with its output."""
    python_path = f"{AUDIT_SITE}{os.pathsep}{cwd}" if audit else str(cwd)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HUB_OFFLINE="1", PYTHONPATH=python_path)
    env.pop("AES_PARAMS", None)
    if audit:
        env["AES_DAG_AUDIT"] = str(audit)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def scratch_repo(dest: Path) -> Path:
    """The repository's tracked and unignored files (no committed evidence, no dvc.lock) in a fresh git repo."""
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
    """Point the scratch project at the sample and shrink every budget to minutes."""
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


def build(root: Path, audit: Path | None = None) -> Path:
    """A scratch project under `root` after `dvc repro` of every stage (audited into `audit` when given)."""
    repo = scratch_repo(root / "repo")
    shrink_params(repo, sample_corpus(root))
    run(["dvc", "repro"], repo, audit)
    return repo
