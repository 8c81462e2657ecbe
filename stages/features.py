"""Stage `features`: handcrafted linguistic features of every prepared essay (label-free, so computed
once for all essays); writes `data/features/handcrafted.parquet` and `metrics/features.json`."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow

from stages.lib.core.atomic import write_json, write_parquet
from stages.lib.core.config import load_params, section
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.paths import ESSAYS, FEATURE_METRICS, HANDCRAFTED
from stages.lib.core.runinfo import run_info
from stages.lib.features.linguistic import FEATURES
from stages.lib.features.store_builder import SETTINGS, compute


def read_essays(path: Path = ESSAYS) -> pd.DataFrame:
    """The prepared essays' ids and texts, naming the file if they are missing or unusable."""
    if not path.is_file():
        raise InputError(f"{path}: prepared essays not found (run the prepare stage)")
    try:
        essays = pd.read_parquet(path)
    except (OSError, pyarrow.ArrowException) as exc:
        raise InputError(f"{path}: not a readable parquet file ({exc})") from exc
    missing = [c for c in ("essay_id", "text") if c not in essays.columns]
    if missing:
        raise InputError(f"{path}: missing required column(s) {missing}; has {list(essays.columns)}")
    if essays.empty:
        raise InputError(f"{path}: no essays")
    bad = essays["text"].isna() | ~essays["text"].map(lambda t: isinstance(t, str))
    if bad.any():
        raise InputError(f"{path}: row {int(bad.to_numpy().argmax())}: column 'text' is not a string")
    return essays[["essay_id", "text"]].reset_index(drop=True)


def main() -> None:
    params = load_params()
    cfg = {key: section(params, "features", key) for key in SETTINGS}
    essays = read_essays(ESSAYS)
    start = time.perf_counter()
    table = compute(essays, cfg)
    seconds = time.perf_counter() - start
    report = {
        "n_essays": len(table),
        "n_features": len(FEATURES),
        "seconds": round(seconds, 1),
        "spacy_model": cfg["spacy_model"],
        "dictionary": FEATURES,
        "run": run_info(params["seed"]),
    }
    write_parquet(HANDCRAFTED, table)
    write_json(FEATURE_METRICS, report)
    print(f"features: {len(FEATURES)} for {len(table)} essays in {seconds:.0f} s -> {HANDCRAFTED}")


if __name__ == "__main__":
    run_stage(main)
