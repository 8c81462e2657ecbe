"""What `prepare` does to the raw corpus: validate it against the declared schema (columns, non-empty text and
prompts, on-grid scores, prompts the params name), normalise and de-duplicate the text, apply the word window and
prompt exclusions; returns the prepared essays and the data report."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.atomic import write_json
from stages.lib.core.errors import InputError
from stages.lib.core.params import DUPLICATE_POLICIES, Params, Prepare
from stages.lib.core.paths import DATA_METRICS, RAW_CORPUS
from stages.lib.core.runinfo import run_info
from stages.lib.data.corpus import Records, read_corpus
from stages.lib.data.corpus_source import locate
from stages.lib.data.prepared import write_prepared
from stages.lib.data.schema import DatasetSchema
from stages.lib.data.text import normalise_text, stable_id, word_count


def validate(frame: pd.DataFrame, schema: DatasetSchema, source: Path, records: Records | None = None) -> pd.DataFrame:
    """Check columns, data rows, non-empty text and on-grid scores; return numeric targets."""
    records = records or Records()
    required = [schema.text, schema.prompt, *schema.targets, *schema.subgroups]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing required column(s) {missing}; has {list(frame.columns)}")
    if frame.empty:
        raise InputError(f"{source}: has a header but no data rows")
    empty_text = (frame[schema.text].str.strip() == "").to_numpy()
    if empty_text.any():
        where = records.name(int(np.flatnonzero(empty_text)[0]))
        raise InputError(f"{source}: {where}: empty essay in column {schema.text!r}")
    empty_prompt = (frame[schema.prompt].str.strip() == "").to_numpy()
    if empty_prompt.any():
        where = records.name(int(np.flatnonzero(empty_prompt)[0]))
        raise InputError(f"{source}: {where}: empty prompt in column {schema.prompt!r}")
    prompts = frame[schema.prompt].str.strip()
    check_declared_prompts(schema, set(prompts), source)
    scores = pd.DataFrame(index=frame.index)
    for col in schema.targets:
        cells = frame[col].str.strip()
        values = pd.to_numeric(cells, errors="coerce")
        scored = schema.scored_mask(prompts.to_numpy(), col)
        unscored = ~scored & (cells != "").to_numpy()
        if unscored.any():
            i = int(np.flatnonzero(unscored)[0])
            raise InputError(
                f"{source}: {records.name(i)}: column {col!r} holds {frame[col].iloc[i]!r}, but prompt "
                f"{prompts.iloc[i]!r} does not score {col} (dataset.prompt_targets lists "
                f"{list(schema.prompt_targets[prompts.iloc[i]])}); empty the cell or add {col!r} to that list")
        bad = values.isna().to_numpy() & scored
        for prompt, rows in frame.groupby(prompts).indices.items():
            bad[rows] |= scored[rows] & ~schema.grid_for(prompt, col).on_grid(values.iloc[rows].fillna(-1e9).to_numpy())
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            grid = schema.grid_for(prompts.iloc[i], col)
            empty = (" (an empty cell: if this prompt does not score it, say so in dataset.prompt_targets)"
                     if cells.iloc[i] == "" else "")
            raise InputError(
                f"{source}: {records.name(i)}: column {col!r} value {frame[col].iloc[i]!r} is not on the score grid "
                f"{grid.low}–{grid.high} step {grid.step} (prompt {prompts.iloc[i]!r}){empty}"
            )
        scores[col] = values.where(scored).astype(float)
    return scores


def check_declared_prompts(schema: DatasetSchema, prompts: set[str], source: Path) -> None:
    """Every prompt that `dataset.prompt_grids` or `dataset.prompt_targets` names must be one of the corpus's: a
    misspelt name would otherwise leave that prompt's essays on the default scale or scoring every target."""
    for key, declared in (("dataset.prompt_grids", schema.prompt_grids), ("dataset.prompt_targets",
                                                                           schema.prompt_targets)):
        for name in sorted(set(declared) - prompts):
            close = difflib.get_close_matches(name, sorted(prompts), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; it has {len(prompts)} prompts"
            raise InputError(f"{key} names prompt {name!r}, which {source} does not have{hint}")


def prepare(frame: pd.DataFrame, schema: DatasetSchema, cfg: Prepare, source: Path,
            records: Records | None = None) -> tuple[pd.DataFrame, dict]:
    """Return the prepared essays table and the data report."""
    records = records or Records()
    scores = validate(frame, schema, source, records)
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
    excluded = list(cfg.exclude_prompts or [])
    not_found = sorted(set(excluded) - set(essays["prompt"]))
    if not_found:
        print(f"warning: prepare.exclude_prompts names prompts absent from {source}: {not_found}")
    keep = ~essays["prompt"].isin(excluded)
    dropped["excluded_prompt"] = int((~keep).sum())
    essays = essays[keep]
    essays, dropped["duplicate_text"], dropped["duplicate_conflicting_scores"] = resolve_duplicates(
        essays, schema, cfg.duplicate_scores, source, records)
    too_short = essays["n_words"] < cfg.min_words
    too_long = essays["n_words"] > cfg.max_words
    dropped["below_min_words"] = int(too_short.sum())
    dropped["above_max_words"] = int(too_long.sum())
    essays = essays[~too_short & ~too_long].reset_index(drop=True)
    if essays.empty:
        raise InputError(f"{source}: no essays left after exclusions and the word window "
                         f"prepare.min_words {cfg.min_words} … prepare.max_words {cfg.max_words}")

    per_prompt = essays["prompt"].value_counts().sort_index()
    report = {
        "rows_in": rows_in,
        "rows_out": len(essays),
        "dropped": dropped,
        "n_prompts": int(per_prompt.size),
        "words": {"min": int(essays["n_words"].min()), "median": float(essays["n_words"].median()),
                  "max": int(essays["n_words"].max())},
        "score_mean": {t: round(float(essays[t].mean()), 4) for t in schema.targets},
        **({} if not schema.prompt_targets else {"scored_essays": {t: int(essays[t].notna().sum())
                                                                     for t in schema.targets}}),
        "essays_per_prompt": {str(k): int(v) for k, v in per_prompt.items()},
        "exclude_prompts_not_found": not_found,
    }
    return essays, report


def resolve_duplicates(essays: pd.DataFrame, schema: DatasetSchema, policy: str, source: Path,
                       records: Records) -> tuple[pd.DataFrame, int, int]:
    """Drop repeated texts: copies with equal scores keep the first; copies whose scores differ follow
    `policy` (keep_first | drop_both | average: the mean, which must lie on the grid). Returns the table, the
    rows dropped as equal copies and the rows dropped (or merged) because their scores conflict. `essays` is
    indexed by data row."""
    if policy not in DUPLICATE_POLICIES:
        raise InputError(f"prepare.duplicate_scores {policy!r}: expected one of {', '.join(DUPLICATE_POLICIES)}")
    repeated = essays["essay_id"].duplicated(keep=False)
    if not repeated.any():
        return essays, 0, 0
    targets = list(schema.targets)
    filled = essays[targets].fillna(-np.inf)  # a target the prompt does not score compares equal to itself
    groups = filled[repeated].groupby(essays.loc[repeated, "essay_id"], sort=False)
    conflicting = groups[targets].nunique().gt(1).any(axis=1)
    conflict = essays["essay_id"].isin(conflicting.index[conflicting])
    later = essays["essay_id"].duplicated(keep="first")
    n_equal = int((later & ~conflict).sum())
    essays = essays[~(later & ~conflict)]
    conflict = conflict.loc[essays.index]
    if not conflict.any():
        return essays, n_equal, 0
    first_id = conflicting.index[conflicting][0]
    group = essays[essays["essay_id"] == first_id]
    differs = (filled.loc[group.index] != filled.loc[group.index].iloc[0]).any(axis=1)
    a, b = int(group.index[0]), int(group.index[differs.to_numpy()][0])
    col = next(t for t in targets if group.at[a, t] != group.at[b, t])
    pair = (f"{records.name(a)} and {records.name(b)} hold the same text with {col} "
            f"{group.at[a, col]:g} vs {group.at[b, col]:g}")
    n_texts = int(conflicting.sum())
    members = essays[conflict]
    if policy == "average":
        means = members.groupby("essay_id", sort=False)[targets].transform("mean")
        for t in targets:
            for i in means.index[~_on_grid(schema, members["prompt"], means[t])]:
                first = members.index[members["essay_id"] == members.at[i, "essay_id"]]
                raise InputError(
                    f"{source}: {records.name(int(first[0]))} and {records.name(int(first[1]))} hold the same text; "
                    f"their mean {t} {means.at[i, t]:g} is off the score grid, so prepare.duplicate_scores average "
                    "cannot apply (choose keep_first or drop_both)")
        essays = essays.copy()
        essays.loc[means.index, targets] = means.to_numpy()
    remove = conflict & (essays["essay_id"].duplicated(keep="first") if policy != "drop_both" else True)
    n_conflict = int(remove.sum())
    print(f"warning: {source}: {n_texts} text(s) appear more than once with different scores (first: {pair}); "
          f"prepare.duplicate_scores {policy}: {n_conflict} row(s) dropped")
    return essays[~remove], n_equal, n_conflict


def _on_grid(schema: DatasetSchema, prompts: pd.Series, values: pd.Series) -> np.ndarray:
    return np.array([schema.grid_for(p).on_grid(np.array([v]))[0] for p, v in zip(prompts, values, strict=True)])


def prepare_corpus(params: Params) -> dict[str, Any]:
    """The `prepare` stage: read the raw copy, prepare it, write the prepared essays (texts apart) and the data
    report; return the report. An error in the user's file names the file the raw copy was made from."""
    schema = DatasetSchema.from_params(params)
    try:
        frame = read_corpus(RAW_CORPUS)
        essays, report = prepare(frame, schema, params.prepare, RAW_CORPUS, Records(RAW_CORPUS))
    except InputError as exc:  # the user's own file, which the raw copy reproduces byte for byte
        raise InputError(f"{exc} (raw copy of {locate(params.corpus, must_exist=False).describe()})") from exc
    report["run"] = run_info(params.seed)
    write_prepared(essays)
    write_json(DATA_METRICS, report)
    return report
