"""Invented predictions tables for the gate, decide and report tests (random but realistic: ~40 prompts,
5 folds, half-point grid), and a workspace laid out like the pipeline's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from stages.lib.core.paths import (
    arm_report_dir,
    metrics_path,
    plot_dir,
    predictions_path,
    residuals_path,
    training_path,
)
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.evaluation import per_prompt_table, residual_rows, summarise

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


def write_params(root: Path, **gate_overrides) -> dict:
    """Copy the repository's params.yaml into `root`, with gate overrides (e.g. a smaller bootstrap)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["gate"].update(gate_overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def write_arm(root: Path, arm: str, scheme: str, frame: pd.DataFrame, params: dict,
              training: dict | None = None) -> None:
    """Lay out what the arm's training and `evaluate` stages write: predictions, metrics, plot data,
    residual rows and (optionally) training metadata."""
    schema = DatasetSchema.from_params(params)
    (root / predictions_path(arm, scheme)).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(root / predictions_path(arm, scheme), index=False)
    summary = summarise(frame, schema, params["evaluate"])
    (root / metrics_path(arm, scheme)).parent.mkdir(parents=True, exist_ok=True)
    run = {"device": "cpu:x86_64", "seed": 1, "finished_utc": "2025-11-24T12:00:00Z"}
    (root / metrics_path(arm, scheme)).write_text(json.dumps({"arm": arm, "scheme": scheme, **summary, "run": run}))
    plots = root / plot_dir(arm, scheme)
    plots.mkdir(parents=True, exist_ok=True)
    per_prompt_table(frame, schema).assign(arm=arm)[["arm", "prompt", "n", "qwk"]].to_csv(
        plots / "per_prompt_qwk.csv", index=False)
    pd.DataFrame({"actual": frame["true_Overall"].map("{:.1f}".format),
                  "predicted": frame["grid_Overall"].map("{:.1f}".format)}).to_csv(plots / "confusion.csv", index=False)
    (root / arm_report_dir(arm, scheme)).mkdir(parents=True, exist_ok=True)
    residual_rows(frame, schema).to_csv(root / residuals_path(arm, scheme), index=False)
    (root / arm_report_dir(arm, scheme) / "residuals.md").write_text("# residuals\n")
    if training is not None:
        (root / training_path(arm, scheme)).parent.mkdir(parents=True, exist_ok=True)
        (root / training_path(arm, scheme)).write_text(json.dumps({"arm": arm, "scheme": scheme, **training}))


def gpu_training(n_folds: int = 5, **overrides) -> dict:
    """Training metadata of a gate-valid GPU run."""
    return {"budget": "gpu", "gate_valid": True, "device": "cuda:NVIDIA H100", "precision": "bf16", "seed": 1,
            "finite": True, "folds": [{"fold": f, "finite": True} for f in range(n_folds)],
            "truncation": {"coverage": 1.0}, "run": {"finished_utc": "2025-11-24T13:00:00Z"}, **overrides}


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
                    seed: int = 0) -> dict:
    """A pipeline-shaped workspace in `root`: xgb under both schemes, plus each candidate in `candidates`
    (name -> {"noise": ..., "training": ..., "schemes": [...]}) on the same essays and folds."""
    params = write_params(root, bootstrap={"n_resamples": n_resamples, "confidence": 0.95})
    for k, scheme in enumerate(("prompt_holdout", "stratified_text")):
        frame = essays(scheme, seed=seed)
        write_arm(root, "xgb", scheme, predict(frame, seed=seed + 10 + k), params,
                  {"budget": "full", "folds": [{"fold": f} for f in range(5)],
                   "run": {"finished_utc": "2025-11-24T10:00:00Z"}})
        if scheme == "prompt_holdout":
            data_json(root, frame)
        for j, (arm, spec) in enumerate((candidates or {}).items()):
            if scheme in spec.get("schemes", ["prompt_holdout"]):
                arm_frame = predict(frame, seed=seed + 100 + 10 * j + k, noise=spec.get("noise", 0.35))
                write_arm(root, arm, scheme, arm_frame, params, spec.get("training"))
    return params
