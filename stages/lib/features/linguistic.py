"""Handcrafted, construct-relevant linguistic features of essays: length and structure, word
statistics, lexical diversity (lexicalrichness), readability (textstat), conventions (symspellpy and
`stages.lib.features.mechanics`), syntactic complexity (spaCy parse) and cohesion markers. Label-free."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import spacy

with warnings.catch_warnings():  # textstat 0.7.4 imports pkg_resources, which warns on every import
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import textstat as textstat_module
from lexicalrichness import LexicalRichness
from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Token
from spacy.util import filter_spans
from symspellpy import SymSpell
from tqdm import tqdm

from stages.lib.features.mechanics import Parsed, Word, mechanics_counts

# textstat 0.7.4 (the last release that works offline) imports `pkg_resources`: setuptools<81 is pinned.
textstat = textstat_module.textstat
textstat.set_rounding(False)  # full precision instead of 1-2 decimals

NEWLINE_BREAKS = "newline_sentence_breaks"
CLAUSAL_DEPS = frozenset({"advcl", "ccomp", "xcomp", "acl", "relcl", "csubj", "csubjpass"})
VERBAL = frozenset({"VERB", "AUX"})
CONTENT_POS = frozenset({"NOUN", "PROPN", "VERB", "ADJ", "ADV"})
THIRD_PERSON = frozenset({"he", "him", "his", "she", "her", "hers", "it", "its", "they", "them", "their",
                          "theirs", "himself", "herself", "itself", "themselves"})
POS_RATES = {"nouns": "NOUN", "verbs": "VERB", "adjectives": "ADJ", "adverbs": "ADV", "pronouns": "PRON"}
# No library lists English connectives by relation; these follow the usual additive / contrastive /
# causal / temporal split (Halliday & Hasan; Coh-Metrix). "and" and "while" are left out as mostly
# phrasal or ambiguous; "so" counts unless it intensifies ("so much"); ordinals count sentence-first.
CONNECTIVES: dict[str, tuple[str, ...]] = {
    "additive": ("also", "in addition", "additionally", "furthermore", "moreover", "besides", "as well as",
                 "for example", "for instance", "such as", "in other words", "similarly", "likewise",
                 "not only"),
    "contrastive": ("but", "however", "although", "though", "even though", "even if", "whereas", "yet",
                    "nevertheless", "nonetheless", "on the other hand", "in contrast", "instead", "despite",
                    "in spite of", "unlike", "otherwise", "on the contrary", "rather than"),
    "causal": ("because", "because of", "so", "so that", "therefore", "thus", "hence", "as a result",
               "consequently", "due to", "for this reason", "that is why", "that's why", "since"),
    "temporal": ("first", "firstly", "first of all", "second", "secondly", "third", "thirdly", "next",
                 "then", "after that", "afterwards", "finally", "lastly", "last", "meanwhile", "eventually",
                 "in the end", "in conclusion", "to conclude", "to sum up", "before", "after", "until",
                 "when", "whenever", "later", "now"),
}
SENTENCE_FIRST_ONLY = frozenset({"first", "second", "third", "last", "next", "now"})

FEATURES: dict[str, str] = {
    "words_count": "orthographic words (a clitic such as n't joins its word)",
    "sentences_count": "sentences from the parser, also split at line breaks",
    "paragraphs_count": "non-empty lines (paragraphs are newline or blank-line separated)",
    "characters_count": "non-whitespace characters",
    "words_per_sentence_mean": "mean words per sentence",
    "words_per_sentence_sd": "population standard deviation of words per sentence (0 for one sentence)",
    "sentences_per_paragraph_mean": "sentences divided by paragraphs",
    "word_length_chars_mean": "mean letters and digits per word",
    "long_words_ratio": "share of words with 7 or more letters",
    "syllables_per_word_mean": "textstat syllables divided by textstat word count",
    "mtld_score": "MTLD (McCarthy & Jarvis 2010) at features.mtld_threshold, lexicalrichness",
    "mattr_ratio": "moving-average TTR over features.mattr_window-word windows, lexicalrichness",
    "root_ttr_score": "Guiraud's root type-token ratio, types / sqrt(tokens), lexicalrichness",
    "hdd_score": "HD-D (McCarthy & Jarvis 2007) with features.hdd_draws draws, lexicalrichness",
    "flesch_reading_ease_score": "Flesch reading ease, textstat (higher = easier)",
    "flesch_kincaid_grade_level": "Flesch-Kincaid grade level, textstat",
    "dale_chall_score": "Dale-Chall readability score, textstat",
    "coleman_liau_grade_level": "Coleman-Liau index (US grade), textstat",
    "spelling_errors_per_100_words": "words absent from symspellpy's English frequency dictionary "
                                     "(proper nouns, acronyms, numbers and 1-letter words skipped)",
    "capitalisation_errors_per_100_words": "mid-sentence Title-case common words and internal capitals (tHe)",
    "lowercase_sentence_starts_per_100_words": "sentences (after . ! ? or a line break) starting lowercase",
    "lowercase_i_per_100_words": 'the pronoun "i" written lowercase',
    "missing_final_punctuation_per_100_words": "sentences not ending in . ! ? (incl. parser-split run-ons)",
    "repeated_punctuation_per_100_words": "runs such as !!, ?!, ,, or .. (an ellipsis ... is not counted)",
    "parse_depth_mean_levels": "mean over sentences of the deepest token's arcs from the root",
    "parse_depth_max_levels": "deepest dependency parse in the text, arcs from the root",
    "clauses_per_sentence_ratio": "clauses (main + clausal dependents + coordinated verbs) per sentence",
    "subordinate_clauses_per_clause_ratio": "clausal dependents (advcl ccomp xcomp acl relcl csubj) per clause",
    "dependency_distance_mean_tokens": "mean token distance between a word and its head (punctuation out)",
    "noun_phrase_length_mean_tokens": "mean tokens per spaCy noun chunk",
    "noun_chunks_per_sentence_ratio": "spaCy noun chunks per sentence",
    **{f"{name}_per_100_words": f"{pos} tokens per 100 words" for name, pos in POS_RATES.items()},
    **{f"connectives_{kind}_per_100_words": f"{kind} connectives (e.g. {', '.join(words[:3])})"
       for kind, words in CONNECTIVES.items()},
    "third_person_pronouns_per_100_words": "referring third-person pronouns (he, she, it, they, ...)",
    "adjacent_overlap_any_ratio": "share of adjacent sentence pairs sharing a content lemma",
    "adjacent_overlap_jaccard_ratio": "mean Jaccard overlap of content lemmas of adjacent sentences",
}


@Language.component(NEWLINE_BREAKS)
def newline_sentence_breaks(doc: Doc) -> Doc:
    """Start a sentence after every line break; the parser keeps these boundaries."""
    for token in doc[1:]:
        prev = doc[token.i - 1]
        if prev.is_space and "\n" in prev.text and not token.is_space:
            token.is_sent_start = True
    return doc


def load_nlp(name: str) -> Language:
    """The spaCy model without NER, with line breaks as sentence boundaries."""
    nlp = spacy.load(name, exclude=["ner"])
    if "parser" not in nlp.pipe_names:
        raise ValueError(f"spaCy model {name!r} has no dependency parser")
    nlp.add_pipe(NEWLINE_BREAKS, before="parser")
    return nlp


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _per_100(count: float, n_words: int) -> float:
    return _ratio(100.0 * count, n_words)


def _tree_depths(sent: list[Token]) -> list[int]:
    depth: dict[int, int] = {}
    for token in sent:
        path = []
        node = token
        while node.i not in depth and node.head.i != node.i:
            path.append(node.i)
            node = node.head
        base = depth.setdefault(node.i, 0)
        for offset, i in enumerate(reversed(path), start=1):
            depth[i] = base + offset
    return [depth[t.i] for t in sent if not (t.is_punct or t.is_space)]


def _connective_matcher(nlp: Language) -> PhraseMatcher:
    matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
    for kind, phrases in CONNECTIVES.items():
        matcher.add(kind, [nlp.make_doc(p) for p in phrases])
    return matcher


def _connectives(doc: Doc, matcher: PhraseMatcher, starts: set[int]) -> dict[str, int]:
    counts = dict.fromkeys(CONNECTIVES, 0)
    matches = matcher(doc)
    labels = {(s, e): doc.vocab.strings[m] for m, s, e in matches}
    spans = filter_spans([doc[s:e] for _, s, e in matches])
    for span in spans:
        text = span.text.lower()
        if text in SENTENCE_FIRST_ONLY and span.start not in starts:
            continue
        if text == "so" and span.root.dep_ == "advmod" and span.root.head.pos_ in {"ADJ", "ADV"}:
            continue
        counts[labels[(span.start, span.end)]] += 1
    return counts


def _lexical_diversity(tokens: list[str], mattr_window: int, hdd_draws: int,
                       mtld_threshold: float) -> dict[str, float]:
    if not tokens:
        return {"mtld_score": 0.0, "mattr_ratio": 0.0, "root_ttr_score": 0.0, "hdd_score": 0.0}
    lex = LexicalRichness(tokens, preprocessor=None, tokenizer=None)
    # MATTR and HD-D need at least window/draws tokens; on a shorter text both reduce to the TTR.
    return {
        "mtld_score": float(lex.mtld(threshold=mtld_threshold)),
        "mattr_ratio": float(lex.mattr(window_size=min(mattr_window, lex.words))),
        "root_ttr_score": float(lex.rttr),
        "hdd_score": float(lex.hdd(draws=min(hdd_draws, lex.words))),
    }


def _readability(text: str) -> dict[str, float]:
    has_words = textstat.lexicon_count(text) > 0
    return {
        "syllables_per_word_mean": _ratio(textstat.syllable_count(text), textstat.lexicon_count(text)),
        "flesch_reading_ease_score": textstat.flesch_reading_ease(text) if has_words else 0.0,
        "flesch_kincaid_grade_level": textstat.flesch_kincaid_grade(text) if has_words else 0.0,
        "dale_chall_score": textstat.dale_chall_readability_score(text) if has_words else 0.0,
        "coleman_liau_grade_level": textstat.coleman_liau_index(text) if has_words else 0.0,
    }


def _syntax(parsed: Parsed, n_sents: int) -> dict[str, float]:
    depths, dependents, coordinated, distances = [], 0, 0, []
    for sent in parsed.sents:
        tree = _tree_depths(sent)
        if tree:
            depths.append(max(tree))
        for token in sent:
            if token.is_punct or token.is_space:
                continue
            dependents += token.dep_ in CLAUSAL_DEPS
            coordinated += token.dep_ == "conj" and token.pos_ in VERBAL and token.head.pos_ in VERBAL
            if token.head.i != token.i:
                distances.append(abs(token.i - token.head.i))
    clauses = n_sents + dependents + coordinated
    chunks = [len(chunk) for chunk in parsed.doc.noun_chunks]
    return {
        "parse_depth_mean_levels": float(np.mean(depths)) if depths else 0.0,
        "parse_depth_max_levels": float(max(depths, default=0)),
        "clauses_per_sentence_ratio": _ratio(clauses, n_sents),
        "subordinate_clauses_per_clause_ratio": _ratio(dependents, clauses),
        "dependency_distance_mean_tokens": float(np.mean(distances)) if distances else 0.0,
        "noun_phrase_length_mean_tokens": float(np.mean(chunks)) if chunks else 0.0,
        "noun_chunks_per_sentence_ratio": _ratio(len(chunks), n_sents),
    }


def _overlap(sentences: list[list[Word]]) -> dict[str, float]:
    lemmas = [{w.token.lemma_.lower() for w in sent
               if w.token.pos_ in CONTENT_POS and not w.token.is_stop and w.token.is_alpha}
              for sent in sentences]
    pairs = list(itertools.pairwise(lemmas))
    shared = [len(a & b) for a, b in pairs]
    jaccard = [_ratio(n, len(a | b)) for n, (a, b) in zip(shared, pairs, strict=True)]
    return {
        "adjacent_overlap_any_ratio": _ratio(sum(n > 0 for n in shared), len(pairs)),
        "adjacent_overlap_jaccard_ratio": float(np.mean(jaccard)) if jaccard else 0.0,
    }


def doc_features(doc: Doc, speller: SymSpell, matcher: PhraseMatcher, *, mattr_window: int = 50,
                 hdd_draws: int = 42, mtld_threshold: float = 0.72, spelling_min_chars: int = 2
                 ) -> dict[str, float]:
    """All features of one parsed text (see `FEATURES`)."""
    text = doc.text
    parsed = Parsed.of(doc)
    sentences = parsed.words
    words = [w for sent in sentences for w in sent]
    n_words, n_sents = len(words), len(sentences)
    n_paras = sum(any(ch.isalnum() for ch in line) for line in text.split("\n"))
    per_sentence = [len(sent) for sent in sentences]
    lengths = [sum(ch.isalnum() for ch in w.text) for w in words]
    letters = [sum(ch.isalpha() for ch in w.text) for w in words]
    feats: dict[str, float] = {
        "words_count": float(n_words),
        "sentences_count": float(n_sents),
        "paragraphs_count": float(n_paras),
        "characters_count": float(sum(not ch.isspace() for ch in text)),
        "words_per_sentence_mean": float(np.mean(per_sentence)) if per_sentence else 0.0,
        "words_per_sentence_sd": float(np.std(per_sentence)) if per_sentence else 0.0,
        "sentences_per_paragraph_mean": _ratio(n_sents, n_paras),
        "word_length_chars_mean": float(np.mean(lengths)) if lengths else 0.0,
        "long_words_ratio": _ratio(sum(n >= 7 for n in letters), n_words),
    }
    feats |= _readability(text)
    tokens = [w.text.lower().replace("’", "'") for w in words if any(ch.isalpha() for ch in w.text)]
    feats |= _lexical_diversity(tokens, mattr_window, hdd_draws, mtld_threshold)
    counts = mechanics_counts(parsed, speller, spelling_min_chars)
    feats |= {
        "spelling_errors_per_100_words": _per_100(counts["spelling"], n_words),
        "capitalisation_errors_per_100_words": _per_100(counts["capitalisation"], n_words),
        "lowercase_sentence_starts_per_100_words": _per_100(counts["lowercase_starts"], n_words),
        "lowercase_i_per_100_words": _per_100(counts["lowercase_i"], n_words),
        "missing_final_punctuation_per_100_words": _per_100(counts["missing_final"], n_words),
        "repeated_punctuation_per_100_words": _per_100(counts["repeated_punct"], n_words),
    }
    feats |= _syntax(parsed, n_sents)
    pos = [t.pos_ for t in parsed.tokens]
    feats |= {f"{name}_per_100_words": _per_100(pos.count(tag), n_words) for name, tag in POS_RATES.items()}
    starts = {w.token.i for w in words if w.starts_sentence}
    feats |= {f"connectives_{kind}_per_100_words": _per_100(n, n_words)
              for kind, n in _connectives(doc, matcher, starts).items()}
    third = sum(p == "PRON" and t.lower_ in THIRD_PERSON for p, t in zip(pos, parsed.tokens, strict=True))
    feats["third_person_pronouns_per_100_words"] = _per_100(third, n_words)
    feats |= _overlap(sentences)
    return {name: feats[name] if math.isfinite(feats[name]) else 0.0 for name in FEATURES}


def handcrafted_features(texts: list[str], nlp: Language, speller: SymSpell, *, n_process: int = 1,
                         batch_size: int = 32, progress: bool = False, **options: Any) -> pd.DataFrame:
    """One float64 row of `FEATURES` per text, in input order; `options` go to `doc_features`."""
    matcher = _connective_matcher(nlp)
    docs: Iterable[Doc] = nlp.pipe(texts, n_process=n_process, batch_size=batch_size)
    if progress:
        docs = tqdm(docs, total=len(texts), desc="features", unit="essay")
    rows = [doc_features(doc, speller, matcher, **options) for doc in docs]
    return pd.DataFrame(rows, columns=list(FEATURES), dtype="float64")
