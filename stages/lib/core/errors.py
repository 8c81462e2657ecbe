"""One clear error per bad input, and the wrapper that turns it into one line and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable


class InputError(Exception):
    """Bad or missing input; the message names the file, row, column or prompt."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main`, reporting an `InputError` as one line on stderr with exit status 2."""
    try:
        main()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
