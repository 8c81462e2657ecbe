"""A transformer arm's final-model artifact (`train_final_transformer`) and its scorer.

    manifest.json        format, arm, kind `transformer`, gate_valid / smoke, params, packages, each file's sha256
    adapter/             the LoRA adapter, saved by peft (`adapter_config.json`, `adapter_model.safetensors`)
    head.safetensors     the regression head
    transformer.json     budget, target scale, grid cutpoints, backbone spec and fingerprint
    schema.json          the dataset schema
    training_stats.json  word-count percentiles, prompts and content hashes of the essays it was trained on

On a budget marked `gate_valid: false` (the CPU budget) the manifest says `smoke: true`: a pipeline proof,
never evidence, never the default model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.lib.artifacts.files import STATS, open_artifact, read_schema
from stages.lib.core.io import read_json
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.calibration import own_scales, restore_calibrators
from stages.lib.serving.flags import FlagRules
from stages.lib.serving.scorer import BatchScorer, check_backbone, output_columns
from stages.lib.training.final import CONFIG, KIND, load_final_model


@dataclass(frozen=True)
class TransformerArtifact:
    path: Path
    manifest: dict[str, Any]
    schema: DatasetSchema
    stats: dict[str, Any]
    config: dict[str, Any]


def load_transformer(directory: Path) -> TransformerArtifact:
    """Load and verify (every file's sha256 against the manifest) a transformer artifact."""
    directory = Path(directory)
    manifest = open_artifact(directory, KIND)
    return TransformerArtifact(directory, manifest, read_schema(directory), read_json(directory / STATS),
                               read_json(directory / CONFIG))


class TransformerScorer(BatchScorer):
    """The saved arm on its backbone (peft adapter + head), its target scale and cutpoints."""

    def __init__(self, artifact: TransformerArtifact):
        self.artifact = artifact
        config = artifact.config
        check_backbone(artifact.path, config["backbone"])
        self.model, self.tokenizer, self.accelerator = load_final_model(artifact.path, config)
        self.budget = config["budget"]
        self.mean = np.asarray(config["target_scale"]["mean"])
        self.std = np.asarray(config["target_scale"]["std"])
        self.calibrators = restore_calibrators(config["calibration"], artifact.schema.targets, artifact.schema.grid)
        prep = artifact.manifest["params"]["prepare"]
        self.rules = FlagRules(artifact.schema, artifact.stats,
                               {"min_words": prep["min_words"], "max_words": prep["max_words"]})
        self.columns = output_columns(artifact.schema.targets)
        self.handcrafted = []

    def _predict(self, essay_ids: list[str], texts: list[str], prompts: list[str | None]
                 ) -> tuple[None, np.ndarray, np.ndarray]:
        from stages.lib.training.trainer import predict
        from stages.lib.windows.essay_batches import encode_essays

        data = encode_essays(texts, self.tokenizer, int(self.budget["max_length"]), int(self.budget["stride"]))
        out = predict(self.model, data, self.accelerator, pad_id=self.tokenizer.pad_token_id,
                      batch_size=int(self.budget["eval_batch_size"]), fold=-1)
        common = out.pred.numpy().astype(float) * self.std + self.mean
        continuous, on_grid = own_scales(common, self.calibrators, np.asarray(prompts, dtype=object),
                                         self.artifact.schema)
        return None, continuous, on_grid
