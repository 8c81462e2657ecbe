"""Stage `train_final_transformer`: a transformer arm (`--arm`, in dvc.yaml `gate.baseline`) fitted on every
prepared essay with the selected budget through the `finetune` stage's own code path
(`stages.lib.training.final`), saved the peft way as `data/models/<arm>/` (adapter + head + cutpoints,
loadable offline). On the CPU budget (`gate_valid: false`) the artifact is marked a smoke artifact: a
pipeline proof, never the default model."""

from __future__ import annotations

import argparse
import time

from stages.lib.core.atomic import atomic_dir
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.params import ARMS
from stages.lib.core.paths import model_dir
from stages.lib.data.prepared import read_essays
from stages.lib.data.schema import DatasetSchema
from stages.lib.training.final import build_transformer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", required=True, choices=ARMS)
    args = parser.parse_args(argv)
    params = load_params()
    essays = read_essays(("text", "n_words", *DatasetSchema.from_params(params).targets))
    start = time.perf_counter()
    with atomic_dir(model_dir(args.arm)) as out:
        _, manifest = build_transformer(out, args.arm, essays, params)
    kind = "smoke artifact (not gate-valid)" if manifest["smoke"] else "gate-valid budget"
    print(f"train_final_transformer: {args.arm} on {manifest['trained_on']['essays']} essays "
          f"(+{manifest['trained_on']['holdout']} held out for cutpoints), budget {manifest['budget']}, {kind}, "
          f"{time.perf_counter() - start:.0f}s -> {model_dir(args.arm)}")


if __name__ == "__main__":
    run_stage(main)
