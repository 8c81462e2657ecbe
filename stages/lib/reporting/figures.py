"""Static figures (matplotlib, Agg) of the arms and the gate, so a reader sees them without DVC.
Each function takes tidy frames and returns a Figure; `save_png` writes it atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from stages.lib.core.atomic import atomic_path


def save_png(fig: Figure, path: str | Path, dpi: int = 110) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def _empty(title: str, message: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 1.6))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.4, message, ha="center", va="center", fontsize=11, color="#666")
    return fig


def per_prompt_figure(frame: pd.DataFrame, reference: str, title: str, qwk_flag: float) -> Figure:
    """Grouped horizontal bars: per-prompt QWK of every arm, prompts sorted by the reference's QWK, with the
    report's QWK flag (params `report.qwk_flag`) as a dashed line. `frame` columns: arm, prompt, n, qwk (one
    scheme)."""
    if frame.empty:
        return _empty(title, "no arm has per-prompt results")
    wide = frame.pivot_table(index="prompt", columns="arm", values="qwk", aggfunc="first")
    arms = [a for a in dict.fromkeys(frame["arm"]) if a in wide.columns]
    order = wide[reference] if reference in wide.columns else wide[arms[0]]
    wide = wide.loc[order.sort_values(ascending=False).index, arms]
    n = frame.groupby("prompt")["n"].max()
    height = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.22 * len(wide) * max(1, len(arms) / 2)))
    y = np.arange(len(wide))
    for j, arm in enumerate(arms):
        ax.barh(y + (j - (len(arms) - 1) / 2) * height, wide[arm].to_numpy(), height=height, label=arm)
    ax.axvline(qwk_flag, color="#b00", linestyle="--", linewidth=1, label=f"QWK {qwk_flag:.2f} flag")
    ax.set_yticks(y, [f"{p} (n={n[p]})" for p in wide.index], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("QWK (primary target, on the score grid)")
    ax.set_xlim(min(0.0, float(np.nanmin(wide.to_numpy())) - 0.05), 1.0)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def residual_band_figure(frame: pd.DataFrame, title: str) -> Figure:
    """Mean residual (on-grid prediction − truth) by human score band, one line per arm and scheme.
    `frame` columns: series, score_band, n, mean_residual."""
    if frame.empty:
        return _empty(title, "no residual rows")
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for series, group in frame.groupby("series", sort=False):
        group = group.sort_values("score_band")
        ax.plot(group["score_band"], group["mean_residual"], marker="o", label=series)
    ax.axhline(0, color="#333", linewidth=0.8)
    ax.set_xlabel("human score band")
    ax.set_ylabel("mean residual (prediction − truth)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def confusion_figure(matrices: dict[str, pd.DataFrame], title: str) -> Figure:
    """One heatmap per arm and scheme: rows actual, columns predicted, shaded by row share, counts printed."""
    if not matrices:
        return _empty(title, "no predictions")
    cols = min(2, len(matrices))
    rows = int(np.ceil(len(matrices) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.6 * rows), squeeze=False)
    for ax, (name, table) in zip(axes.flat, matrices.items(), strict=False):
        counts = table.to_numpy()
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(counts):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(table.columns)), table.columns, fontsize=7, rotation=90)
        ax.set_yticks(range(len(table.index)), table.index, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(name, fontsize=10)
    for ax in list(axes.flat)[len(matrices):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def gate_figure(frame: pd.DataFrame, title: str) -> Figure:
    """Each evaluated criterion's delta with its interval and threshold; green passes robustly, orange
    passes inside the noise, red fails. `frame` is `gate.deltas_table`."""
    if frame.empty:
        return _empty(title, "no candidate arm has been run: nothing to compare")
    fig, ax = plt.subplots(figsize=(8.5, 1.0 + 0.42 * len(frame)))
    y = np.arange(len(frame))
    colour = np.where(frame["robust_pass"] == 1, "#2a7", np.where(frame["pass"] == 1, "#e90", "#c33"))
    ax.hlines(y, frame["ci_low"], frame["ci_high"], color=colour, linewidth=2)
    ax.scatter(frame["delta"], y, color=colour, zorder=3)
    ax.scatter(frame["threshold"], y, marker="|", s=260, color="#222", zorder=4, label="threshold")
    ax.axvline(0, color="#999", linewidth=0.8)
    ax.set_yticks(y, frame["criterion"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("delta (candidate − reference) with bootstrap interval")
    ax.set_title(title)
    for label, c in (("pass", "#2a7"), ("pass inside the noise", "#e90"), ("fail", "#c33")):
        ax.plot([], [], color=c, linewidth=2, marker="o", label=label)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3)
    return fig
