"""Score a batch of raw essays with a final-model artifact, through the pipeline's own code: `prepare`'s text
normalisation and word count (`stages.lib.data.text`), and for the reference arm the `features` stage's
handcrafted features (`stages.lib.features.store_builder`), the `embeddings` stage's windowed embeddings
(`stages.lib.encoders.embedding`) and the CV path's fitted model and calibrators
(`stages.lib.reference.model.FittedReference.predict`). An essay that cannot be scored is flagged in its
row; it never stops the rest of the batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stages.lib.artifacts.files import backbone_fingerprint
from stages.lib.core.errors import InputError
from stages.lib.data.text import normalise_text, stable_id, word_count
from stages.lib.encoders.backbone import load_encoder
from stages.lib.encoders.embedding import embed_texts
from stages.lib.features.store_builder import compute, load_tools
from stages.lib.reference.artifact import ReferenceArtifact
from stages.lib.serving.flags import FLAGS, FlagRules, Flags

SCORE_SUFFIX = ""  # on-grid score column: the target's name
CONTINUOUS_SUFFIX = "_continuous"


def output_columns(targets: tuple[str, ...]) -> list[str]:
    """The scores file's columns, in order."""
    scores = [c for t in targets for c in (f"{t}{SCORE_SUFFIX}", f"{t}{CONTINUOUS_SUFFIX}")]
    return ["id", "line", "prompt", "essay_id", "n_words", "scored", *scores, "flags", "flag_details",
            *(f"flag_{name}" for name in FLAGS)]


def check_backbone(artifact: Path, recorded: dict[str, Any]) -> None:
    """The installed backbone behind the recorded spec must be the one the model was trained with."""
    found = backbone_fingerprint(recorded["spec"])
    if found["sha256"] != recorded["sha256"]:
        raise InputError(f"{artifact}: the installed backbone {recorded['spec']!r} differs from the one the model was "
                         f"trained with (sha256 {found['sha256'][:12]}… vs {recorded['sha256'][:12]}…)")


class BatchScorer:
    """What every model's scorer shares: normalisation, text flags, the per-essay fallback when a batch
    fails, the output table. A subclass loads its model and implements `_predict`."""

    artifact: Any  # ReferenceArtifact | TransformerArtifact: .path, .manifest, .schema, .stats
    rules: FlagRules
    columns: list[str]
    handcrafted: list[str]  # the features `feature_out_of_range` checks (none for a transformer)

    def _predict(self, essay_ids: list[str], texts: list[str], prompts: list[str | None]
                 ) -> tuple[pd.DataFrame | None, np.ndarray, np.ndarray]:
        """(handcrafted feature rows or None, continuous, on-grid) for normalised texts."""
        raise NotImplementedError

    def score_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        """One output row per input row (columns `output_columns`), in input order."""
        texts = [normalise_text(t) for t in batch["text"]]
        ids = [stable_id(t) for t in texts]
        n_words = [word_count(t) for t in texts]
        prompts = batch["prompt"].tolist()
        flags = [self.rules.text_flags(t, n, i, p) for t, n, i, p in zip(texts, n_words, ids, prompts, strict=True)]
        targets = self.artifact.schema.targets
        continuous = np.full((len(batch), len(targets)), np.nan)
        on_grid = np.full((len(batch), len(targets)), np.nan)
        todo = [k for k, f in enumerate(flags) if "empty" not in f.raised]
        groups = [todo] if todo else []
        while groups:
            group = groups.pop()
            try:
                rows, c, g = self._predict([ids[k] for k in group], [texts[k] for k in group],
                                           [prompts[k] for k in group])
            except Exception as exc:  # one bad essay must not stop the rest: retry one by one
                if len(group) > 1:
                    groups.extend([k] for k in reversed(group))
                    continue
                flags[group[0]].raised["unscorable"] = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
                continue
            continuous[group], on_grid[group] = c, g
            if rows is not None and self.handcrafted:
                handcrafted = rows[self.handcrafted]
                for pos, k in enumerate(group):
                    self.rules.feature_flags(flags[k], handcrafted.iloc[pos].to_dict())
        return self._table(batch, ids, n_words, continuous, on_grid, flags)

    def _table(self, batch: pd.DataFrame, ids: list[str], n_words: list[int], continuous: np.ndarray,
               on_grid: np.ndarray, flags: list[Flags]) -> pd.DataFrame:
        scored = ~np.isnan(continuous).any(axis=1)
        table = pd.DataFrame({"id": batch["id"].astype(str).to_numpy(), "line": batch["line"].to_numpy(),
                              "prompt": batch["prompt"].to_numpy(dtype=object), "essay_id": ids,
                              "n_words": np.asarray(n_words, dtype=np.int64), "scored": scored.astype(np.int64)})
        for j, target in enumerate(self.artifact.schema.targets):
            table[f"{target}{SCORE_SUFFIX}"] = on_grid[:, j].astype(float)
            table[f"{target}{CONTINUOUS_SUFFIX}"] = continuous[:, j].astype(float)
        table["flags"] = [f.names() for f in flags]
        table["flag_details"] = [f.details() for f in flags]
        for name in FLAGS:
            table[f"flag_{name}"] = np.asarray([int(name in f.raised) for f in flags], dtype=np.int64)
        return table[self.columns]


class ReferenceScorer(BatchScorer):
    """The reference artifact with its parser, speller and frozen encoder loaded once."""

    def __init__(self, artifact: ReferenceArtifact):
        self.artifact = artifact
        config = artifact.features
        self.feature_cfg, self.embedding_cfg = artifact.feature_settings, artifact.embedding_settings
        check_backbone(artifact.path, config["backbone"])
        torch.set_num_threads(self.embedding_cfg.threads)  # as the embeddings stage ran
        self.tools = load_tools(self.feature_cfg, str(artifact.path))
        self.tokenizer, self.encoder = load_encoder(self.embedding_cfg.backbone)
        self.rules = FlagRules(artifact.schema, artifact.stats, config["word_window"])
        self.columns = output_columns(artifact.schema.targets)
        self.handcrafted = artifact.handcrafted

    def feature_rows(self, essay_ids: list[str], texts: list[str]) -> pd.DataFrame:
        """Feature-store rows (handcrafted float64, embeddings float32) for normalised texts, in the
        artifact's column order."""
        handcrafted = compute(pd.DataFrame({"essay_id": essay_ids, "text": texts}), self.feature_cfg,
                              str(self.artifact.path), progress=False, tools=self.tools, n_process=1)
        handcrafted = handcrafted.drop(columns="essay_id")
        cfg = self.embedding_cfg
        vectors, _ = embed_texts(texts, self.tokenizer, self.encoder, cfg.max_length, cfg.stride, cfg.batch_tokens,
                                 progress=False)
        embedded = pd.DataFrame(vectors, columns=self.artifact.features["embedding"])
        return pd.concat([handcrafted, embedded], axis=1)[list(self.artifact.fitted.feature_columns)]

    def _predict(self, essay_ids: list[str], texts: list[str], prompts: list[str | None]
                 ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        rows = self.feature_rows(essay_ids, texts)
        continuous, on_grid = self.artifact.fitted.predict(rows.to_numpy(np.float32), np.asarray(prompts, object))
        return rows, continuous, on_grid
