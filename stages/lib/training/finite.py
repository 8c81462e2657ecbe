"""Stop a run at the first non-finite loss, logit or prediction, naming where and what."""

from __future__ import annotations

import numpy as np
import torch

from stages.lib.core.errors import InputError


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


class DeferredFiniteChecks:
    """Non-finite checks without a host-device synchronisation per micro-batch: values stay on the device
    and are read every `every` micro-batches (and at `flush`). The error names the first offending step,
    exactly as `check_finite` would; the run stops at most `every - 1` micro-batches later (`every=1`:
    at once). `checked` counts the values read and found finite, per quantity: the run's evidence of
    finiteness (the training record's `finite_checks`)."""

    def __init__(self, every: int, fold: int):
        self.every, self.fold = every, fold
        self.pending: list[tuple[str, int, torch.Tensor]] = []
        self.observed = 0
        self.checked: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor, step: int) -> None:
        """Queue a (scalar) tensor for checking."""
        self.pending.append((name, step, value.detach()))

    def micro_batch_done(self) -> None:
        """Count a micro-batch; every `every` of them, read the queue."""
        self.observed += 1
        if self.observed % self.every == 0:
            self.flush()

    def flush(self) -> None:
        """Read every queued value with one synchronisation; raise `NonFiniteError` at the first bad one."""
        if not self.pending:
            return
        values = torch.stack([v.float().reshape(()) for _, _, v in self.pending]).cpu().numpy()
        pending, self.pending = self.pending, []
        for (name, step, _), value in zip(pending, values, strict=True):
            check_finite(name, value, fold=self.fold, step=step)
            self.checked[name] = self.checked.get(name, 0) + 1
