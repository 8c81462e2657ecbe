"""Reading files the user or a stage wrote, each failure one `InputError` line naming the file (and the line,
record, column or byte): JSON documents, and CSV files checked for UTF-8 and read record by record with the
text line each record starts on (header = line 1; a quoted multi-line essay makes record and line differ)."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stages.lib.core.errors import InputError

_BLOCK = 1 << 20
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # how surrogateescape decodes a byte that is not UTF-8


def read_json(path: str | Path, produced_by: str | None = None) -> Any:
    """The JSON document at `path`; a missing file says which stage writes it (when `produced_by` names one)."""
    path = Path(path)
    if not path.is_file():
        hint = f" (run the {produced_by} stage)" if produced_by else ""
        raise InputError(f"{path}: not found{hint}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(" ".join(f"{path}: not valid JSON ({exc})".split())) from exc


def read_json_object(path: str | Path, produced_by: str | None = None) -> dict[str, Any]:
    """`read_json` of a file that must hold a JSON object."""
    value = read_json(path, produced_by)
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def csv_records(path: str | Path, errors: str = "strict") -> Iterator[tuple[int, list[str]]]:
    """(first text line, fields) of every non-blank CSV record, the header first, as pandas' default dialect
    reads them; `errors="surrogateescape"` reads past bytes that are not UTF-8."""
    path = Path(path)
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8-sig", errors=errors, newline="") as fh:
        reader = csv.reader(fh)
        end = 0
        try:
            for fields in reader:
                start, end = end + 1, reader.line_num
                if fields:
                    yield start, fields
        except csv.Error as exc:
            raise InputError(f"{path}: line {reader.line_num:,}: not a readable CSV record ({exc})") from None


def record_name(record: int, line: int) -> str:
    """A CSV record as an editor finds it: `line N`, or `record N (line M)` when the two differ."""
    return f"line {line:,}" if line == record else f"record {record:,} (line {line:,})"


def check_utf8_csv(path: str | Path) -> str:
    """Stream the file through a strict UTF-8 decoder and return its sha256; the first byte that is not UTF-8
    fails naming its record, column, text line and byte offset."""
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    digest = hashlib.sha256()
    offset, lines = 0, 1
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
            pending = decoder.getstate()[0]  # the start of a character the previous block cut off
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:  # exc.start counts from the pending bytes
                data = pending + block
                line = lines + block.count(b"\n", 0, max(exc.start - len(pending), 0))
                raise InputError(_bad_byte_message(path, offset - len(pending) + exc.start, line,
                                                   data[exc.start], exc.reason)) from None
            offset += len(block)
            lines += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputError(f"{path}: line {lines:,}: the file ends inside a UTF-8 character (truncated?); "
                             "re-save the file as UTF-8") from None
    return digest.hexdigest()


def _bad_byte_message(path: Path, offset: int, line: int, byte: int, reason: str) -> str:
    where = f"line {line:,}"
    header: list[str] = []
    for number, (start, fields) in enumerate(csv_records(path, errors="surrogateescape"), 1):
        header = header or fields
        column = next((j for j, f in enumerate(fields) if _UNDECODABLE.search(f)), None)
        if column is not None:
            name = repr(header[column]) if number > 1 and column < len(header) else f"{column + 1} of the header"
            row = f"data row {number - 1:,}, " if number > 1 else "the header, "
            where = f"record {number:,} ({row}line {line:,}), column {name}"
            break
        if start > line:
            break
    return (f"{path}: not a readable UTF-8 CSV: {where}, byte offset {offset}: byte 0x{byte:02x} is not UTF-8 "
            f"({reason}); re-save the file as UTF-8")


def ragged_record(path: Path, where: str, n_fields: int, n_header: int) -> InputError:
    """The error for a CSV record whose field count differs from the header's."""
    return InputError(f"{path}: {where}: {n_fields} field(s), the header has {n_header} "
                      "(an unquoted comma or line break?)")


def check_csv_shape(path: str | Path) -> list[str]:
    """The header of a CSV whose every record has the header's field count; the first that does not fails,
    named by its record and text line."""
    path = Path(path)
    records = csv_records(path)
    first = next(records, None)
    if first is None:
        raise InputError(f"{path}: empty file (no header, no data rows)")
    header = first[1]
    for number, (line, fields) in enumerate(records, 2):
        if len(fields) != len(header):
            raise ragged_record(path, record_name(number, line), len(fields), len(header))
    return header
