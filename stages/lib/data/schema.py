"""The dataset schema declared in params: which columns hold text, prompt, targets and subgroups,
and the score grid (global, optionally overridden per prompt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ScoreGrid:
    """An evenly spaced score scale, e.g. 1.0–5.0 in steps of 0.5."""

    low: float
    high: float
    step: float

    @property
    def n_categories(self) -> int:
        return round((self.high - self.low) / self.step) + 1

    def on_grid(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask: value lies on the grid (within 1e-6) and inside [low, high]."""
        values = np.asarray(values, dtype=float)
        steps = (values - self.low) / self.step
        return (np.abs(steps - np.round(steps)) < 1e-6) & (values >= self.low - 1e-9) & (
            values <= self.high + 1e-9
        )

    def to_category(self, values: np.ndarray) -> np.ndarray:
        """Map grid values to integer categories 0..n-1 (for ELLIPSE: the doubled score minus 2)."""
        return np.rint((np.asarray(values, dtype=float) - self.low) / self.step).astype(int)

    def snap(self, values: np.ndarray) -> np.ndarray:
        """Clip continuous values to [low, high] and round to the nearest grid point."""
        clipped = np.clip(np.asarray(values, dtype=float), self.low, self.high)
        return self.low + np.rint((clipped - self.low) / self.step) * self.step

    def points(self) -> np.ndarray:
        return self.low + self.step * np.arange(self.n_categories)


@dataclass(frozen=True)
class DatasetSchema:
    """Column roles and score grids of an essay corpus with a prompt column."""

    text: str
    prompt: str
    targets: tuple[str, ...]
    primary: str
    grid: ScoreGrid
    subgroups: tuple[str, ...] = ()
    source_id: str | None = None
    prompt_grids: dict[str, ScoreGrid] = field(default_factory=dict)

    @property
    def traits(self) -> tuple[str, ...]:
        """The analytic targets (every target but the primary one)."""
        return tuple(t for t in self.targets if t != self.primary)

    def grid_for(self, prompt: str) -> ScoreGrid:
        return self.prompt_grids.get(prompt, self.grid)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DatasetSchema:
        ds = params["dataset"]
        grid = _grid(ds["grid"])
        return cls(
            text=ds["text"],
            prompt=ds["prompt"],
            targets=tuple(ds["targets"]),
            primary=ds["primary"],
            grid=grid,
            subgroups=tuple(ds.get("subgroups") or ()),
            source_id=ds.get("source_id"),
            prompt_grids={p: _grid(g) for p, g in (ds.get("prompt_grids") or {}).items()},
        )


def _grid(spec: dict[str, float]) -> ScoreGrid:
    return ScoreGrid(float(spec["min"]), float(spec["max"]), float(spec["step"]))
