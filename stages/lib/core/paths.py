"""Every path the pipeline reads or writes, relative to the repository root, in one place. `dvc.yaml`
declares the same paths; `tests/test_dag.py` checks evaluate's outputs against this module and, on an audited
end-to-end run, that every stage reads and writes only what `dvc.yaml` declares."""

from __future__ import annotations

from pathlib import Path

# Data (DVC-cached, never committed: derived from the licensed corpus).
RAW_CORPUS = Path("data/raw/corpus.csv")
ESSAYS = Path("data/prepared/essays.parquet")
TEXTS = Path("data/prepared/texts.parquet")  # the essays' ids and texts alone: the label-free stages' input
FOLDS_DIR = Path("data/folds")
HANDCRAFTED = Path("data/features/handcrafted.parquet")
EMBEDDINGS = Path("data/features/embeddings.parquet")
PREDICTIONS_DIR = Path("data/predictions")
RUNS_DIR = Path("data/runs")
MULTISCALE_CORPUS = Path("data/external/ellipse_multiscale.csv")  # tools.multiscale_corpus (never committed)

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

# Where stages write: the roots swept for stale temporary siblings a killed writer left behind.
OUTPUT_ROOTS = (Path("data"), METRICS_DIR, Path("plots"), Path("reports"), ADR.parent)


def run_name(arm: str, scheme: str) -> str:
    """The name one arm × scheme's evidence goes by in every folder: `<arm>_<scheme>`."""
    return f"{arm}_{scheme}"


def seed_name(seed: int) -> str:
    """A training seed's folder or file stem: `seed_<seed>` (a seed is part of a run's identity)."""
    return f"seed_{int(seed)}"


def predictions_dir(arm: str, scheme: str) -> Path:
    """The arm's out-of-fold predictions for a scheme, one table per training seed."""
    return PREDICTIONS_DIR / run_name(arm, scheme)


def predictions_path(arm: str, scheme: str, seed: int) -> Path:
    """One seed's out-of-fold predictions table (written by `xgb` or `collect`)."""
    return predictions_dir(arm, scheme) / f"{seed_name(seed)}.parquet"


def metrics_path(arm: str, scheme: str) -> Path:
    """`evaluate`'s metrics for one arm × scheme."""
    return ARM_METRICS_DIR / f"{run_name(arm, scheme)}.json"


def training_path(arm: str, scheme: str, seed: int) -> Path:
    """One seed's training record for an arm × scheme (`xgb` or `collect`)."""
    return TRAINING_DIR / run_name(arm, scheme) / f"{seed_name(seed)}.json"


def arm_report_dir(arm: str, scheme: str) -> Path:
    """`evaluate`'s tables for one arm × scheme (residual rows, breakdowns, descriptives, DSM)."""
    return ARM_REPORTS_DIR / run_name(arm, scheme)


def residuals_path(arm: str, scheme: str) -> Path:
    """One row per out-of-fold essay with its residuals."""
    return arm_report_dir(arm, scheme) / "residuals.csv"


def residual_report_path(arm: str, scheme: str) -> Path:
    """`evaluate`'s residual-diagnostics report (markdown) for one arm × scheme."""
    return arm_report_dir(arm, scheme) / "residuals.md"


# `evaluate`'s named tables, one CSV per analysis (as RSMTool writes them): every statistic the report shows.
ARM_TABLES = (
    "descriptives",  # N, human and system mean and SD
    "score_distribution",  # essays per score point, human and system
    "subgroup_dsm",  # per subgroup level: N, SMD, DSM (the missing-value level marked unrecorded)
    "residual_by_band",  # residual by human score band
    "residual_by_length",  # by word-count quartile
    "residual_by_fold",
    "residual_by_subgroup",  # by every subgroup level
    "residual_by_prompt",  # per prompt: N, QWK, agreement, mean residual
    "confusion_matrix",  # actual × predicted counts on the full grid
)


def arm_table_path(arm: str, scheme: str, table: str) -> Path:
    """One of `evaluate`'s named tables (`ARM_TABLES`) for one arm × scheme."""
    if table not in ARM_TABLES:
        raise ValueError(f"unknown evaluate table {table!r} (known: {', '.join(ARM_TABLES)})")
    return arm_report_dir(arm, scheme) / f"{table}.csv"


def plot_dir(arm: str, scheme: str) -> Path:
    """`evaluate`'s plot data (CSV for `dvc plots`) for one arm × scheme."""
    return ARM_PLOTS_DIR / run_name(arm, scheme)


# `evaluate`'s plot data, one CSV each for `dvc plots`.
PLOT_DATA = ("confusion", "per_prompt_qwk", "residual_vs_length")  # per-essay pairs; per-prompt QWK; residual by length


def plot_data_path(arm: str, scheme: str, name: str) -> Path:
    """One of `evaluate`'s plot-data files (`PLOT_DATA`)."""
    if name not in PLOT_DATA:
        raise ValueError(f"unknown evaluate plot {name!r} (known: {', '.join(PLOT_DATA)})")
    return plot_dir(arm, scheme) / f"{name}.csv"


def fold_dir(scheme: str, fold: int) -> Path:
    """One materialised fold: `train.parquet` and `val.parquet`."""
    return FOLDS_DIR / scheme / f"fold_{fold}"


def seed_runs_dir(arm: str, scheme: str, seed: int) -> Path:
    """Every fold's fine-tuning run of one arm × scheme × seed (what `collect` reads)."""
    return RUNS_DIR / arm / scheme / seed_name(seed)


def run_dir(arm: str, scheme: str, fold: int, seed: int) -> Path:
    """One fine-tuning run's outputs (arm × scheme × seed × fold)."""
    return seed_runs_dir(arm, scheme, seed) / f"fold_{fold}"


# The final models: each arm fitted on every prepared essay, one artifact directory per arm
# (`train_final`), and the model card of the default model (`model_card`).
MODELS_DIR = Path("data/models")
MODEL_CARD = Path("reports/model_card.md")  # the committed copy
MODEL_CARD_BESIDE = MODELS_DIR / "model_card.md"  # the copy beside the artifacts (DVC-cached)
SCORE_BENCHMARK = METRICS_DIR / "benchmark_score.json"  # `python -m tools.score_benchmark`


def model_dir(arm: str) -> Path:
    """An arm's final-model artifact directory."""
    return MODELS_DIR / arm
