"""How every written document (decision record, report, headline, model card) shows numbers and tables: one rule
for missing values (None, NaN, ±inf and booleans are shown as missing) and one markdown table layout."""

from __future__ import annotations

import math
from typing import Any

MISSING = "—"


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: Any, digits: int = 3, *, signed: bool = False, missing: str = MISSING) -> str:
    """A number with `digits` decimals (a sign when `signed`), or `missing` when it is not a finite number."""
    if not is_number(value):
        return missing
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def p_value(value: Any) -> str:
    """A significance level: three decimals, or `< 0.001`."""
    return "< 0.001" if is_number(value) and 0 <= value < 0.001 else num(value, 3)


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table, one line per row."""
    return ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]
