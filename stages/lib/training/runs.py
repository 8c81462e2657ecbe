"""Where one fine-tuning run (arm × scheme × fold) keeps its outputs, shared by `finetune` and `collect`."""

from __future__ import annotations

PREDICTIONS = "predictions.parquet"  # the fold's rows of the shared predictions contract
TOKENS = "tokens.parquet"  # essay_id, split (train | holdout | val), n_tokens before chunking
COVERAGE = "truncation_coverage.json"
TRAIN_LOG = "train_log.json"

