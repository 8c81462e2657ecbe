"""Stage `train_final`: the reference arm fitted on every prepared essay, exactly as a CV fold fits it (same
pipeline, band weights and seed; cutpoints from inner out-of-fold predictions over all essays, prompts held
out as in the prompt_holdout scheme), saved as the versioned artifact `data/models/xgb/` that `aes-gate score`
loads (see `stages.lib.reference.artifact`)."""

from __future__ import annotations

import time

from stages.lib.core.atomic import atomic_dir
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.hashing import file_digest
from stages.lib.core.paths import EMBEDDINGS, ESSAYS, HANDCRAFTED, model_dir
from stages.lib.data.prepared import read_essays
from stages.lib.data.schema import DatasetSchema
from stages.lib.features.feature_store import load_features
from stages.lib.reference.artifact import ARM, build_reference


def main() -> None:
    params = load_params()
    schema = DatasetSchema.from_params(params)
    essays = read_essays(("n_words", *schema.targets))
    features = load_features()
    start = time.perf_counter()
    with atomic_dir(model_dir(ARM)) as out:
        inputs_md5 = {str(p): file_digest(p, "md5") for p in (ESSAYS, HANDCRAFTED, EMBEDDINGS)}
        fitted, _ = build_reference(out, essays, features, params, ESSAYS, inputs_md5=inputs_md5)
    print(f"train_final: {ARM} on {len(essays)} essays, {len(fitted.feature_columns)} features, cutpoints "
          f"{fitted.cutpoints.get(schema.primary)} in {time.perf_counter() - start:.0f}s -> {model_dir(ARM)}")


if __name__ == "__main__":
    run_stage(main)
