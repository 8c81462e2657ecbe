"""Test helpers: a tiny randomly initialised BERT saved as a local backbone directory, and an invented
essay corpus (no real essay text) written as prepared essays and prompt-holdout folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from stages.lib.data.fold_files import FOLDS_DIR, write_fold

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
         "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
         "xray", "yankee", "zulu", "river", "stone", "cloud", "ember"]
TARGETS = ["Overall", "Cohesion", "Syntax", "Vocabulary", "Phraseology", "Grammar", "Conventions"]
SUBGROUPS = ["gender", "grade", "race_ethnicity", "SES"]


def make_tiny_backbone(path: Path) -> Path:
    """Save a 2-layer, 32-wide BERT with a word-level tokenizer to `path` (config.json, tokenizer, weights)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    return path


def invented_essays(n: int, n_prompts: int, seed: int = 0) -> pd.DataFrame:
    """Random word salads with scores on the 1–5 half-point grid that loosely track the length."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 60, size=n)
    frame = pd.DataFrame({
        "essay_id": [f"e{i:04d}" for i in range(n)],
        "source_id": "",
        "prompt": [f"Prompt {chr(65 + i % n_prompts)}" for i in range(n)],
        "text": [" ".join(rng.choice(WORDS, size=k)) for k in lengths],
        "n_words": lengths,
    })
    base = 1.0 + 4.0 * (lengths - 5) / 55
    for target in TARGETS:
        frame[target] = np.clip(np.round((base + rng.normal(0, 0.5, n)) * 2) / 2, 1.0, 5.0)
    for col in SUBGROUPS:
        frame[col] = rng.choice(["a", "b"], size=n)
    return frame


def write_project(root: Path, essays: pd.DataFrame, n_folds: int) -> None:
    """`data/prepared/essays.parquet` and prompt-holdout folds (prompt k % n_folds held out in fold k)."""
    (root / "data/prepared").mkdir(parents=True, exist_ok=True)
    essays.to_parquet(root / "data/prepared/essays.parquet", index=False)
    prompts = sorted(essays["prompt"].unique())
    for k in range(n_folds):
        held = essays["prompt"].isin(prompts[k::n_folds])
        write_fold(root / FOLDS_DIR, "prompt_holdout", k, essays[~held], essays[held])


def tiny_params(backbone: Path, folds: list[int]) -> dict:
    """A params.yaml mapping that runs the finetune stages on the tiny backbone in seconds (the repository's
    params.yaml with seed, dataset and finetune replaced: every stage checks the whole file's schema)."""
    budget = {
        "gate_valid": False, "seeds": [7], "device": "cpu", "threads": 2, "backbone": str(backbone),
        "max_length": 16, "stride": 4, "epochs": 2, "max_train_essays": None, "holdout_fraction": 0.2,
        "max_holdout_essays": None, "lr": 1e-3, "head_lr": 1e-3, "weight_decay": 0.01, "warmup_ratio": 0.1,
        "max_grad_norm": 1.0, "batch_size": 4, "effective_batch": 8, "eval_batch_size": 8,
        "gradient_checkpointing": False, "precision": "auto", "head_dropout": 0.1, "encoder_dropout": None,
        "head_init": "ridge", "calibration": "cutpoints",
        "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"],
                 "layers": None},
        "speed": {"attention": "sdpa", "compile": False, "fused_optimizer": False, "finite_check_every": 1,
                  "loader_workers": 0, "pin_memory": False},
    }
    return {
        **yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8")),
        "seed": 7,
        "seeds": {"xgb": [7], "finetune": [7]},
        "dataset": {"text": "full_text", "prompt": "prompt", "source_id": "text_id", "targets": TARGETS,
                    "primary": "Overall", "grid": {"min": 1.0, "max": 5.0, "step": 0.5}, "prompt_grids": {},
                    "subgroups": SUBGROUPS},
        "finetune": {
            "budget": "cpu", "arms": ["lora", "adversarial", "groupdro"], "schemes": ["prompt_holdout"],
            "folds": folds,
            "objectives": {"lora": {}, "adversarial": {"lambda_max": 1.0, "head_lr": 1e-3, "hidden": 16},
                           "groupdro": {"eta": 0.1}},
            "budgets": {"cpu": budget, "gpu": {**budget, "device": "cuda", "gate_valid": True}},
        },
    }
