"""Stage `compare`: each candidate arm against the reference arm under every gate scheme, as paired
deltas with prompt-cluster bootstrap intervals and per-criterion pass/fail. Writes the flat record
`metrics/gate.json`, the plot data `plots/gate/deltas.csv` and the gate's figure `plots/gate/deltas.png`
(the report only embeds it). A candidate whose predictions table is
absent is recorded as not run (its criteria `evaluated: 0`), never an error."""

from __future__ import annotations

import time
import zlib

import numpy as np

from stages.lib.core.atomic import write_csv, write_json
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.paths import GATE, GATE_DELTAS, GATE_FIGURE, predictions_path
from stages.lib.data.schema import DatasetSchema
from stages.lib.gate.bootstrap import Interval, align_pair, arm_counts, paired_bootstrap
from stages.lib.gate.criteria import GateConfig, deltas_table, gate_record
from stages.lib.reporting.figures import gate_figure, save_png
from stages.lib.scoring.predictions import read_predictions


def pair_rng(seed: int, candidate: str, scheme: str) -> np.random.Generator:
    """A generator per (candidate, scheme): adding or dropping a candidate leaves the others' draws alone."""
    return np.random.default_rng([seed, zlib.crc32(f"{candidate}/{scheme}".encode())])


def compare(cfg: GateConfig, schema: DatasetSchema, seeds: dict[str, list[int]]) -> dict:
    """Run every (candidate, scheme) pair present on disk and return the flat gate record. `seeds[arm]` lists
    the arm's training seeds: the reference needs all of them; a candidate is compared on the seeds it has."""
    intervals: dict[tuple[str, str], dict[str, Interval] | None] = {}
    sizes: dict[tuple[str, str], dict[str, int]] = {}
    mean_over: dict[str, str] = {}
    for scheme in cfg.criteria_schemes:
        missing = [p for p in (predictions_path(cfg.reference, scheme, s) for s in seeds[cfg.reference])
                   if not p.is_file()]
        if missing:
            raise InputError(f"{missing[0]}: the reference arm's predictions are required by the gate "
                             f"({len(missing)} of {len(seeds[cfg.reference])} seeds missing)")
        references = [read_predictions(predictions_path(cfg.reference, scheme, s), schema)
                      for s in seeds[cfg.reference]]
        reference = references[0]
        prompts = sorted(reference["prompt"].unique())
        folds = sorted(int(f) for f in reference["fold"].unique())
        ref_counts = [arm_counts(align_pair(frame, reference, schema, cfg.reference, scheme), schema, prompts, folds,
                                 cfg.metric_config) for frame in references]
        mean_over[scheme] = ref_counts[0].mean_over
        for candidate in cfg.candidates:
            present = [s for s in seeds[candidate] if predictions_path(candidate, scheme, s).is_file()]
            if not present:
                intervals[(candidate, scheme)] = None
                print(f"{candidate}/{scheme}: not run (no seed of {seeds[candidate]} under "
                      f"{predictions_path(candidate, scheme, seeds[candidate][0]).parent})")
                continue
            counts = [arm_counts(align_pair(read_predictions(predictions_path(candidate, scheme, s), schema),
                                            reference, schema, candidate, scheme), schema, prompts, folds,
                                 cfg.metric_config) for s in present]
            intervals[(candidate, scheme)] = paired_bootstrap(
                counts, ref_counts, cfg.metrics_for(scheme), cfg.metric_config, cfg.n_resamples, cfg.confidence,
                pair_rng(cfg.seed, candidate, scheme))
            sizes[(candidate, scheme)] = {"n_essays": len(reference), "n_prompts": len(prompts),
                                          "n_folds": len(folds), "n_seeds": len(present),
                                          "n_seeds_missing": len(seeds[candidate]) - len(present)}
    return gate_record(cfg, intervals, sizes, mean_over)


def main() -> None:
    start = time.perf_counter()
    params = load_params()
    cfg = GateConfig.from_params(params)
    record = compare(cfg, DatasetSchema.from_params(params),
                     {arm: params.seeds.of(arm) for arm in (cfg.reference, *cfg.candidates)})
    write_json(GATE, record)
    deltas = deltas_table(record)
    write_csv(GATE_DELTAS, deltas)
    save_png(gate_figure(deltas, f"Gate: candidate − {cfg.reference}"), GATE_FIGURE)
    for candidate in cfg.candidates:
        state = ("pass" if record[f"{candidate}.pass"] else "fail") if record[f"{candidate}.evaluated"] else \
            f"incomplete ({record[f'{candidate}.n_evaluated']}/{record[f'{candidate}.n_criteria']} criteria evaluated)"
        print(f"{candidate} vs {cfg.reference}: {state}")
    print(f"compare: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_stage(main)
