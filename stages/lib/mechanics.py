"""Conventions features: spelling errors (symspellpy's English frequency dictionary), capitalisation
and punctuation mechanics, each counted on a spaCy `Doc` and its words."""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass

from spacy.tokens import Doc, Token
from symspellpy import SymSpell

DICTIONARY = ("symspellpy", "frequency_dictionary_en_82_765.txt")
_SPELLABLE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_REPEATED_PUNCT = re.compile(r"[!?]{2,}|([,;:])\1+|(?<!\.)\.\.(?!\.)|\.{4,}")
_CLOSERS = frozenset({'"', "'", ")", "]", "}", "”", "’", "»"})
_OPENERS = frozenset({'"', "'", "(", "[", "“", "‘", "«", ":", "-", "–", "—"})
_FINAL = frozenset(".!?…")


@dataclass(frozen=True)
class Word:
    """One orthographic word: a spaCy token plus any clitic glued to it ("do"+"n't" -> "don't")."""

    text: str
    token: Token
    initial: bool  # starts the text or a paragraph, or follows . ! ?
    first: bool  # first word of its parsed sentence (the parser also splits unpunctuated run-ons)

    @property
    def starts_sentence(self) -> bool:
        return self.initial or self.first


def load_speller() -> SymSpell:
    """symspellpy with its bundled English frequency dictionary (membership lookups only)."""
    speller = SymSpell(max_dictionary_edit_distance=0)
    path = importlib.resources.files(DICTIONARY[0]) / DICTIONARY[1]
    with importlib.resources.as_file(path) as file:
        if not speller.load_dictionary(str(file), term_index=0, count_index=1, encoding="utf-8"):
            raise FileNotFoundError(f"{file}: symspellpy frequency dictionary not found")
    return speller


def _is_terminal(token: Token) -> bool:
    text = token.text
    return bool(text) and set(text) <= _FINAL | {"."} and ("!" in text or "?" in text or text == ".")


def doc_words(doc: Doc) -> list[list[Word]]:
    """The words of each sentence that has any; clitics (n't, 'm, nt) join the preceding word."""
    sentences: list[list[Word]] = []
    boundary = True  # document start
    for sent in doc.sents:
        words: list[Word] = []
        last: Token | None = None
        for token in sent:
            if token.is_space:
                boundary = boundary or "\n" in token.text
                last = None
                continue
            if not any(ch.isalnum() for ch in token.text):
                if _is_terminal(token):
                    boundary = True
                last = token
                continue
            if words and last is not None and not last.whitespace_ and last.text[-1].isalnum():
                prev = words[-1]
                words[-1] = Word(prev.text + token.text, prev.token, prev.initial, prev.first)
            else:
                words.append(Word(token.text, token, initial=boundary, first=not words))
                boundary = False
            last = token
        if words:
            sentences.append(words)
    return sentences


def is_misspelled(word: Word, speller: SymSpell, min_chars: int = 2) -> bool:
    """True if a checkable word is absent from the dictionary. Skipped: words with digits or other
    symbols, words shorter than `min_chars` letters, acronyms (all capitals), and proper nouns (a
    capitalised word that spaCy tags PROPN or that stands mid-sentence)."""
    text = word.text.replace("’", "'")
    if not _SPELLABLE.fullmatch(text) or sum(ch.isalpha() for ch in text) < min_chars:
        return False
    if text[0].isupper() and (text.isupper() or word.token.pos_ == "PROPN" or not word.starts_sentence):
        return False
    return text.lower() not in speller.words


def is_capitalisation_error(word: Word, speller: SymSpell, after_opener: bool) -> bool:
    """A mid-sentence dictionary word in Title case that is not a proper noun or "I" ("the Car"), or
    a word with a capital after a lowercase letter that is not a proper noun ("tHe")."""
    text = word.text.replace("’", "'")
    if not _SPELLABLE.fullmatch(text) or text.isupper() or word.token.pos_ == "PROPN":
        return False
    if any(ch.isupper() for ch in text[1:]):
        return True
    if not text[0].isupper() or word.starts_sentence or after_opener or word.token.text == "I":
        return False
    return text.lower() in speller.words


def mechanics_counts(doc: Doc, sentences: list[list[Word]], speller: SymSpell,
                     min_chars: int = 2) -> dict[str, int]:
    """Raw counts of each conventions error in one document."""
    words = [w for sent in sentences for w in sent]
    spelling = sum(is_misspelled(w, speller, min_chars) for w in words)
    capitals = 0
    for w in words:
        prev = w.token.nbor(-1) if w.token.i > 0 else None
        after_opener = prev is not None and prev.text in _OPENERS
        capitals += is_capitalisation_error(w, speller, after_opener)
    lowercase_starts = sum(w.initial and w.text[0].isalpha() and w.text[0].islower() for w in words)
    lowercase_i = sum(token.text == "i" for token in doc)
    missing_final = 0
    for sent in doc.sents:
        tokens = [t for t in sent if not t.is_space and t.text not in _CLOSERS]
        if any(any(ch.isalnum() for ch in t.text) for t in tokens) and not (set(tokens[-1].text) & _FINAL):
            missing_final += 1
    return {
        "spelling": spelling,
        "capitalisation": capitals,
        "lowercase_starts": lowercase_starts,
        "lowercase_i": lowercase_i,
        "missing_final": missing_final,
        "repeated_punct": len(_REPEATED_PUNCT.findall(doc.text)),
    }
