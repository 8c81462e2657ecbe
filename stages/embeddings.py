"""Stage `embeddings`: frozen, mean-pooled transformer embeddings over sliding windows (no silent
truncation), one vector per essay from the texts alone, cached as `data/features/embeddings.parquet`."""

from __future__ import annotations

import time

import pandas as pd
import torch

from stages.lib.core.atomic import write_json, write_parquet
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.paths import EMBEDDING_METRICS, EMBEDDINGS
from stages.lib.core.runinfo import run_info
from stages.lib.data.prepared import read_texts
from stages.lib.encoders.backbone import load_encoder
from stages.lib.encoders.embedding import embed_texts, embedding_columns


def main() -> None:
    params = load_params()
    cfg = params.embeddings
    torch.manual_seed(params.seed)
    torch.set_num_threads(cfg.threads)
    essays = read_texts()
    tokenizer, model = load_encoder(cfg.backbone)
    start = time.perf_counter()
    vectors, coverage = embed_texts(essays["text"].tolist(), tokenizer, model, cfg.max_length, cfg.stride,
                                    cfg.batch_tokens)
    seconds = time.perf_counter() - start
    columns = embedding_columns(vectors.shape[1])
    frame = pd.concat([essays[["essay_id"]], pd.DataFrame(vectors, columns=columns)], axis=1)
    write_parquet(EMBEDDINGS, frame)
    write_json(EMBEDDING_METRICS, {
        "backbone": cfg.backbone,
        "dimensions": vectors.shape[1],
        "seconds": round(seconds, 1),
        "essays_per_second": round(len(essays) / seconds, 2),
        "truncation_coverage": coverage,
        "run": run_info(params.seed, threads=torch.get_num_threads()),
    })
    print(f"embedded {len(essays)} essays in {seconds:.0f}s; coverage {coverage}")


if __name__ == "__main__":
    run_stage(main)
