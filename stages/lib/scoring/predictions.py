"""The predictions table every arm writes and `evaluate` reads: one row per out-of-fold essay.

Columns: essay_id, fold, prompt, n_words, the schema's subgroup columns, and for each target T:
``true_T`` (truth on the grid), ``pred_T`` (the continuous prediction) and ``grid_T`` (the prediction
mapped to the grid, by rounding or by cutpoints fitted on training-fold data only), each on the essay's
prompt's own scale. ``true_T`` and ``grid_T`` are empty (NaN) exactly where the prompt does not score T."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.core.errors import InputError
from stages.lib.data.schema import DatasetSchema


def fold_predictions(
    val: pd.DataFrame, fold: int, schema: DatasetSchema, continuous: np.ndarray, on_grid: np.ndarray
) -> pd.DataFrame:
    """Assemble one fold's rows; `continuous` and `on_grid` are (n essays, n targets) in schema order."""
    frame = pd.DataFrame({
        "essay_id": val["essay_id"].to_numpy(),
        "fold": fold,
        "prompt": val["prompt"].to_numpy(),
        "n_words": val["n_words"].to_numpy(),
    })
    for col in schema.subgroups:
        frame[col] = val[col].to_numpy()
    for j, target in enumerate(schema.targets):
        frame[f"true_{target}"] = val[target].to_numpy(dtype=float)
        frame[f"pred_{target}"] = np.asarray(continuous, dtype=float)[:, j]
        frame[f"grid_{target}"] = np.asarray(on_grid, dtype=float)[:, j]
    return frame


def validate_predictions(frame: pd.DataFrame, schema: DatasetSchema, source: Path | str) -> pd.DataFrame:
    """Raise an `InputError` naming the file, column and row of the first problem."""
    required = ["essay_id", "fold", "prompt", "n_words", *schema.subgroups]
    required += [f"{kind}_{t}" for t in schema.targets for kind in ("true", "pred", "grid")]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}")
    if frame.empty:
        raise InputError(f"{source}: no rows")
    dup = frame["essay_id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise InputError(f"{source}: row {row}: essay {frame['essay_id'][dup].iloc[0]} appears twice")
    for target in schema.targets:
        scored = schema.scored_mask(frame["prompt"].to_numpy(), target)
        for kind in ("true", "pred", "grid"):
            values = frame[f"{kind}_{target}"].to_numpy(dtype=float)
            bad = ~np.isfinite(values)
            if kind != "pred":
                for prompt, rows in frame.groupby("prompt").indices.items():
                    bad[rows] |= ~schema.grid_for(prompt, target).on_grid(np.nan_to_num(values[rows], nan=-1e9))
                unscored = ~scored & ~np.isnan(values)
                if unscored.any():
                    row = int(np.flatnonzero(unscored)[0])
                    raise InputError(f"{source}: row {row}: column {kind}_{target} holds {float(values[row]):g}, but "
                                     f"prompt {frame['prompt'].iloc[row]!r} does not score {target} "
                                     "(dataset.prompt_targets)")
                bad &= scored
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                prompt = frame["prompt"].iloc[row]
                raise InputError(
                    f"{source}: row {row}: column {kind}_{target} value {values[row]!r} is not finite/on grid"
                    f" (prompt {prompt!r}, grid {schema.grid_for(prompt, target).label()})"
                )
    return frame


def read_predictions(path: Path, schema: DatasetSchema) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: predictions table not found (run the arm's stage)")
    return validate_predictions(pd.read_parquet(path), schema, path)
