"""Read `evaluate`'s named tables back for display (levels and bands as text, as evaluate wrote them)."""

from __future__ import annotations

import pandas as pd

from stages.lib.core.paths import ARM_TABLES, arm_table_path

_TEXT = {"subgroup": str, "level": str, "score_band": str, "length_band": str, "prompt": str, "actual": str}


def read_arm_tables(arm: str, scheme: str, names: tuple[str, ...] = ARM_TABLES) -> dict[str, pd.DataFrame] | None:
    """`{table name: frame}` of one arm × scheme, or None when evaluate has not written them all."""
    paths = {name: arm_table_path(arm, scheme, name) for name in names}
    if not all(path.is_file() for path in paths.values()):
        return None
    return {name: pd.read_csv(path, dtype=_TEXT) for name, path in paths.items()}
