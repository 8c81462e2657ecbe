"""Sliding windows over long token sequences, so no essay is silently truncated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChunkSpans:
    """Windows over one essay's content tokens (special tokens excluded): [start, end) spans."""

    n_tokens: int
    spans: tuple[tuple[int, int], ...]


def window_spans(n_tokens: int, window: int, stride: int) -> ChunkSpans:
    """Spans of at most `window` tokens, each starting `window - stride` after the previous one
    (`stride` tokens of overlap), the last one ending exactly at `n_tokens`."""
    if window <= 0 or not 0 <= stride < window:
        raise ValueError(f"need window > 0 and 0 <= stride < window, got window={window}, stride={stride}")
    if n_tokens <= window:
        return ChunkSpans(n_tokens, ((0, n_tokens),))
    step = window - stride
    starts = [*list(range(0, n_tokens - window, step)), n_tokens - window]
    return ChunkSpans(n_tokens, tuple((s, s + window) for s in starts))


def chunk_token_ids(
    ids: list[int], window: int, stride: int, cls_id: int | None, sep_id: int | None
) -> list[list[int]]:
    """Split content token ids into overlapping windows and wrap each with the model's special tokens."""
    spans = window_spans(len(ids), window, stride).spans
    head = [cls_id] if cls_id is not None else []
    tail = [sep_id] if sep_id is not None else []
    return [head + ids[s:e] + tail for s, e in spans]


def coverage_report(token_counts: np.ndarray, content_window: int, stride: int) -> dict[str, float]:
    """Truncation-coverage telemetry: how much single-window truncation would have cut, and how many
    windows chunking used instead."""
    counts = np.asarray(token_counts, dtype=int)
    chunks = np.array([len(window_spans(int(n), content_window, stride).spans) for n in counts])
    excess = np.clip(counts - content_window, 0, None)
    return {
        "n_essays": len(counts),
        "content_window_tokens": int(content_window),
        "stride_tokens": int(stride),
        "pct_essays_exceeding_max_length": float(100 * np.mean(counts > content_window)) if len(counts) else 0.0,
        "avg_tokens_truncated_before_chunking": float(excess.mean()) if len(counts) else 0.0,
        "avg_chunks_per_essay": float(chunks.mean()) if len(counts) else 0.0,
        "p95_chunks_per_essay": float(np.percentile(chunks, 95)) if len(counts) else 0.0,
        "max_tokens": int(counts.max()) if len(counts) else 0,
    }
