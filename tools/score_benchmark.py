"""Benchmark (not a pipeline stage, not a timed test): how fast `aes-gate score` scores essays on this machine.

- **cold**: a fresh `python -m stages.lib.serving.cli score` process on the input's first `--batch-size` essays:
  interpreter start, imports, model load (artifact, spaCy, speller, encoder) and one batch, timed end to end
  from outside the process;
- **warm**: in this process, the model already loaded, every essay of the input scored through the same
  `score_file` path (reading, features, embeddings, model, flags, writing, provenance), `--repeats` times.

Writes `--out` (default `metrics/benchmark_score.json`) with essays/s for both, the per-phase seconds of an
in-process cold start (model load vs first batch) and the machine.

    python -m tools.score_benchmark --input sample.csv --out metrics/benchmark_score.json
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from stages.lib.core.atomic import write_json
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.paths import DECISION, MODELS_DIR, SCORE_BENCHMARK
from stages.lib.serving.cli import DEFAULT_BATCH, score_file
from stages.lib.serving.models import load_artifact, make_scorer
from stages.lib.serving.provenance import select_model
from stages.lib.serving.reader import Columns, inspect_input, iter_batches
from tools.machine import cpu_model


def first_batch(source_path: Path, text_column: str, batch_size: int, dest: Path) -> int:
    """Write the input's first `batch_size` essays as a CSV for the cold run; return how many."""
    source = inspect_input(source_path, Columns(text_column, "id", "prompt"))
    batch = next(iter_batches(source, batch_size))
    frame = pd.DataFrame({"id": batch["id"], "prompt": batch["prompt"], text_column: batch["text"]})
    frame.to_csv(dest, index=False)
    return len(frame)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    artifact_path, selection = select_model(args.model, args.models_dir, args.decision)
    text_column = args.text_column or load_artifact(artifact_path).schema.text
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        n_cold = first_batch(args.input, text_column, args.batch_size, tmp_dir / "first_batch.csv")
        cmd = [sys.executable, "-m", "stages.lib.serving.cli", "score", str(tmp_dir / "first_batch.csv"),
               "--out", str(tmp_dir / "cold.csv"), "--model", str(artifact_path), "--batch-size",
               str(args.batch_size), "--text-column", text_column, "--no-progress"]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        cold_seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise InputError(f"cold run failed ({done.returncode}): {done.stderr.strip()[-500:]}")

        t0 = time.perf_counter()
        scorer = make_scorer(load_artifact(artifact_path))
        load_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        score_file(tmp_dir / "first_batch.csv", tmp_dir / "first.csv", model=str(artifact_path),
                   text_column=text_column, batch_size=args.batch_size, scorer=scorer, progress=False)
        first_seconds = time.perf_counter() - t1

        warm = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            record = score_file(args.input, tmp_dir / "warm.csv", model=str(artifact_path), text_column=text_column,
                                batch_size=args.batch_size, scorer=scorer, progress=False)
            warm.append(time.perf_counter() - t)
    n = record["scores"]["rows"]
    best = min(warm)
    return {
        "command": " ".join(["python -m tools.score_benchmark", *sys.argv[1:]]),
        "model": {"arm": record["model"]["arm"], "artifact": str(artifact_path), "md5": record["model"]["md5"]
                  or record["model"]["md5_on_disk"], "selected_by": selection["by"]},
        "input": {"essays": n, "scored": record["scores"]["scored"], "sha256": record["input"]["sha256"]},
        "batch_size": args.batch_size,
        "cold": {"essays": n_cold, "seconds": round(cold_seconds, 2),
                 "essays_per_second": round(n_cold / cold_seconds, 2),
                 "what": "a fresh process: interpreter start + imports + model load + the first batch",
                 "in_process_model_load_seconds": round(load_seconds, 2),
                 "in_process_first_batch_seconds": round(first_seconds, 2)},
        "warm": {"essays": n, "repeats": args.repeats, "seconds": [round(s, 2) for s in warm],
                 "essays_per_second": round(n / best, 2),
                 "what": "model loaded; every essay read, featurised, embedded, scored, flagged and written"},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version()},
        "packages": record["packages"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="CSV or parquet of essays (a few hundred)")
    parser.add_argument("--out", type=Path, default=SCORE_BENCHMARK)
    parser.add_argument("--model", help="arm or artifact directory (default: as `aes-gate score`)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--decision", type=Path, default=DECISION)
    parser.add_argument("--text-column", help="default: the model's schema text column")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--repeats", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run_benchmark(args)
    write_json(args.out, result)
    print(f"score benchmark: cold {result['cold']['essays_per_second']} essays/s ({result['cold']['essays']} essays "
          f"in {result['cold']['seconds']} s from process start), warm {result['warm']['essays_per_second']} "
          f"essays/s ({result['warm']['essays']} essays) -> {args.out}")


if __name__ == "__main__":
    run_stage(lambda: main())
