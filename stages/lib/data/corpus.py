"""The raw corpus CSV as `prepare` reads it: every column as text, one-line errors naming the file and the first
byte that is not UTF-8, and data rows named as an editor finds them (`line N`, or `record N (line M)` where a
quoted multi-line essay makes the CSV record number and the text line differ)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages.lib.core.errors import InputError
from stages.lib.core.io import check_csv_shape, check_utf8_csv, csv_records, record_name


def read_corpus(path: Path) -> pd.DataFrame:
    """Read the raw CSV with every column as text, naming the file (and the first byte that is not UTF-8,
    by record, column, line and offset) if it cannot be parsed."""
    if not path.is_file():
        raise InputError(f"{path}: corpus file not found (run the acquire stage)")
    check_utf8_csv(path)
    check_csv_shape(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: empty file (no header, no data rows)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(" ".join(f"{path}: not a readable UTF-8 CSV ({exc})".split())) from exc
    return frame


class Records:
    """Names data row `i` of a CSV (0-based, header excluded) as an editor finds it; reads the file only
    when a name is asked for."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._lines: list[int] | None = None

    def line(self, i: int) -> int:
        if self._lines is None:
            self._lines = []
            if self.path is not None and self.path.is_file():
                records = csv_records(self.path, errors="surrogateescape")
                next(records, None)
                self._lines = [start for start, _ in records]
        return self._lines[i] if i < len(self._lines) else i + 2

    def name(self, i: int) -> str:
        return record_name(i + 2, self.line(i))
