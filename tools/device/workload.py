"""The token workload of the device's gate runs, counted here with the budget's own tokenizer and samplers
(`tools.benchmark.fold_workload`: the training batches of every epoch, and the ridge probe, validation and
held-out inference batches, as `finetune.run_fold` runs them): what the device plan sizes its calls by."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from stages.lib.core.params import Params
from stages.lib.data.fold_files import read_fold
from stages.lib.training.fold_essays import select_essays
from stages.lib.windows.essay_batches import encode_essays
from tools.benchmark import fold_workload


def gate_workload(params: Params, tokenizer_dir: Path, seed: int) -> dict[str, Any]:
    """Padded training and inference tokens of every selected arm × scheme × fold with training seed `seed`
    (`params` already selecting the budget, arms and schemes, as `select_budget` returns them)."""
    from transformers import AutoConfig, AutoTokenizer

    cfg = params.finetune
    budget = cfg.selected
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    hidden = int(AutoConfig.from_pretrained(str(tokenizer_dir)).hidden_size)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    folds = {(s, k): select_essays(*read_fold(s, k), budget, seed) for s in cfg.schemes for k in cfg.folds}
    texts = pd.concat([pd.concat([e.train, e.held, e.val])[["essay_id", "text"]] for e in folds.values()])
    texts = texts.drop_duplicates("essay_id")
    counts = encode_essays(texts["text"].tolist(), tokenizer, budget.max_length, budget.stride).token_counts
    by_id = dict(zip(texts["essay_id"], counts.tolist(), strict=True))
    train = inference = 0
    runs = []
    for arm in cfg.arms:
        for (scheme, fold), essays in folds.items():
            work = fold_workload(essays, by_id, budget, arm, hidden, cfg.objectives, seed,
                                 budget.max_length - n_special, n_special)
            train += work["train"].padded_tokens
            inference += work["inference"].padded_tokens
            runs.append(f"{arm}/{scheme}/fold_{fold}")
    return {"budget": budget.name, "backbone": budget.backbone, "seed": seed, "runs": len(runs),
            "train_padded_tokens": int(train), "inference_padded_tokens": int(inference)}
