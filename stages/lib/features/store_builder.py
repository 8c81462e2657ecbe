"""How the feature store's handcrafted table is computed from essay texts: the `features` stage runs it over
every prepared essay, the `score` command over each batch of new essays, with the same parameters."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from spacy.language import Language
from symspellpy import SymSpell

from stages.lib.core.errors import InputError
from stages.lib.core.params import Features
from stages.lib.features.linguistic import handcrafted_features, load_nlp
from stages.lib.features.mechanics import load_speller


@dataclass(frozen=True)
class FeatureTools:
    """The loaded parser and speller (load once, reuse for every batch)."""

    nlp: Language
    speller: SymSpell


def load_tools(cfg: Features, source: str) -> FeatureTools:
    """The spaCy model named in `cfg` (an error naming `source`, the file that named it, if it cannot be loaded)
    and the spelling dictionary."""
    try:
        nlp = load_nlp(cfg.spacy_model)
    except (OSError, ValueError) as exc:
        raise InputError(f"{source}: features.spacy_model {cfg.spacy_model!r} cannot be loaded ({exc})") from exc
    return FeatureTools(nlp, load_speller())


def compute(essays: pd.DataFrame, cfg: Features, source: str, progress: bool = True,
            tools: FeatureTools | None = None, n_process: int | None = None) -> pd.DataFrame:
    """`essay_id` plus one float64 column per feature, in essay order; `source` names the file `cfg` came from.
    `n_process` overrides `cfg.n_process` (how many parser processes, not what they compute)."""
    tools = tools or load_tools(cfg, source)
    features = handcrafted_features(essays["text"].tolist(), tools.nlp, tools.speller,
                                    n_process=cfg.n_process if n_process is None else n_process,
                                    batch_size=cfg.batch_size, progress=progress, mattr_window=cfg.mattr_window,
                                    hdd_draws=cfg.hdd_draws, mtld_threshold=cfg.mtld_threshold,
                                    spelling_min_chars=cfg.spelling_min_chars)
    return pd.concat([essays[["essay_id"]].reset_index(drop=True), features], axis=1)
