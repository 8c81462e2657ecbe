"""Every path the pipeline reads or writes, relative to the repository root, in one place. `dvc.yaml`
declares the same paths; `tests/test_dag.py` checks that the two agree."""

from __future__ import annotations

from pathlib import Path

# Data (DVC-cached, never committed: derived from the licensed corpus).
RAW_CORPUS = Path("data/raw/corpus.csv")
ESSAYS = Path("data/prepared/essays.parquet")
FOLDS_DIR = Path("data/folds")
HANDCRAFTED = Path("data/features/handcrafted.parquet")
EMBEDDINGS = Path("data/features/embeddings.parquet")
PREDICTIONS_DIR = Path("data/predictions")
RUNS_DIR = Path("data/runs")

# Metrics (small JSON, committed; `dvc metrics show` reads them).
METRICS_DIR = Path("metrics")
DATA_METRICS = METRICS_DIR / "data.json"
FEATURE_METRICS = METRICS_DIR / "features.json"
EMBEDDING_METRICS = METRICS_DIR / "embeddings.json"
PREFLIGHT = METRICS_DIR / "preflight.json"
ARM_METRICS_DIR = METRICS_DIR / "arms"
TRAINING_DIR = METRICS_DIR / "training"
GATE = METRICS_DIR / "gate.json"
DECISION = METRICS_DIR / "decision.json"
HEADLINE = METRICS_DIR / "headline.json"

# Reports, plots and the decision record.
ARM_REPORTS_DIR = Path("reports/arms")
REPORT = Path("reports/evaluation_report.html")
SUMMARY = Path("reports/summary.txt")
ARM_PLOTS_DIR = Path("plots/arms")
FIGURES_DIR = Path("plots/figures")
GATE_PLOTS_DIR = Path("plots/gate")
GATE_DELTAS = GATE_PLOTS_DIR / "deltas.csv"
GATE_FIGURE = GATE_PLOTS_DIR / "deltas.png"
ADR = Path("docs/decisions/0001-transformer-track-gate.md")
LOCK = Path("dvc.lock")


def run_name(arm: str, scheme: str) -> str:
    """The name one arm × scheme's evidence goes by in every folder: `<arm>_<scheme>`."""
    return f"{arm}_{scheme}"


def predictions_path(arm: str, scheme: str) -> Path:
    """The arm's out-of-fold predictions table for a scheme (written by `xgb` or `collect`)."""
    return PREDICTIONS_DIR / f"{run_name(arm, scheme)}.parquet"


def metrics_path(arm: str, scheme: str) -> Path:
    """`evaluate`'s metrics for one arm × scheme."""
    return ARM_METRICS_DIR / f"{run_name(arm, scheme)}.json"


def training_path(arm: str, scheme: str) -> Path:
    """The arm's training record for a scheme (`xgb` or `collect`)."""
    return TRAINING_DIR / f"{run_name(arm, scheme)}.json"


def arm_report_dir(arm: str, scheme: str) -> Path:
    """`evaluate`'s tables for one arm × scheme (residual rows, breakdowns, descriptives, DSM)."""
    return ARM_REPORTS_DIR / run_name(arm, scheme)


def residuals_path(arm: str, scheme: str) -> Path:
    """One row per out-of-fold essay with its residuals."""
    return arm_report_dir(arm, scheme) / "residuals.csv"


def plot_dir(arm: str, scheme: str) -> Path:
    """`evaluate`'s plot data (CSV for `dvc plots`) for one arm × scheme."""
    return ARM_PLOTS_DIR / run_name(arm, scheme)


def fold_dir(scheme: str, fold: int) -> Path:
    """One materialised fold: `train.parquet` and `val.parquet`."""
    return FOLDS_DIR / scheme / f"fold_{fold}"


def run_dir(arm: str, scheme: str, fold: int) -> Path:
    """One fine-tuning run's outputs (arm × scheme × fold)."""
    return RUNS_DIR / arm / scheme / f"fold_{fold}"
