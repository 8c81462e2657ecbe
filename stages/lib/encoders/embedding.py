"""Frozen essay embeddings: an encoder's token states mean-pooled over sliding windows (no silent truncation),
then pooled per essay, weighted by window length. The `embeddings` stage and the `score` command both call
`embed_texts`, so a new essay is embedded exactly as the training essays were."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from stages.lib.windows.chunking import coverage_report
from stages.lib.windows.encoding import length_batches, masked_mean, pad_batch, pool_windows, window_essays


def embedding_columns(dimensions: int) -> list[str]:
    """The feature-store names of an embedding's dimensions."""
    return [f"emb_{j:03d}_unitless" for j in range(dimensions)]


@torch.inference_mode()
def embed_texts(
    texts: list[str], tokenizer, model, max_length: int, stride: int, batch_tokens: int, progress: bool = True
) -> tuple[np.ndarray, dict]:
    """Essay embeddings (n, hidden) and the truncation-coverage report."""
    model.eval()
    windowed = window_essays(texts, tokenizer, max_length, stride)
    lengths = np.array([len(w) for w in windowed.windows])
    vectors = torch.zeros((len(windowed.windows), model.config.hidden_size))
    batches = list(length_batches(lengths, batch_tokens))
    for idx in tqdm(batches, desc="embedding windows", unit="batch", disable=not progress):
        ids, mask = pad_batch([windowed.windows[i] for i in idx], tokenizer.pad_token_id)
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        vectors[torch.as_tensor(idx)] = masked_mean(hidden, mask).float()
    if not torch.isfinite(vectors).all():
        raise FloatingPointError("non-finite embedding values")
    pooled = pool_windows(vectors, torch.as_tensor(windowed.owner), torch.as_tensor(lengths), len(texts))
    content_window = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    return pooled.numpy(), coverage_report(windowed.content_tokens, content_window, stride)
