"""A multi-scale, partly scored corpus made from ELLIPSE, for testing that the pipeline handles corpora whose
prompts use different score scales and score different traits.

The largest prompts' essays within the word window are kept. Each prompt's scores are re-expressed on its own
integer scale by an affine, strictly increasing map of ELLIPSE's nine half-point categories (0–8, 1–9, 0–16,
2–18, 0–24, 0–48), and some prompts leave some traits unscored (empty cells). The essays are ELLIPSE's
(CC BY-NC-SA 4.0): the output goes to an ignored path, never into git.

    python -m tools.multiscale_corpus                   # every essay of the six prompts -> data/external/…
    python -m tools.multiscale_corpus --per-prompt 30   # a small sample (what the tests use)

`dataset_block()` is the `dataset` section describing the result; `params/multiscale.yaml` holds it and a test
keeps the two equal."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from stages.lib.core.atomic import write_csv
from stages.lib.core.paths import MULTISCALE_CORPUS

ELLIPSE_CSV = Path("../shared/data/ellipse/ELLIPSE_Final_github_test.csv")
TARGETS = ("Overall", "Cohesion", "Syntax", "Vocabulary", "Phraseology", "Grammar", "Conventions")
# Per prompt, by size rank: (lowest point, points per ELLIPSE half-point step).
SCALES = ((0, 1), (1, 1), (0, 2), (2, 2), (0, 3), (0, 6))
UNSCORED = {0: ("Cohesion", "Conventions"), 1: ("Cohesion",), 2: ("Syntax", "Phraseology")}
WORD_WINDOW = (200, 1000)


def inside_window(corpus: pd.DataFrame) -> pd.DataFrame:
    """The essays whose word count lies inside the word window."""
    words = corpus["full_text"].str.split().str.len()
    return corpus[(words >= WORD_WINDOW[0]) & (words <= WORD_WINDOW[1])]


def largest_prompts(corpus: pd.DataFrame, n: int = len(SCALES)) -> list[str]:
    """The `n` prompts with most essays inside the word window (ties by name), largest first."""
    counts = inside_window(corpus)["prompt"].value_counts()
    return sorted(counts.index, key=lambda p: (-counts[p], p))[:n]


def rescale(scores: pd.Series, low: int, step: int) -> pd.Series:
    """ELLIPSE scores (1–5 in halves) as `low + step · category`, category 0–8."""
    return low + step * (2 * scores.astype(float) - 2).round().astype(int)


def build(corpus: pd.DataFrame, per_prompt: int | None = None) -> pd.DataFrame:
    """The re-scaled corpus: the largest prompts' essays (the first `per_prompt` of each inside the word window,
    or all), scores on each prompt's scale, unscored traits empty."""
    inside = inside_window(corpus)
    parts = []
    for rank, prompt in enumerate(largest_prompts(corpus)):
        rows = inside[inside["prompt"] == prompt]
        rows = (rows.head(per_prompt) if per_prompt else rows).copy()
        low, step = SCALES[rank]
        for target in TARGETS:
            rows[target] = rescale(rows[target], low, step).astype(str)
            if target in UNSCORED.get(rank, ()):
                rows[target] = ""
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def dataset_block(prompts: list[str]) -> dict[str, Any]:
    """The `dataset` params of the re-scaled corpus (prompts in size order)."""
    return {
        "prompt_grids": {p: {"min": low, "max": low + 8 * step, "step": 1}
                         for p, (low, step) in zip(prompts, SCALES, strict=True)},
        "prompt_targets": {prompts[rank]: [t for t in TARGETS if t not in dropped]
                           for rank, dropped in UNSCORED.items()},
    }


def read_ellipse(path: Path = ELLIPSE_CSV) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ELLIPSE_CSV, help="the ELLIPSE CSV")
    parser.add_argument("--out", type=Path, default=MULTISCALE_CORPUS)
    parser.add_argument("--per-prompt", type=int, default=None, help="essays per prompt (default: all)")
    args = parser.parse_args()
    corpus = read_ellipse(args.source)
    frame = build(corpus, args.per_prompt)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(args.out, frame)
    grids = dataset_block(largest_prompts(corpus))["prompt_grids"]
    print(f"{args.out}: {len(frame)} essays over {len(grids)} prompts, scales "
          + ", ".join(f"{g['min']}–{g['max']}" for g in grids.values()))


if __name__ == "__main__":
    main()
