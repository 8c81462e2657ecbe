"""The one feature store every feature-based arm reads: handcrafted features joined with frozen
embeddings, by essay id."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages.lib.core.errors import InputError
from stages.lib.core.paths import EMBEDDINGS, HANDCRAFTED


def load_features(paths: tuple[Path, ...] = (HANDCRAFTED, EMBEDDINGS)) -> pd.DataFrame:
    """All feature tables joined on `essay_id` (index)."""
    tables = []
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: feature table not found (run the stage that writes it)")
        table = pd.read_parquet(path)
        if "essay_id" not in table.columns:
            raise InputError(f"{path}: missing column 'essay_id'")
        tables.append(table.set_index("essay_id"))
    return pd.concat(tables, axis=1, join="inner")


def feature_matrix(features: pd.DataFrame, essays: pd.DataFrame, source: Path | str) -> pd.DataFrame:
    """Feature rows for `essays` in their order; names the first essay without features."""
    missing = ~essays["essay_id"].isin(features.index)
    if missing.any():
        raise InputError(f"{source}: essay {essays['essay_id'][missing].iloc[0]} has no features (re-run features)")
    return features.loc[essays["essay_id"].to_numpy()]
