"""Read essays to score from a CSV or parquet file, in batches (memory flat in the number of essays).

`inspect_input` checks the whole file first, streaming, so that an unusable file fails before anything is
scored, in one line naming the file and the line (CSV: the text line a record starts on, header = line 1) or
row (parquet, 1-based): empty file, header only, missing text / id / prompt column, bytes that are not UTF-8,
ragged records, empty or duplicate ids. `iter_batches` then yields the essays as frames of `batch_size` rows
with columns `line`, `id`, `prompt` (None when absent) and `text` (raw, as in the file)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow
import pyarrow.parquet as pq

from stages.lib.core.errors import InputError
from stages.lib.core.hashing import file_digest
from stages.lib.core.io import check_utf8_csv, csv_records, ragged_record, record_name

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Columns:
    text: str
    id: str | None = None
    prompt: str | None = None


@dataclass(frozen=True)
class InputFile:
    """A checked input file: its kind, the columns used, the number of essays and its sha256."""

    path: Path
    kind: str  # csv | parquet
    columns: Columns
    n_rows: int
    sha256: str


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise InputError(f"{path}: unsupported input type {suffix or '(no suffix)'!r}; expected a .csv or .parquet file")


def _resolve_columns(path: Path, names: list[str], wanted: Columns, explicit: set[str], where: str) -> Columns:
    """The columns to read: the text column must exist; an id / prompt column asked for by name must exist,
    a default one is used only where present."""
    if wanted.text not in names:
        raise InputError(f"{path}: {where}: no text column {wanted.text!r} (has {names}); name it with --text-column")
    chosen = {}
    for role in ("id", "prompt"):
        name = getattr(wanted, role)
        if name is not None and name not in names:
            if role in explicit:
                raise InputError(f"{path}: {where}: no {role} column {name!r} (has {names})")
            name = None
        chosen[role] = name
    return Columns(wanted.text, chosen["id"], chosen["prompt"])


class _Ids:
    """Each id's first location, to name both places a duplicate id appears."""

    def __init__(self, path: Path, column: str):
        self.path, self.column, self.seen = path, column, {}

    def add(self, value: object, where: str) -> None:
        if value is None or (isinstance(value, str) and value.strip() == "") or value != value:
            raise InputError(f"{self.path}: {where}: empty id in column {self.column!r}")
        key = str(value).strip()
        if key in self.seen:
            raise InputError(f"{self.path}: {where}: duplicate id {key!r} in column {self.column!r} "
                             f"(first at {self.seen[key]})")
        self.seen[key] = where


def _inspect_csv(path: Path, wanted: Columns, explicit: set[str]) -> InputFile:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (no header, no essays)")
    sha = check_utf8_csv(path)
    records = csv_records(path)
    first = next(records, None)
    if first is None:
        raise InputError(f"{path}: empty file (no header, no essays)")
    header_line, header = first
    columns = _resolve_columns(path, header, wanted, explicit, f"line {header_line} (header)")
    id_at = header.index(columns.id) if columns.id else None
    ids = _Ids(path, columns.id) if columns.id else None
    n = 0
    for number, (line, fields) in enumerate(records, 2):
        where = record_name(number, line)
        if len(fields) != len(header):
            raise ragged_record(path, where, len(fields), len(header))
        if ids is not None:
            ids.add(fields[id_at], where)
        n += 1
    if n == 0:
        raise InputError(f"{path}: a header but no essays")
    return InputFile(path, "csv", columns, n, sha)


def _parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pyarrow.ArrowException) as exc:
        raise InputError(f"{path}: not a readable parquet file ({exc})") from None


def _inspect_parquet(path: Path, wanted: Columns, explicit: set[str]) -> InputFile:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (no schema, no essays)")
    sha = file_digest(path)
    file = _parquet(path)
    columns = _resolve_columns(path, file.schema_arrow.names, wanted, explicit, "schema")
    n = file.metadata.num_rows
    if n == 0:
        raise InputError(f"{path}: a schema but no essays (0 rows)")
    row = 0
    ids = _Ids(path, columns.id) if columns.id else None
    for batch in file.iter_batches(batch_size=65536, columns=list(dict.fromkeys(c for c in (columns.text, columns.id)
                                                                                 if c))):
        texts = batch.column(columns.text)
        if pyarrow.types.is_binary(texts.type) or pyarrow.types.is_large_binary(texts.type):
            for i, value in enumerate(texts.to_pylist()):
                try:
                    value is None or value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError(f"{path}: row {row + i + 1:,}: column {columns.text!r} is not UTF-8 "
                                     f"(byte 0x{value[exc.start]:02x} at offset {exc.start})") from None
        if ids is not None:
            for i, value in enumerate(batch.column(columns.id).to_pylist()):
                ids.add(value, f"row {row + i + 1:,}")
        row += batch.num_rows
    return InputFile(path, "parquet", columns, n, sha)


def inspect_input(path: str | Path, wanted: Columns, explicit: set[str] = frozenset()) -> InputFile:
    """Check the whole input file (see the module docstring); `explicit` names the roles ('id', 'prompt')
    whose column the user asked for by name, so their absence is an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    kind = _kind(path)
    return _inspect_csv(path, wanted, explicit) if kind == "csv" else _inspect_parquet(path, wanted, explicit)


def _frame(rows: list[tuple[int, object, object, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["line", "id", "prompt", "text"]).astype({"line": "int64"})


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _label(value: object) -> str | None:
    text = _text(value).strip()
    return text or None


def iter_batches(source: InputFile, batch_size: int) -> Iterator[pd.DataFrame]:
    """The essays in file order, `batch_size` at a time (the last batch may be shorter)."""
    cols = source.columns
    rows: list[tuple[int, object, object, object]] = []
    if source.kind == "csv":
        records = csv_records(source.path)
        _, header = next(records)
        at = {name: header.index(name) for name in (cols.text, cols.id, cols.prompt) if name}
        for number, (line, fields) in enumerate(records, 1):
            rows.append((line, fields[at[cols.id]].strip() if cols.id else str(number),
                         _label(fields[at[cols.prompt]]) if cols.prompt else None, fields[at[cols.text]]))
            if len(rows) == batch_size:
                yield _frame(rows)
                rows = []
    else:
        number = 0
        names = [c for c in (cols.text, cols.id, cols.prompt) if c]
        for batch in _parquet(source.path).iter_batches(batch_size=batch_size, columns=list(dict.fromkeys(names))):
            data = {name: batch.column(name).to_pylist() for name in dict.fromkeys(names)}
            for i in range(batch.num_rows):
                number += 1
                rows.append((number, _text(data[cols.id][i]).strip() if cols.id else str(number),
                             _label(data[cols.prompt][i]) if cols.prompt else None, _text(data[cols.text][i])))
                if len(rows) == batch_size:
                    yield _frame(rows)
                    rows = []
    if rows:
        yield _frame(rows)
