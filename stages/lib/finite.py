"""Stop a run at the first non-finite loss, logit or prediction, naming where and what."""

from __future__ import annotations

import numpy as np
import torch

from stages.lib.errors import InputError


class NonFiniteError(InputError):
    """A NaN or infinity in training or inference; reported as one line by `run_stage`."""


def check_finite(name: str, values: torch.Tensor | np.ndarray | float, *, fold: int, step: int | None = None) -> None:
    """Raise `NonFiniteError` naming the quantity, fold, step and first offending value."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values, dtype=float)
    bad = ~np.isfinite(array)
    if bad.any():
        where = f"step {step}" if step is not None else "inference"
        raise NonFiniteError(
            f"non-finite {name} at fold {fold}, {where}: value {float(array[bad].flat[0])!r} "
            f"({int(bad.sum())} of {array.size} entries); the run stopped"
        )
