"""Stage `prepare`: validate the corpus against the declared schema, normalise and de-duplicate the
text, apply the word window and prompt exclusions, write `data/prepared/essays.parquet` and
`metrics/data.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.atomic import write_json, write_parquet
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.paths import DATA_METRICS, ESSAYS, RAW_CORPUS
from stages.lib.core.runinfo import run_info
from stages.lib.data.schema import DatasetSchema
from stages.lib.data.text import normalise_text, stable_id, word_count


def read_corpus(path: Path) -> pd.DataFrame:
    """Read the raw CSV with every column as text, naming the file if it cannot be parsed."""
    if not path.is_file():
        raise InputError(f"{path}: corpus file not found (run the acquire stage)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable UTF-8 CSV ({exc})") from exc
    return frame


def validate(frame: pd.DataFrame, schema: DatasetSchema, source: Path) -> pd.DataFrame:
    """Check columns, non-empty text and on-grid scores; return numeric targets. Rows are named by
    their CSV line (header = line 1)."""
    required = [schema.text, schema.prompt, *schema.targets, *schema.subgroups]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing required column(s) {missing}; has {list(frame.columns)}")
    line = frame.index.to_numpy() + 2
    empty_text = frame[schema.text].str.strip() == ""
    if empty_text.any():
        raise InputError(f"{source}: line {line[empty_text.to_numpy()][0]}: empty essay in column {schema.text!r}")
    empty_prompt = frame[schema.prompt].str.strip() == ""
    if empty_prompt.any():
        raise InputError(f"{source}: line {line[empty_prompt.to_numpy()][0]}: empty prompt in column {schema.prompt!r}")
    scores = pd.DataFrame(index=frame.index)
    for col in schema.targets:
        values = pd.to_numeric(frame[col].str.strip(), errors="coerce")
        bad = values.isna().to_numpy().copy()
        for prompt, rows in frame.groupby(schema.prompt).indices.items():
            bad[rows] |= ~schema.grid_for(prompt).on_grid(values.iloc[rows].fillna(-1e9).to_numpy())
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            grid = schema.grid_for(frame[schema.prompt].iloc[i])
            raise InputError(
                f"{source}: line {line[i]}: column {col!r} value {frame[col].iloc[i]!r} is not on the score grid "
                f"{grid.low}–{grid.high} step {grid.step} (prompt {frame[schema.prompt].iloc[i]!r})"
            )
        scores[col] = values.astype(float)
    return scores


def prepare(frame: pd.DataFrame, schema: DatasetSchema, cfg: dict[str, Any], source: Path) -> tuple[pd.DataFrame, dict]:
    """Return the prepared essays table and the data report."""
    scores = validate(frame, schema, source)
    text = frame[schema.text].map(normalise_text)
    essays = pd.DataFrame({
        "essay_id": text.map(stable_id),
        "source_id": frame[schema.source_id] if schema.source_id in frame.columns else "",
        "prompt": frame[schema.prompt].str.strip(),
        "text": text,
        "n_words": text.map(word_count).astype(int),
    })
    for col in schema.targets:
        essays[col] = scores[col]
    for col in schema.subgroups:
        essays[col] = frame[col].str.strip().replace("", pd.NA)

    rows_in = len(essays)
    dropped: dict[str, int] = {}
    excluded = list(cfg.get("exclude_prompts") or [])
    not_found = sorted(set(excluded) - set(essays["prompt"]))
    if not_found:
        print(f"warning: prepare.exclude_prompts names prompts absent from {source}: {not_found}")
    keep = ~essays["prompt"].isin(excluded)
    dropped["excluded_prompt"] = int((~keep).sum())
    essays = essays[keep]
    duplicate = essays["essay_id"].duplicated(keep="first")
    dropped["duplicate_text"] = int(duplicate.sum())
    essays = essays[~duplicate]
    too_short = essays["n_words"] < int(cfg["min_words"])
    too_long = essays["n_words"] > int(cfg["max_words"])
    dropped["below_min_words"] = int(too_short.sum())
    dropped["above_max_words"] = int(too_long.sum())
    essays = essays[~too_short & ~too_long].reset_index(drop=True)
    if essays.empty:
        raise InputError(f"{source}: no essays left after exclusions and the word window {cfg}")

    per_prompt = essays["prompt"].value_counts().sort_index()
    report = {
        "rows_in": rows_in,
        "rows_out": len(essays),
        "dropped": dropped,
        "n_prompts": int(per_prompt.size),
        "words": {"min": int(essays["n_words"].min()), "median": float(essays["n_words"].median()),
                  "max": int(essays["n_words"].max())},
        "score_mean": {t: round(float(essays[t].mean()), 4) for t in schema.targets},
        "essays_per_prompt": {str(k): int(v) for k, v in per_prompt.items()},
        "exclude_prompts_not_found": not_found,
    }
    return essays, report


def main() -> None:
    params = load_params()
    schema = DatasetSchema.from_params(params)
    frame = read_corpus(RAW_CORPUS)
    essays, report = prepare(frame, schema, params["prepare"], RAW_CORPUS)
    report["run"] = run_info(params["seed"])
    write_parquet(ESSAYS, essays)
    write_json(DATA_METRICS, report)
    print(f"prepared {report['rows_out']} of {report['rows_in']} essays over {report['n_prompts']} prompts; "
          f"dropped {report['dropped']}")


if __name__ == "__main__":
    run_stage(main)
