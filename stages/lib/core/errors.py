"""One clear error per bad input, and the wrapper that turns it into one line and a non-zero exit."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable


class InputError(Exception):
    """Bad or missing input; the message names the file, row, column or prompt."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main`, reporting an `InputError` as one line on stderr with exit status 2. First the temp
    siblings killed writers left under the output roots are swept; SIGTERM raises `SystemExit(143)` so that
    `finally` blocks (the atomic writers') remove their temp files before the process ends."""
    from stages.lib.core.atomic import sweep_stale_temps

    previous = _on_sigterm_exit()
    try:
        for path in sweep_stale_temps():
            print(f"removed {path}: left by a killed write")
        main()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    print("error: terminated (SIGTERM); the write in progress was discarded", file=sys.stderr)
    raise SystemExit(128 + signum)


def _on_sigterm_exit():
    """Install the SIGTERM handler (main thread only); return the previous one, or None if not installed."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminated)
