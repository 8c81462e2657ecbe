"""Stage `features`: handcrafted linguistic features of every prepared essay, from the texts alone (label-free,
so computed once for all essays); writes `data/features/handcrafted.parquet` and `metrics/features.json`."""

from __future__ import annotations

import time

from stages.lib.core.atomic import write_json, write_parquet
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.paths import FEATURE_METRICS, HANDCRAFTED
from stages.lib.core.runinfo import run_info
from stages.lib.data.prepared import read_texts
from stages.lib.features.linguistic import FEATURES
from stages.lib.features.store_builder import compute


def main() -> None:
    params = load_params()
    cfg = params.features
    essays = read_texts()
    start = time.perf_counter()
    table = compute(essays, cfg, source=params.source)
    seconds = time.perf_counter() - start
    report = {
        "n_essays": len(table),
        "n_features": len(FEATURES),
        "seconds": round(seconds, 1),
        "spacy_model": cfg.spacy_model,
        "dictionary": FEATURES,
        "run": run_info(params.seed),
    }
    write_parquet(HANDCRAFTED, table)
    write_json(FEATURE_METRICS, report)
    print(f"features: {len(FEATURES)} for {len(table)} essays in {seconds:.0f} s -> {HANDCRAFTED}")


if __name__ == "__main__":
    run_stage(main)
