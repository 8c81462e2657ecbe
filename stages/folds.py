"""Stage `folds`: seeded prompt-holdout and stratified folds; writes `data/folds/splits.json` and
per-fold `train.parquet`/`val.parquet` under `data/folds/<scheme>/fold_<k>/`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.atomic import atomic_dir, write_json
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.paths import ESSAYS
from stages.lib.data.fold_files import FOLDS_DIR, write_fold
from stages.lib.data.prepared import read_essays
from stages.lib.data.schema import DatasetSchema
from stages.lib.data.splitting import (
    SCHEMES,
    check_prompts,
    check_selected_folds,
    check_targets_span_prompts,
    make_splits,
)


def describe(essays: pd.DataFrame, masks: list[np.ndarray], scheme: str, seed: int) -> dict[str, Any]:
    return {
        "scheme": scheme,
        "n_splits": len(masks),
        "seed": seed,
        "folds": [
            {
                "fold": k,
                "n_train": int((~m).sum()),
                "n_val": int(m.sum()),
                "val_prompts": sorted(essays.loc[m, "prompt"].unique().tolist()),
                "val_ids": essays.loc[m, "essay_id"].tolist(),
            }
            for k, m in enumerate(masks)
        ],
    }


def main() -> None:
    params = load_params()
    schema = DatasetSchema.from_params(params)
    cfg, seed = params.folds, params.seed
    essays = read_essays(schema.targets)
    n_splits, lopo = cfg.n_splits, cfg.leave_one_prompt_out
    check_prompts(essays, n_splits, cfg.min_essays_per_prompt, ESSAYS, lopo)
    if lopo:
        check_selected_folds(params, essays["prompt"].nunique())
    with atomic_dir(FOLDS_DIR) as out:
        report = {}
        for scheme in SCHEMES:
            masks = make_splits(essays, scheme, n_splits, seed, schema, lopo and scheme == "prompt_holdout")
            if scheme == "prompt_holdout":
                check_targets_span_prompts(essays, masks, schema.targets, ESSAYS)
            report[scheme] = describe(essays, masks, scheme, seed)
            for k, mask in enumerate(masks):
                write_fold(out, scheme, k, essays[~mask], essays[mask])
            sizes = [f["n_val"] for f in report[scheme]["folds"]]
            print(f"{scheme}: validation sizes {sizes}")
        write_json(out / "splits.json", report)


if __name__ == "__main__":
    run_stage(main)
