"""Stage `embeddings`: frozen, mean-pooled transformer embeddings over sliding windows (no silent
truncation), one vector per essay, cached as `data/features/embeddings.parquet`."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from stages.lib.core.atomic import write_json, write_parquet
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.paths import EMBEDDING_METRICS, EMBEDDINGS, ESSAYS
from stages.lib.core.runinfo import run_info
from stages.lib.encoders.backbone import load_encoder
from stages.lib.windows.chunking import coverage_report
from stages.lib.windows.encoding import length_batches, masked_mean, pad_batch, pool_windows, window_essays


@torch.inference_mode()
def embed_texts(
    texts: list[str], tokenizer, model, max_length: int, stride: int, batch_tokens: int
) -> tuple[np.ndarray, dict]:
    """Essay embeddings (n, hidden) and the truncation-coverage report."""
    model.eval()
    windowed = window_essays(texts, tokenizer, max_length, stride)
    lengths = np.array([len(w) for w in windowed.windows])
    vectors = torch.zeros((len(windowed.windows), model.config.hidden_size))
    batches = list(length_batches(lengths, batch_tokens))
    for idx in tqdm(batches, desc="embedding windows", unit="batch"):
        ids, mask = pad_batch([windowed.windows[i] for i in idx], tokenizer.pad_token_id)
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        vectors[torch.as_tensor(idx)] = masked_mean(hidden, mask).float()
    if not torch.isfinite(vectors).all():
        raise FloatingPointError("non-finite embedding values")
    pooled = pool_windows(vectors, torch.as_tensor(windowed.owner), torch.as_tensor(lengths), len(texts))
    content_window = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    return pooled.numpy(), coverage_report(windowed.content_tokens, content_window, stride)


def main() -> None:
    params = load_params()
    cfg = params["embeddings"]
    torch.manual_seed(int(params["seed"]))
    torch.set_num_threads(int(cfg.get("threads", 2)))
    if not ESSAYS.is_file():
        raise InputError(f"{ESSAYS}: prepared essays not found (run the prepare stage)")
    essays = pd.read_parquet(ESSAYS, columns=["essay_id", "text"])
    tokenizer, model = load_encoder(cfg["backbone"])
    start = time.perf_counter()
    vectors, coverage = embed_texts(
        essays["text"].tolist(), tokenizer, model, int(cfg["max_length"]), int(cfg["stride"]), int(cfg["batch_tokens"])
    )
    seconds = time.perf_counter() - start
    columns = [f"emb_{j:03d}_unitless" for j in range(vectors.shape[1])]
    frame = pd.concat([essays[["essay_id"]], pd.DataFrame(vectors, columns=columns)], axis=1)
    write_parquet(EMBEDDINGS, frame)
    write_json(EMBEDDING_METRICS, {
        "backbone": cfg["backbone"],
        "dimensions": vectors.shape[1],
        "seconds": round(seconds, 1),
        "essays_per_second": round(len(essays) / seconds, 2),
        "truncation_coverage": coverage,
        "run": run_info(params["seed"], threads=torch.get_num_threads()),
    })
    print(f"embedded {len(essays)} essays in {seconds:.0f}s; coverage {coverage}")


if __name__ == "__main__":
    run_stage(main)
