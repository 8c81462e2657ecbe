"""The dataset schema declared in params: which columns hold text, prompt, targets and subgroups, the score
grid (global, optionally overridden per prompt and per prompt × target) and which targets each prompt scores.

The global grid is also the *common scale*: every arm learns on scores mapped onto it by each prompt's grid
(min–max), and maps its predictions back onto the scored prompt's own grid. A prompt on the global grid maps
by the identity (the values are not touched), so a single-scale corpus learns on its raw scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stages.lib.core.params import Dataset, Grid, Params


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

    def label(self) -> str:
        """E.g. `1–5 step 0.5`."""
        return f"{self.low:g}–{self.high:g} step {self.step:g}"


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
    target_grids: dict[tuple[str, str], ScoreGrid] = field(default_factory=dict)  # (prompt, target) overrides
    prompt_targets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # prompts scoring only some targets

    @property
    def traits(self) -> tuple[str, ...]:
        """The analytic targets (every target but the primary one)."""
        return tuple(t for t in self.targets if t != self.primary)

    def grid_for(self, prompt: str, target: str | None = None) -> ScoreGrid:
        """The grid `target` (default: the primary) is scored on for `prompt`."""
        target = self.primary if target is None else target
        return self.target_grids.get((prompt, target), self.prompt_grids.get(prompt, self.grid))

    def scores(self, prompt: str, target: str) -> bool:
        """Whether essays of `prompt` carry a score for `target` (every target, unless `prompt_targets` says)."""
        return target in self.prompt_targets.get(prompt, self.targets)

    @property
    def single_scale(self) -> bool:
        """Every prompt and target on the global grid (then every mapping to the common scale is the identity)."""
        return all(g == self.grid for g in (*self.prompt_grids.values(), *self.target_grids.values()))

    def shares_scale(self, prompts: Sequence[str], target: str | None = None) -> bool:
        """Whether `target` of every one of `prompts` is scored on one grid (so their essays can be pooled)."""
        return len({self.grid_for(p, target) for p in set(prompts)}) <= 1

    def _rescaled(self, values: np.ndarray, prompts: np.ndarray, target: str, to_common: bool) -> np.ndarray:
        out = np.array(values, dtype=float)
        prompts = np.asarray(prompts, dtype=object)
        common = self.grid
        for prompt in {*self.prompt_grids, *(p for p, _ in self.target_grids)}:
            own = self.grid_for(prompt, target)
            rows = prompts == prompt
            if own == common or not rows.any():
                continue
            src, dst = (own, common) if to_common else (common, own)
            out[rows] = dst.low + (out[rows] - src.low) * ((dst.high - dst.low) / (src.high - src.low))
        return out

    def to_common(self, values: np.ndarray, prompts: np.ndarray, target: str) -> np.ndarray:
        """`target`'s scores (each on its prompt's grid) mapped min–max onto the common scale (the global grid);
        values of prompts on the global grid are returned untouched; NaN stays NaN."""
        return self._rescaled(values, prompts, target, to_common=True)

    def from_common(self, values: np.ndarray, prompts: np.ndarray, target: str) -> np.ndarray:
        """The inverse of `to_common`: common-scale values mapped onto each prompt's own scale."""
        return self._rescaled(values, prompts, target, to_common=False)

    def common_targets(self, frame: Any) -> np.ndarray:
        """A table's targets (rows × targets, schema order) on the common scale; NaN where not scored."""
        prompts = frame["prompt"].to_numpy()
        return np.column_stack([self.to_common(frame[t].to_numpy(float), prompts, t) for t in self.targets])

    def scored_mask(self, prompts: np.ndarray, target: str) -> np.ndarray:
        """Boolean per essay: its prompt scores `target`."""
        prompts = np.asarray(prompts, dtype=object)
        mask = np.ones(len(prompts), dtype=bool)
        for prompt, targets in self.prompt_targets.items():
            if target not in targets:
                mask[prompts == prompt] = False
        return mask

    @classmethod
    def from_params(cls, params: Params) -> DatasetSchema:
        """The schema params' `dataset` section declares."""
        return cls.from_dataset(params.dataset)

    @classmethod
    def from_dataset(cls, ds: Dataset) -> DatasetSchema:
        """The schema a `dataset` section (of params, or of a model artifact) declares."""
        prompt_grids = ds.prompt_grids or {}
        return cls(
            text=ds.text,
            prompt=ds.prompt,
            targets=tuple(ds.targets),
            primary=ds.primary,
            grid=_grid(ds.grid),
            subgroups=tuple(ds.subgroups or ()),
            source_id=ds.source_id,
            prompt_grids={p: _grid(g) for p, g in prompt_grids.items()},
            target_grids={(p, t): _grid(tg) for p, g in prompt_grids.items() for t, tg in (g.targets or {}).items()},
            prompt_targets={p: tuple(ts) for p, ts in (ds.prompt_targets or {}).items()},
        )


def _grid(spec: Grid) -> ScoreGrid:
    return ScoreGrid(float(spec.min), float(spec.max), float(spec.step))
