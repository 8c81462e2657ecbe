"""Where one fine-tuning run (arm × scheme × fold) keeps its outputs, shared by `finetune` and `collect`."""

from __future__ import annotations

from pathlib import Path

RUNS_DIR = Path("data/runs")
PREDICTIONS = "predictions.parquet"  # the fold's rows of the shared predictions contract
TOKENS = "tokens.parquet"  # essay_id, split (train | holdout | val), n_tokens before chunking
COVERAGE = "truncation_coverage.json"
TRAIN_LOG = "train_log.json"


def run_dir(arm: str, scheme: str, fold: int) -> Path:
    return RUNS_DIR / arm / scheme / f"fold_{fold}"
