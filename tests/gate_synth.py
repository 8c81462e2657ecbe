"""Invented predictions tables for the gate, decide and report tests (random but realistic: ~40 prompts,
5 folds, half-point grid), and a workspace laid out like the pipeline's: evaluate's outputs are written by the
evaluate stage itself, training records by the pipeline's own builder."""

from __future__ import annotations

import dataclasses
import json
from contextlib import chdir
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from stages import evaluate
from stages.lib.core.config import load_params
from stages.lib.core.params import Params
from stages.lib.core.paths import metrics_path, predictions_path, training_path
from stages.lib.scoring.training_record import LOSS, PREDICTION, FoldRecord, build_record

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("Overall", "Cohesion", "Syntax", "Vocabulary", "Phraseology", "Grammar", "Conventions")


def snap(values: np.ndarray) -> np.ndarray:
    return 1.0 + np.rint((np.clip(values, 1.0, 5.0) - 1.0) / 0.5) * 0.5


def essays(scheme: str = "prompt_holdout", n_prompts: int = 40, n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Essays with truth on the grid; prompt sizes 10–150; folds by prompt or at random."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 150, size=n_prompts)
    prompt = np.repeat([f"Prompt {i:02d}" for i in range(n_prompts)], sizes)
    n = len(prompt)
    level = rng.normal(3.1, 0.6, n)
    frame = pd.DataFrame({
        "essay_id": [f"E{i:05d}" for i in range(n)],
        "prompt": prompt,
        "n_words": rng.integers(200, 1000, n),
        "gender": rng.choice(["Female", "Male"], n),
        "grade": rng.choice(["8", "9", "10", "11", "12"], n),
        "race_ethnicity": rng.choice(["Hispanic/Latino", "White", "Asian/Pacific Islander", "Black/African American"],
                                     n),
        "SES": rng.choice(["Economically disadvantaged", "Not economically disadvantaged"], n),
    })
    if scheme == "prompt_holdout":
        order = np.argsort(-sizes)
        fold_of = {f"Prompt {p:02d}": i % n_folds for i, p in enumerate(order)}
        frame["fold"] = frame["prompt"].map(fold_of)
    else:
        frame["fold"] = rng.permutation(np.arange(n) % n_folds)
    for target in TARGETS:
        frame[f"true_{target}"] = snap(level + rng.normal(0, 0.3, n))
    return frame


def predict(frame: pd.DataFrame, seed: int, noise: float = 0.35, bias: float = 0.0, prompt_sd: float = 0.1,
            prompt_effects: dict[str, float] | None = None) -> pd.DataFrame:
    """A predictions table for one arm on `frame`'s essays: shrunken truth plus essay and prompt noise."""
    rng = np.random.default_rng(seed)
    prompts = sorted(frame["prompt"].unique())
    effects = prompt_effects or dict(zip(prompts, rng.normal(0, prompt_sd, len(prompts)), strict=True))
    shift = frame["prompt"].map(effects).to_numpy(dtype=float)
    out = frame.copy()
    for target in TARGETS:
        truth = frame[f"true_{target}"].to_numpy()
        continuous = 0.75 * truth + 0.78 + bias + shift + rng.normal(0, noise, len(frame))
        out[f"pred_{target}"] = continuous
        out[f"grid_{target}"] = snap(continuous)
    columns = ["essay_id", "fold", "prompt", "n_words", "gender", "grade", "race_ethnicity", "SES"]
    columns += [f"{k}_{t}" for t in TARGETS for k in ("true", "pred", "grid")]
    return out[columns]


def write_params(root: Path, seeds: dict[str, list[int]] | None = None, **gate_overrides) -> Params:
    """Copy the repository's params.yaml into `root`, with training seeds (default one per arm) and gate
    overrides (e.g. a smaller bootstrap); returns them as a stage reads that file (`load_params`)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["seeds"] = seeds or {"xgb": [1], "finetune": [1]}
    for budget in params["finetune"]["budgets"].values():  # the budget profiles' seeds must be among them
        budget["seeds"] = params["seeds"]["finetune"][:1]
    params["gate"].update(gate_overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return load_params(root / "params.yaml")


def write_arm(root: Path, arm: str, scheme: str, frames: pd.DataFrame | list[pd.DataFrame], params: Params,
              training: dict | None = None) -> None:
    """Lay out what the arm's training stages write, one predictions table (and optionally a training record)
    per training seed the params list for the arm, and run the `evaluate` stage on them (metrics, named tables,
    residual rows and report, plot data)."""
    frames = [frames] if isinstance(frames, pd.DataFrame) else frames
    seeds = params.seeds.of(arm)
    assert len(frames) == len(seeds), f"{arm}: {len(frames)} tables for seeds {seeds}"
    for seed, frame in zip(seeds, frames, strict=True):
        path = root / predictions_path(arm, scheme, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
        if training is not None:
            record = root / training_path(arm, scheme, seed)
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps({**training, "arm": arm, "scheme": scheme, "seed": seed}))
    with chdir(root):
        evaluate.evaluate(arm, scheme, params)
    metrics = json.loads((root / metrics_path(arm, scheme)).read_text())
    metrics["run"]["finished_utc"] = "2025-11-24T12:00:00Z"  # a fixed date, so the decision record's is testable
    (root / metrics_path(arm, scheme)).write_text(json.dumps(metrics))


def training_record(n_folds: int = 5, *, budget: str = "gpu", steps: int = 32, essays: int = 400,
                    fold_checks: dict[int, dict[str, int]] | None = None, expected_folds: int = 5,
                    finished: str = "2025-11-24T13:00:00Z", device: str = "cuda:0", precision: str = "bf16",
                    **fields) -> dict:
    """A training record as `xgb` and `collect` write it (the pipeline's `build_record`): `n_folds` folds of
    `steps` training steps each, every loss and validation prediction checked unless `fold_checks` replaces a
    fold's checks; `fields` replace arm-level fields of the built record (e.g. `gate_valid=False`)."""
    checks = {LOSS: steps, "gradient norm": steps // 2, PREDICTION: essays} if steps else {PREDICTION: essays}
    folds = [FoldRecord(fold=f, seconds=60.0, device=device, precision=precision, steps=steps, essays_scored=essays,
                        finite_checks=(fold_checks or {}).get(f, checks), settings={"lr": 2e-5, "epochs": 3})
             for f in range(n_folds)]
    record = build_record(arm="arm", scheme="scheme", budget=budget, gate_valid=budget == "gpu",
                          backbone="sentence-transformers/all-mpnet-base-v2" if steps else "xgboost", seed=1,
                          folds=folds, expected_folds=list(range(expected_folds)), n_essays=essays * n_folds,
                          run={"finished_utc": finished})
    return dataclasses.replace(record, **fields).to_dict()


def gpu_training(n_folds: int = 5, **overrides) -> dict:
    """The training record of a gate-valid GPU run (overrides as for `training_record`)."""
    return training_record(n_folds, **overrides)


def data_json(root: Path, frame: pd.DataFrame) -> None:
    counts = frame["prompt"].value_counts().sort_index()
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/data.json").write_text(json.dumps({
        "rows_in": len(frame) + 50, "rows_out": len(frame),
        "dropped": {"excluded_prompt": 10, "duplicate_text": 0, "below_min_words": 30, "above_max_words": 10},
        "n_prompts": len(counts), "words": {"min": 200, "median": 400.0, "max": 1000},
        "score_mean": {"Overall": float(frame["true_Overall"].mean())},
        "essays_per_prompt": {str(k): int(v) for k, v in counts.items()},
    }))


def build_workspace(root: Path, candidates: dict[str, dict] | None = None, n_resamples: int = 300,
                    seed: int = 0, seeds: dict[str, list[int]] | None = None) -> Params:
    """A pipeline-shaped workspace in `root`: xgb under both schemes, plus each candidate in `candidates`
    (name -> {"noise": ..., "training": ..., "schemes": [...]}) on the same essays and folds; one table per
    training seed in `seeds` (default one per arm), each seed a fresh draw of the arm's noise."""
    params = write_params(root, seeds, bootstrap={"n_resamples": n_resamples, "confidence": 0.95})
    for k, scheme in enumerate(("prompt_holdout", "stratified_text")):
        frame = essays(scheme, seed=seed)
        write_arm(root, "xgb", scheme, [predict(frame, seed=seed + 10 + k + 1000 * i)
                                        for i, _ in enumerate(params.seeds.of("xgb"))], params,
                  training_record(budget="full", steps=0, device="cpu", precision="fp32", gate_valid=True,
                                  finished="2025-11-24T10:00:00Z"))
        if scheme == "prompt_holdout":
            data_json(root, frame)
        for j, (arm, spec) in enumerate((candidates or {}).items()):
            if scheme in spec.get("schemes", ["prompt_holdout"]):
                arm_frames = [predict(frame, seed=seed + 100 + 10 * j + k + 1000 * i, noise=spec.get("noise", 0.35))
                              for i, _ in enumerate(params.seeds.of(arm))]
                write_arm(root, arm, scheme, arm_frames, params, spec.get("training"))
    return params
