"""Candidate prompt-agnostic feature families beyond `linguistic.FEATURES` (issue 27), each computed from a spaCy
parse of the text alone (never the prompt's identity or scores):

- `pos_sequences`: part-of-speech and tag distributions and the diversity of POS n-grams (PAES, Ridley et al. 2020,
  feeds POS sequences to a cross-prompt scorer);
- `sophistication`: lexical sophistication from word-frequency bands (`wordfreq`'s Zipf scale, which works
  offline: its frequency lists ship inside the package);
- `cohesion_global`: lexical overlap beyond adjacent sentences, given/new information and repetition.

Judged against the committed reference by `python -m tools.reference_ablation` before any is adopted."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise

import numpy as np
import pandas as pd
from spacy.language import Language
from spacy.tokens import Doc
from tqdm import tqdm
from wordfreq import zipf_frequency

from stages.lib.features.linguistic import CONTENT_POS

UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ",
        "SYM", "VERB", "X")
# Penn tags that carry tense, modality, comparison and subordination beyond the coarse UPOS classes.
PENN_TAGS = ("VBD", "VBZ", "VBP", "VBG", "VBN", "VB", "MD", "IN", "DT", "JJR", "JJS", "RBR", "RBS", "WDT", "WP", "WRB",
             "PRP$", "NNS", "NNP", "EX", "TO", "RP", "CC", "UH")
ZIPF_BANDS = ((6.0, 9.0), (5.0, 6.0), (4.0, 5.0), (3.0, 4.0), (0.01, 3.0))  # 0 = not in wordfreq's English list
RARE_ZIPF = 4.0  # below: a content word rarer than about 1 per 100,000 words

POS_SEQUENCES: dict[str, str] = {
    **{f"upos_{tag.lower()}_ratio": f"share of tokens tagged {tag} (UPOS)" for tag in UPOS},
    **{f"penn_{tag.lower().replace('$', 'S')}_ratio": f"share of tokens tagged {tag} (Penn)" for tag in PENN_TAGS},
    "pos_bigram_entropy_nats": "entropy of the UPOS bigram distribution",
    "pos_trigram_entropy_nats": "entropy of the UPOS trigram distribution",
    "pos_bigram_types_ratio": "distinct UPOS bigrams per bigram",
    "pos_trigram_types_ratio": "distinct UPOS trigrams per trigram",
    "pos_bigram_types_root": "distinct UPOS bigrams / sqrt(bigrams)",
    "pos_trigram_types_root": "distinct UPOS trigrams / sqrt(trigrams)",
    "penn_bigram_types_root": "distinct Penn-tag bigrams / sqrt(bigrams)",
    "dependency_label_entropy_nats": "entropy of the dependency labels (punctuation out)",
}
SOPHISTICATION: dict[str, str] = {
    "zipf_mean": "mean wordfreq Zipf frequency of alphabetic words (0 = unknown)",
    "zipf_sd": "SD of the words' Zipf frequencies",
    "content_zipf_mean": "mean Zipf frequency of content-word lemmas",
    "content_zipf_sd": "SD of content-word lemmas' Zipf frequencies",
    **{f"zipf_band_{lo:g}_{hi:g}_ratio": f"share of words with Zipf in [{lo:g}, {hi:g})" for lo, hi in ZIPF_BANDS},
    "zipf_unknown_ratio": "share of words absent from wordfreq's English list",
    "content_rare_ratio": f"share of content-word lemmas with 0 < Zipf < {RARE_ZIPF:g}",
    "content_rare_types_count": f"distinct content lemmas with 0 < Zipf < {RARE_ZIPF:g}",
    "content_types_zipf_mean": "mean Zipf frequency of distinct content lemmas",
}
COHESION_GLOBAL: dict[str, str] = {
    "overlap_within2_any_ratio": "share of sentence pairs at distance 1-2 sharing a content lemma",
    "overlap_within2_jaccard_ratio": "mean Jaccard overlap of content lemmas of sentences at distance 1-2",
    "overlap_all_any_ratio": "share of all sentence pairs sharing a content lemma",
    "overlap_all_jaccard_ratio": "mean Jaccard overlap of content lemmas over all sentence pairs",
    "given_lemma_share_mean": "mean share of a sentence's content lemmas already used earlier (given information)",
    "paragraph_words_sd": "population SD of words per paragraph",
    "content_lemma_repeat_ratio": "share of content-lemma tokens whose lemma occurs more than once",
    "top_content_lemma_ratio": "share of content-lemma tokens taken by the most frequent lemma",
}


def _entropy(counts: Counter) -> float:
    n = sum(counts.values())
    return -sum(v / n * math.log(v / n) for v in counts.values()) if n else 0.0


def _types(counts: Counter, root: bool) -> float:
    n = max(sum(counts.values()), 1)
    return len(counts) / (math.sqrt(n) if root else n)


def pos_sequences(doc: Doc) -> dict[str, float]:
    tokens = [t for t in doc if not t.is_space]
    n = max(len(tokens), 1)
    upos, penn = Counter(t.pos_ for t in tokens), Counter(t.tag_ for t in tokens)
    seq, tags = [t.pos_ for t in tokens], [t.tag_ for t in tokens]
    bigrams, trigrams = Counter(pairwise(seq)), Counter(zip(seq, seq[1:], seq[2:], strict=False))
    return {
        **{f"upos_{tag.lower()}_ratio": upos[tag] / n for tag in UPOS},
        **{f"penn_{tag.lower().replace('$', 'S')}_ratio": penn[tag] / n for tag in PENN_TAGS},
        "pos_bigram_entropy_nats": _entropy(bigrams),
        "pos_trigram_entropy_nats": _entropy(trigrams),
        "pos_bigram_types_ratio": _types(bigrams, root=False),
        "pos_trigram_types_ratio": _types(trigrams, root=False),
        "pos_bigram_types_root": _types(bigrams, root=True),
        "pos_trigram_types_root": _types(trigrams, root=True),
        "penn_bigram_types_root": _types(Counter(pairwise(tags)), root=True),
        "dependency_label_entropy_nats": _entropy(Counter(t.dep_ for t in tokens if not t.is_punct)),
    }


def _content_lemmas(tokens: Iterable) -> list[str]:
    return [t.lemma_.lower() for t in tokens if t.is_alpha and t.pos_ in CONTENT_POS]


def sophistication(doc: Doc) -> dict[str, float]:
    words = [t.lower_ for t in doc if t.is_alpha]
    lemmas = _content_lemmas(doc)
    zipf = np.array([zipf_frequency(w, "en") for w in words] or [0.0])
    content = np.array([zipf_frequency(w, "en") for w in lemmas] or [0.0])
    types = np.array([zipf_frequency(w, "en") for w in sorted(set(lemmas))] or [0.0])
    rare = (content > 0) & (content < RARE_ZIPF)
    return {
        "zipf_mean": float(zipf.mean()), "zipf_sd": float(zipf.std()),
        "content_zipf_mean": float(content.mean()), "content_zipf_sd": float(content.std()),
        **{f"zipf_band_{lo:g}_{hi:g}_ratio": float(((zipf >= lo) & (zipf < hi)).mean()) for lo, hi in ZIPF_BANDS},
        "zipf_unknown_ratio": float((zipf == 0).mean()),
        "content_rare_ratio": float(rare.mean()),
        "content_rare_types_count": float(((types > 0) & (types < RARE_ZIPF)).sum()),
        "content_types_zipf_mean": float(types.mean()),
    }


def _overlap(sentences: Sequence[set[str]], distance: int) -> tuple[float, float]:
    pairs = [(a, b) for i, a in enumerate(sentences) for b in sentences[i + 1:i + 1 + distance]]
    if not pairs:
        return 0.0, 0.0
    return (float(np.mean([bool(a & b) for a, b in pairs])),
            float(np.mean([len(a & b) / len(a | b) for a, b in pairs])))


def cohesion_global(doc: Doc) -> dict[str, float]:
    sentences = [s for s in (set(_content_lemmas(sent)) for sent in doc.sents) if s]
    within_any, within_jaccard = _overlap(sentences, 2)
    all_any, all_jaccard = _overlap(sentences, len(sentences))
    seen: set[str] = set()
    given = []
    for lemmas in sentences:
        if seen:
            given.append(len(lemmas & seen) / len(lemmas))
        seen |= lemmas
    paragraphs = [len(p.split()) for p in doc.text.split("\n") if p.strip()]
    counts = Counter(_content_lemmas(doc))
    total = max(sum(counts.values()), 1)
    return {
        "overlap_within2_any_ratio": within_any, "overlap_within2_jaccard_ratio": within_jaccard,
        "overlap_all_any_ratio": all_any, "overlap_all_jaccard_ratio": all_jaccard,
        "given_lemma_share_mean": float(np.mean(given)) if given else 0.0,
        "paragraph_words_sd": float(np.std(paragraphs)) if paragraphs else 0.0,
        "content_lemma_repeat_ratio": sum(v for v in counts.values() if v > 1) / total,
        "top_content_lemma_ratio": max(counts.values()) / total if counts else 0.0,
    }


FAMILIES: dict[str, tuple[dict[str, str], Callable[[Doc], dict[str, float]]]] = {
    "pos_sequences": (POS_SEQUENCES, pos_sequences),
    "sophistication": (SOPHISTICATION, sophistication),
    "cohesion_global": (COHESION_GLOBAL, cohesion_global),
}


def family_features(texts: Sequence[str], nlp: Language, families: Sequence[str], n_process: int = 1,
                    batch_size: int = 32, progress: bool = False) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """One table per family (rows in text order, columns as the family's dictionary), from one parse, and each
    family's own computing seconds (the parse excluded)."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown feature families {unknown}; known: {sorted(FAMILIES)}")
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in families}
    docs = nlp.pipe(texts, n_process=n_process, batch_size=batch_size)
    seconds = dict.fromkeys(families, 0.0)
    for doc in tqdm(docs, total=len(texts), disable=not progress, desc="feature families"):
        for name in families:
            start = time.perf_counter()
            rows[name].append(FAMILIES[name][1](doc))
            seconds[name] += time.perf_counter() - start
    tables = {name: pd.DataFrame(rows[name], columns=list(FAMILIES[name][0]), dtype="float64") for name in families}
    return tables, seconds
