"""Words and sentences of a parsed text, and its conventions errors: spelling (symspellpy's English
frequency dictionary), capitalisation and punctuation mechanics."""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass

from spacy.tokens import Doc, Token
from symspellpy import SymSpell

DICTIONARY = ("symspellpy", "frequency_dictionary_en_82_765.txt")
# Common American forms the (British-leaning) dictionary lacks; other US spellings are matched by
# trying the British variant (color -> colour, theater -> theatre, practicing -> practising).
EXTRA_WORDS = frozenset({"mom", "math", "ok"})
# (pattern, replacement, minimum length): short words are left alone so that "yor" is not "your".
_US_TO_UK = ((re.compile(r"or(s?)$|or(?=ed|ing|ite|ites|ful|able)"), r"our\1", 5),
             (re.compile(r"ter(s?)$"), r"tre\1", 5), (re.compile(r"ic(ed|ing)$"), r"is\1", 7),
             (re.compile(r"iz(e|ed|es|ing|ation)"), r"is\1", 5), (re.compile(r"([aeiou]l)(ed|ing)$"), r"\1l\2", 7),
             (re.compile(r"og$"), "ogue", 5))
_SPELLABLE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*'?")
_CLITIC = re.compile(r"'(?:s|ve|ll|re|d|m)?$")
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


@dataclass(frozen=True)
class Parsed:
    """A parsed text unpacked once: its tokens, parser sentences, and the words of each sentence
    that has any (`words[i]` need not belong to `sents[i]`: sentences without words are dropped)."""

    doc: Doc
    tokens: list[Token]
    sents: list[list[Token]]
    words: list[list[Word]]

    @classmethod
    def of(cls, doc: Doc) -> Parsed:
        tokens = list(doc)
        sents = [tokens[s.start:s.end] for s in doc.sents]
        return cls(doc, tokens, sents, _sentence_words(sents))


def _is_terminal(token: Token) -> bool:
    text = token.text
    return set(text) <= _FINAL and ("!" in text or "?" in text or text == ".")


def _sentence_words(sents: list[list[Token]]) -> list[list[Word]]:
    out: list[list[Word]] = []
    boundary = True  # document start
    for sent in sents:
        words: list[Word] = []
        last: Token | None = None
        for token in sent:
            text = token.text
            if token.is_space:
                boundary = boundary or "\n" in text
                last = None
                continue
            if not any(ch.isalnum() for ch in text):
                boundary = boundary or _is_terminal(token)
                last = token
                continue
            if words and last is not None and not last.whitespace_ and last.text[-1].isalnum():
                prev = words[-1]
                words[-1] = Word(prev.text + text, prev.token, prev.initial, prev.first)
            else:
                words.append(Word(text, token, initial=boundary, first=not words))
                boundary = False
            last = token
        if words:
            out.append(words)
    return out


def load_speller() -> SymSpell:
    """symspellpy with its bundled English frequency dictionary (membership lookups only)."""
    speller = SymSpell(max_dictionary_edit_distance=0)
    path = importlib.resources.files(DICTIONARY[0]) / DICTIONARY[1]
    with importlib.resources.as_file(path) as file:
        if not speller.load_dictionary(str(file), term_index=0, count_index=1, encoding="utf-8"):
            raise FileNotFoundError(f"{file}: symspellpy frequency dictionary not found")
    return speller


def in_dictionary(word: Word, speller: SymSpell) -> bool:
    """Lowercase lookup of the word, its form without a clitic ('s 've 'll), its spaCy lemma (single-token words:
    "colors" -> "color") and its British variant."""
    known = speller.words
    text = word.text.lower().replace("’", "'")
    forms = {text, _CLITIC.sub("", text)}
    if word.text == word.token.text:
        forms.add(word.token.lemma_.lower())
    forms |= {pattern.sub(repl, form) for form in tuple(forms) for pattern, repl, min_len in _US_TO_UK
              if len(form) >= min_len}
    return any(form in known or form in EXTRA_WORDS for form in forms)


def is_misspelled(word: Word, speller: SymSpell, min_chars: int = 2) -> bool:
    """True if a checkable word is not in the dictionary (see `in_dictionary`). Skipped: words with
    digits or other symbols, words under `min_chars` letters, acronyms (all capitals), and proper nouns
    (a capitalised word that spaCy tags PROPN or that stands mid-sentence)."""
    text = word.text.replace("’", "'")
    if not _SPELLABLE.fullmatch(text) or sum(ch.isalpha() for ch in text) < min_chars:
        return False
    if text[0].isupper() and (text.isupper() or word.token.pos_ == "PROPN" or not word.starts_sentence):
        return False
    return not in_dictionary(word, speller)


def is_capitalisation_error(word: Word, speller: SymSpell, after_opener: bool = False) -> bool:
    """A mid-sentence dictionary word in Title case that is neither a proper noun nor "I" ("the Car"),
    or a word, not a proper noun, with a capital after its first letter ("tHe")."""
    text = word.text.replace("’", "'")
    if not _SPELLABLE.fullmatch(text) or text.isupper() or word.token.pos_ == "PROPN":
        return False
    if any(ch.isupper() for ch in text[1:]):
        return True
    if not text[0].isupper() or word.starts_sentence or after_opener or word.token.text == "I":
        return False
    return in_dictionary(word, speller)


def mechanics_counts(parsed: Parsed, speller: SymSpell, min_chars: int = 2) -> dict[str, int]:
    """Raw counts of each conventions error in one text."""
    tokens = parsed.tokens
    words = [w for sent in parsed.words for w in sent]
    capitals = sum(is_capitalisation_error(w, speller, w.token.i > 0 and tokens[w.token.i - 1].text in _OPENERS)
                   for w in words)
    missing_final = 0
    for sent in parsed.sents:
        kept = [t for t in sent if not t.is_space and t.text not in _CLOSERS]
        if any(any(ch.isalnum() for ch in t.text) for t in kept) and not set(kept[-1].text) & _FINAL:
            missing_final += 1
    return {
        "spelling": sum(is_misspelled(w, speller, min_chars) for w in words),
        "capitalisation": capitals,
        "lowercase_starts": sum(w.initial and w.text[0].islower() for w in words),
        "lowercase_i": sum(t.text == "i" for t in tokens),
        "missing_final": missing_final,
        "repeated_punct": len(_REPEATED_PUNCT.findall(parsed.doc.text)),
    }
