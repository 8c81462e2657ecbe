"""The prepared essays on disk, written by `prepare` and read through here by every stage: the full table
(`ESSAYS`: ids, prompts, texts, word counts, scores, subgroups) and, apart, the ids and texts alone (`TEXTS`), so
that the label-free stages (features, embeddings) depend on essay text only and a change of score columns,
grids or traits leaves their caches valid."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow

from stages.lib.core.atomic import write_parquet
from stages.lib.core.errors import InputError
from stages.lib.core.paths import ESSAYS, TEXTS

TEXT_COLUMNS = ("essay_id", "text")


def write_prepared(essays: pd.DataFrame, essays_path: Path = ESSAYS, texts_path: Path = TEXTS) -> None:
    """Write the prepared table and its text-only projection (same rows, same order)."""
    write_parquet(essays_path, essays)
    write_parquet(texts_path, essays[list(TEXT_COLUMNS)].reset_index(drop=True))


def read_texts(path: Path = TEXTS) -> pd.DataFrame:
    """The prepared essays' ids and texts, in prepared order; a missing, unreadable or malformed file fails
    naming it (and the row of a text that is not a string)."""
    texts = _read(path, TEXT_COLUMNS)
    bad = texts["text"].isna() | ~texts["text"].map(lambda t: isinstance(t, str))
    if bad.any():
        raise InputError(f"{path}: row {int(bad.to_numpy().argmax())}: column 'text' is not a string")
    return texts[list(TEXT_COLUMNS)].reset_index(drop=True)


def read_essays(required: Iterable[str] = (), path: Path = ESSAYS) -> pd.DataFrame:
    """The full prepared table; fails naming the file when it is missing, unreadable, empty or lacks one of
    `essay_id`, `prompt` and the `required` columns."""
    return _read(path, ("essay_id", "prompt", *required))


def _read(path: Path, required: Iterable[str]) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: prepared essays not found (run the prepare stage)")
    try:
        frame = pd.read_parquet(path)
    except (OSError, pyarrow.ArrowException) as exc:
        raise InputError(f"{path}: not a readable parquet file ({exc})") from exc
    missing = [c for c in dict.fromkeys(required) if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing required column(s) {missing}; has {list(frame.columns)}")
    if frame.empty:
        raise InputError(f"{path}: no essays")
    return frame
