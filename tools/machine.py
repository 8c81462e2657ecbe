"""What machine a benchmark ran on."""

from __future__ import annotations

from stages.lib.core.runinfo import cpu_description


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), as every metrics file's `run.cpu` names it."""
    return cpu_description()["model"]
