"""Stage `folds`: seeded prompt-holdout and stratified folds; writes `data/folds/splits.json` and
per-fold `train.parquet`/`val.parquet` under `data/folds/<scheme>/fold_<k>/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.atomic import atomic_dir, write_json
from stages.lib.core.config import load_params, params_source
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.paths import ESSAYS
from stages.lib.data.fold_files import FOLDS_DIR, write_fold
from stages.lib.data.schema import DatasetSchema
from stages.lib.data.splitting import BalancedGroupKFold, score_bands, stratified_splitter

SCHEMES = ("prompt_holdout", "stratified_text")


def read_essays(path: Path = ESSAYS) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: prepared essays not found (run the prepare stage)")
    return pd.read_parquet(path)


def check_prompts(essays: pd.DataFrame, n_splits: int, min_essays: int, source: Path) -> None:
    """Stop on too few prompts to hold out, or a prompt too small to stand as held-out evidence."""
    counts = essays["prompt"].value_counts()
    if len(counts) < n_splits:
        raise InputError(
            f"{source}: {len(counts)} prompts {sorted(counts.index)} cannot fill {n_splits} prompt-holdout folds"
        )
    small = counts[counts < min_essays]
    if not small.empty:
        prompt, n = small.index[0], int(small.iloc[0])
        raise InputError(
            f"{source}: prompt {prompt!r} has {n} essay(s), fewer than folds.min_essays_per_prompt={min_essays}; "
            "exclude it in prepare.exclude_prompts or lower the minimum"
        )


def check_selected_folds(params: dict[str, Any], n_prompts: int) -> None:
    """With leave-one-prompt-out, `finetune.folds` must name folds that exist: one per prompt."""
    beyond = [k for k in params["finetune"]["folds"] if k >= n_prompts]
    if beyond:
        raise InputError(f"{params_source(params)}: finetune.folds {params['finetune']['folds']}: fold(s) {beyond} do "
                         f"not exist: folds.leave_one_prompt_out makes {n_prompts} folds, one per prompt "
                         f"(0 … {n_prompts - 1})")


def make_splits(essays: pd.DataFrame, scheme: str, n_splits: int, seed: int, schema: DatasetSchema,
                leave_one_prompt_out: bool = False) -> list[np.ndarray]:
    """Validation masks, one per fold, for `scheme`; `leave_one_prompt_out` makes prompt_holdout hold out one
    prompt per fold (fold k = the k-th prompt in sorted order)."""
    if scheme == "prompt_holdout" and leave_one_prompt_out:
        prompts = essays["prompt"].to_numpy()
        return [prompts == p for p in sorted(set(prompts))]
    if scheme == "prompt_holdout":
        splitter = BalancedGroupKFold(n_splits, random_state=seed)
        groups = essays["prompt"].to_numpy()
        return [np.isin(np.arange(len(essays)), val) for _, val in splitter.split(essays, groups=groups)]
    if scheme == "stratified_text":
        if len(essays) < n_splits:
            raise InputError(f"{ESSAYS}: {len(essays)} essays cannot fill {n_splits} stratified folds")
        primary = schema.to_common(essays[schema.primary].to_numpy(), essays["prompt"].to_numpy(), schema.primary)
        bands = score_bands(schema.grid.to_category(primary), n_splits)
        folds = stratified_splitter(n_splits, seed).split(np.zeros(len(essays)), bands)
        masks = []
        for _, val in folds:
            mask = np.zeros(len(essays), dtype=bool)
            mask[val] = True
            masks.append(mask)
        return masks
    raise InputError(f"params.yaml: unknown fold scheme {scheme!r}; expected one of {SCHEMES}")


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
    cfg = params["folds"]
    seed = int(params["seed"])
    essays = read_essays()
    n_splits = int(cfg["n_splits"])
    lopo = bool(cfg.get("leave_one_prompt_out", False))
    check_prompts(essays, n_splits, int(cfg["min_essays_per_prompt"]), ESSAYS)
    if lopo:
        check_selected_folds(params, essays["prompt"].nunique())
    with atomic_dir(FOLDS_DIR) as out:
        report = {}
        for scheme in SCHEMES:
            masks = make_splits(essays, scheme, n_splits, seed, schema, lopo and scheme == "prompt_holdout")
            report[scheme] = describe(essays, masks, scheme, seed)
            for k, mask in enumerate(masks):
                write_fold(out, scheme, k, essays[~mask], essays[mask])
            sizes = [f["n_val"] for f in report[scheme]["folds"]]
            print(f"{scheme}: validation sizes {sizes}")
        write_json(out / "splits.json", report)


if __name__ == "__main__":
    run_stage(main)
