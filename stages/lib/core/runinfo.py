"""What every metrics file records about the run: package versions, device, seed, time."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
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


def cpu_description() -> dict[str, str]:
    """The CPU and the instruction set torch's kernels dispatch to: frozen-encoder outputs differ in their last
    bits between CPU families, so evidence says which one made it."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    described = {"model": model}
    if "torch" in sys.modules:
        described["torch_kernels"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    return described


def run_info(seed: int, **extra: Any) -> dict[str, Any]:
    """A `run` block for metrics files."""
    return {
        "seed": seed,
        "device": device_name(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "cpu": cpu_description(),
        "finished_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }
