"""Per-essay flags a measurement specialist needs beside a machine score. Each flag has one stated rule
(`RULES`, copied into every provenance sidecar); an essay can carry several. `empty` and `unscorable` essays
get no score; every other flag leaves the score in place and says why it deserves a human look."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from spacy.lang.en.stop_words import STOP_WORDS

from stages.lib.data.schema import DatasetSchema

FEATURE_MARGIN = 0.25  # share of the training range a feature may lie beyond the training min / max
LENGTH_PERCENTILES = ("p1", "p99")
MIN_FUNCTION_SHARE = 0.25  # training essays: 0.44 at the least, 0.61 on average
MIN_LETTER_SHARE = 0.5

RULES: dict[str, str] = {
    "empty": "no text after normalisation (empty or whitespace only): not scored",
    "unscorable": "feature extraction or the model failed on this essay: not scored (the details say why)",
    "outside_word_window": "word count outside the training word window [prepare.min_words, prepare.max_words]",
    "unusual_length": "word count below the training essays' 1st or above their 99th percentile",
    "feature_out_of_range": (f"a handcrafted feature beyond the training minimum or maximum by more than "
                             f"{FEATURE_MARGIN:.0%} of the training range"),
    "non_english": (f"under {MIN_FUNCTION_SHARE:.0%} of its words are English function words (spaCy's English "
                    "stop-word list; every training essay has over 40%)"),
    "non_alphabetic": f"under {MIN_LETTER_SHARE:.0%} of its non-space characters are letters",
    "unknown_prompt_scale": ("the schema declares per-prompt score grids and this prompt is neither among them "
                             "nor a training prompt: the on-grid score uses the global grid"),
    "in_training_data": "the same normalised text is a training essay: its score is in-sample, not a prediction",
}
FLAGS = tuple(RULES)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


@dataclass
class Flags:
    """The flags of one essay, in `FLAGS` order, each with its detail."""

    raised: dict[str, str]

    def names(self) -> str:
        return ";".join(name for name in FLAGS if name in self.raised)

    def details(self) -> str:
        return "; ".join(f"{name}: {self.raised[name]}" for name in FLAGS if name in self.raised)


def function_word_share(text: str) -> tuple[float, int]:
    """Share of the words (letter runs, apostrophes inside) that are English function words, and how many
    words there are."""
    tokens = [w.lower().replace("’", "'") for w in _WORD.findall(text)]
    if not tokens:
        return 1.0, 0
    return sum(t in STOP_WORDS for t in tokens) / len(tokens), len(tokens)


def letter_share(text: str) -> float:
    chars = [ch for ch in text if not ch.isspace()]
    return sum(ch.isalpha() for ch in chars) / len(chars) if chars else 1.0


class FlagRules:
    """The flag rules bound to one model's training statistics and schema."""

    def __init__(self, schema: DatasetSchema, stats: dict[str, Any], word_window: dict[str, int]):
        self.schema = schema
        self.window = (int(word_window["min_words"]), int(word_window["max_words"]))
        self.length = tuple(float(stats["n_words"][p]) for p in LENGTH_PERCENTILES)
        self.bounds = {}
        for name, s in stats["features"].items():
            span = float(s["max"]) - float(s["min"])
            self.bounds[name] = (float(s["min"]) - FEATURE_MARGIN * span, float(s["max"]) + FEATURE_MARGIN * span)
        self.prompts = set(stats["prompts"])
        self.training_ids = set(stats["essay_ids"])

    def text_flags(self, text: str, n_words: int, essay_id: str, prompt: str | None) -> Flags:
        """Every flag that needs only the normalised text and the prompt."""
        raised: dict[str, str] = {}
        if not text:
            raised["empty"] = "no text"
            return Flags(raised)
        low, high = self.window
        if not low <= n_words <= high:
            raised["outside_word_window"] = f"{n_words} words, window {low}–{high}"
        p_low, p_high = self.length
        if n_words < p_low or n_words > p_high:
            raised["unusual_length"] = f"{n_words} words, training 1st–99th percentile {p_low:g}–{p_high:g}"
        share, n = function_word_share(text)
        if n and share < MIN_FUNCTION_SHARE:
            raised["non_english"] = f"{share:.0%} of {n} words are English function words"
        letters = letter_share(text)
        if letters < MIN_LETTER_SHARE:
            raised["non_alphabetic"] = f"{letters:.0%} of non-space characters are letters"
        if self.schema.prompt_grids and (prompt is None or (prompt not in self.schema.prompt_grids
                                                            and prompt not in self.prompts)):
            raised["unknown_prompt_scale"] = (f"prompt {prompt!r} has no declared grid; global grid "
                                              f"{self.schema.grid.low:g}–{self.schema.grid.high:g} used")
        if essay_id in self.training_ids:
            raised["in_training_data"] = f"content hash {essay_id} is a training essay's"
        return Flags(raised)

    def feature_flags(self, flags: Flags, values: dict[str, float]) -> Flags:
        """Add `feature_out_of_range` for the handcrafted features beyond their widened training range."""
        outside = []
        for name, (low, high) in self.bounds.items():
            value = float(values[name])
            if not np.isfinite(value) or value < low or value > high:
                side = f"< {low:.4g}" if value < low else f"> {high:.4g}"
                outside.append(f"{name} {value:.4g} {side}")
        if outside:
            flags.raised["feature_out_of_range"] = f"{len(outside)} feature(s): {', '.join(outside)}"
        return flags
