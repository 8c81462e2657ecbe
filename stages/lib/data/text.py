"""Text normalisation, stable ids and word counts used when preparing any essay corpus."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def normalise_text(text: str) -> str:
    """Unicode NFC, unified newlines, collapsed inline whitespace, at most one blank line."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def stable_id(text: str) -> str:
    """A content hash of the normalised text (upstream ids are partly corrupted)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def word_count(text: str) -> int:
    """Whitespace-delimited tokens, the count the word window applies to."""
    return len(text.split())
