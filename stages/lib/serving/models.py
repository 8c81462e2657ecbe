"""Open any final-model artifact by the kind its manifest declares, and its scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages.lib.artifacts.files import MANIFEST, read_manifest
from stages.lib.core.errors import InputError
from stages.lib.reference.artifact import load_reference


def load_artifact(path: Path) -> Any:
    """A `ReferenceArtifact` or a `TransformerArtifact`, verified against its manifest."""
    kind = read_manifest(Path(path)).get("kind")
    if kind == "reference":
        return load_reference(path)
    if kind == "transformer":
        from stages.lib.serving.transformer import load_transformer

        return load_transformer(path)
    raise InputError(f"{Path(path) / MANIFEST}: unknown model kind {kind!r}")


def make_scorer(artifact: Any):
    """The scorer for a loaded artifact (loads its backbone and, for the reference arm, spaCy)."""
    if artifact.manifest["kind"] == "reference":
        from stages.lib.serving.scorer import ReferenceScorer

        return ReferenceScorer(artifact)
    from stages.lib.serving.transformer import TransformerScorer

    return TransformerScorer(artifact)
