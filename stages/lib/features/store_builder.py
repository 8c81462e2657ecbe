"""How the feature store's handcrafted table is computed from essay texts: the `features` stage runs it over
every prepared essay, the `score` command over each batch of new essays, with the same parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from spacy.language import Language
from symspellpy import SymSpell

from stages.lib.core.config import params_source
from stages.lib.core.errors import InputError
from stages.lib.features.linguistic import handcrafted_features, load_nlp
from stages.lib.features.mechanics import load_speller

OPTIONS = ("mattr_window", "hdd_draws", "mtld_threshold", "spelling_min_chars")
SETTINGS = ("spacy_model", "n_process", "batch_size", *OPTIONS)  # the `features` params the stage reads


@dataclass(frozen=True)
class FeatureTools:
    """The loaded parser and speller (load once, reuse for every batch)."""

    nlp: Language
    speller: SymSpell


def load_tools(cfg: dict[str, Any]) -> FeatureTools:
    """The spaCy model named in `cfg` (a clear error if it cannot be loaded) and the spelling dictionary."""
    try:
        nlp = load_nlp(str(cfg["spacy_model"]))
    except (OSError, ValueError) as exc:
        raise InputError(f"{params_source()}: features.spacy_model {cfg['spacy_model']!r} cannot be loaded "
                         f"({exc})") from exc
    return FeatureTools(nlp, load_speller())


def compute(essays: pd.DataFrame, cfg: dict[str, Any], progress: bool = True, tools: FeatureTools | None = None,
            n_process: int | None = None) -> pd.DataFrame:
    """`essay_id` plus one float64 column per feature, in essay order. `n_process` overrides
    `cfg["n_process"]` (how many parser processes, not what they compute)."""
    tools = tools or load_tools(cfg)
    options = {key: cfg[key] for key in OPTIONS}
    features = handcrafted_features(essays["text"].tolist(), tools.nlp, tools.speller,
                                    n_process=int(cfg["n_process"] if n_process is None else n_process),
                                    batch_size=int(cfg["batch_size"]), progress=progress, **options)
    return pd.concat([essays[["essay_id"]].reset_index(drop=True), features], axis=1)
