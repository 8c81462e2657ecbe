"""What every metrics file records about the run: package versions, device, seed, time."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from datetime import UTC, datetime
from typing import Any

_PACKAGES = ("dvc", "pandas", "numpy", "scikit-learn", "xgboost-cpu", "xgboost", "torch", "transformers",
             "peft", "accelerate", "spacy", "textstat", "symspellpy")


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape results (missing ones are omitted)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def device_name() -> str:
    """The accelerator if torch sees one, else the CPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"cpu:{platform.processor() or platform.machine()}"


def cpu_kernels() -> dict[str, str | None]:
    """The instruction-set pins the numerical kernels ran under (`stages.CPU_KERNELS`; None = the CPU chose)."""
    from stages import CPU_KERNELS

    return {name: os.environ.get(name) for name in CPU_KERNELS}


def run_info(seed: int, **extra: Any) -> dict[str, Any]:
    """A `run` block for metrics files."""
    return {
        "seed": seed,
        "device": device_name(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "cpu_kernels": cpu_kernels(),
        "finished_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }
