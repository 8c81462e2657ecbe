"""Judge candidate additions to the reference arm the way the gate judges a candidate arm: each variant (feature
families added and/or XGBoost settings changed) runs prompt-holdout CV over the reference's training seeds, and the
paired two-level bootstrap of `stages.lib.gate.bootstrap` (prompts × seeds) gives its delta in mean and worst-prompt
QWK against the committed reference, with the interval and the seed noise.

    python -m tools.reference_ablation                       # every variant, all targets, params' seeds
    python -m tools.reference_ablation --primary-only --seeds 3 --variants pos_sequences all_families

Reads the committed pipeline's outputs (prepared essays, prompt-holdout folds, feature store): run `dvc repro` (or
`dvc pull`) first. Candidate families are computed once per texts file and family code and cached under
`.ablation/`. Writes `metrics/ablation_reference.json` and the table in `docs/experiments/reference.md`. Not a stage:
nothing in the pipeline reads its output."""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config

from stages.lib.core.atomic import write_json, write_parquet, write_text
from stages.lib.core.config import load_params
from stages.lib.core.hashing import file_digest
from stages.lib.core.io import read_json
from stages.lib.core.params import Params
from stages.lib.core.paths import TEXTS
from stages.lib.data.fold_files import read_fold, scheme_folds
from stages.lib.data.prepared import read_essays, read_texts
from stages.lib.data.schema import DatasetSchema
from stages.lib.features import families as fam
from stages.lib.features.feature_store import load_features
from stages.lib.features.store_builder import load_tools
from stages.lib.gate.bootstrap import arm_counts, paired_bootstrap
from stages.lib.gate.criteria import GateConfig
from stages.lib.reference.model import run_fold
from stages.lib.scoring.evaluation import qwk_summary
from stages.lib.scoring.predictions import fold_predictions
from tools.benchmark import git_commit
from tools.machine import cpu_model

SCHEME = "prompt_holdout"
CACHE = Path(".ablation")
METRICS = Path("metrics/ablation_reference.json")
DOC = Path("docs/experiments/reference.md")
GATE_METRICS = ("mean_qwk", "worst_prompt_qwk")
SLOWER_SCHEDULE = {"n_estimators": 600, "learning_rate": 0.03}


@dataclass(frozen=True)
class Variant:
    """The committed reference plus `families` (names in `families.FAMILIES`) and `xgb` setting overrides."""

    name: str
    families: tuple[str, ...] = ()
    xgb: dict[str, Any] = field(default_factory=dict)
    within_prompt: bool = False  # every feature standardised within its essay's prompt (the prompt's texts only)


VARIANTS = (
    Variant("pos_sequences", ("pos_sequences",)),
    Variant("sophistication", ("sophistication",)),
    Variant("cohesion_global", ("cohesion_global",)),
    Variant("all_families", tuple(fam.FAMILIES)),
    Variant("slower_schedule", (), SLOWER_SCHEDULE),
    Variant("all_families+slower_schedule", tuple(fam.FAMILIES), SLOWER_SCHEDULE),
    Variant("all_families+schedule_1000x0.02", tuple(fam.FAMILIES), {"n_estimators": 1000, "learning_rate": 0.02}),
    Variant("within_prompt", (), {}, within_prompt=True),
    Variant("all_families+within_prompt", tuple(fam.FAMILIES), {}, within_prompt=True),
)
MARKERS = ("<!-- ablation table: written by python -m tools.reference_ablation -->", "<!-- end of ablation table -->")


def standardised_within_prompt(features: pd.DataFrame, essays: pd.DataFrame) -> pd.DataFrame:
    """Each column z-scored within each prompt over that prompt's essays (texts only: no score is read); a column
    constant within a prompt becomes 0 there. Transductive: a held-out prompt is standardised by its own essays."""
    prompts = essays.set_index("essay_id").loc[features.index, "prompt"].to_numpy()
    grouped = features.groupby(prompts)
    spread = grouped.transform("std", ddof=0)
    return ((features - grouped.transform("mean")) / spread.where(spread > 0, 1.0)).astype(features.dtypes.to_dict())


def family_tables(params: Params, names: tuple[str, ...]) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Each family's table (indexed by essay id) and its feature seconds: the family's own computation plus an equal
    share of the one parse they share. Cached per texts file and family code under `.ablation/`."""
    key = f"{file_digest(TEXTS, 'md5')[:12]}-{file_digest(Path(fam.__file__), 'md5')[:12]}"
    paths = {name: CACHE / f"{name}-{key}.parquet" for name in names}
    todo = [name for name in names if not paths[name].is_file()]
    if todo:
        essays = read_texts()
        nlp = load_tools(params.features, params.source).nlp  # one-line error naming the file if it cannot load
        start = time.perf_counter()
        tables, own = fam.family_features(essays["text"].tolist(), nlp, todo, n_process=params.features.n_process,
                                          batch_size=params.features.batch_size, progress=True)
        shared = (time.perf_counter() - start - sum(own.values())) / len(todo)
        for name in todo:
            table = tables[name].assign(essay_id=essays["essay_id"].to_numpy())
            write_parquet(paths[name], table.assign(seconds=own[name] + shared))
    out, seconds = {}, {}
    for name in names:
        table = pd.read_parquet(paths[name]).set_index("essay_id")
        seconds[name] = float(table.pop("seconds").iloc[0])
        out[name] = table
    return out, seconds


def cross_validate(features: pd.DataFrame, params: Params, schema: DatasetSchema, seed: int,
                   xgb: dict[str, Any]) -> tuple[pd.DataFrame, float]:
    """The reference's prompt-holdout predictions table for one seed (folds side by side, one process per core, as
    the `xgb` stage fits them: predictions do not depend on the count), and the fit seconds."""
    cfg = params.xgb.model_copy(update=xgb)
    folds = scheme_folds(SCHEME)
    splits = {fold: read_fold(SCHEME, fold) for fold in folds}
    start = time.perf_counter()
    with parallel_config(backend="loky", inner_max_num_threads=1):
        results = Parallel(n_jobs=min(len(os.sched_getaffinity(0)), len(folds)))(
            delayed(run_fold)(*splits[f], features, SCHEME, cfg, seed, schema, f"ablation fold {f}") for f in folds)
    frames = [fold_predictions(splits[f][1], f, schema, c, g) for f, (c, g, _) in zip(folds, results, strict=True)]
    return pd.concat(frames, ignore_index=True), time.perf_counter() - start


def judge(name: str, tables: list[pd.DataFrame], reference: list[pd.DataFrame], params: Params,
          schema: DatasetSchema) -> dict[str, Any]:
    """The variant's paired bootstrap against the reference on the gate's mean and worst-prompt QWK."""
    gate = GateConfig.from_params(params)
    cfg = gate.metric_config
    prompts = sorted(reference[0]["prompt"].unique())
    folds = sorted(int(f) for f in reference[0]["fold"].unique())
    order = reference[0]["essay_id"]
    counts = [arm_counts(t.set_index("essay_id").loc[order].reset_index(), schema, prompts, folds, cfg)
              for t in tables]
    ref_counts = [arm_counts(t, schema, prompts, folds, cfg) for t in reference]
    rng = np.random.default_rng([params.seed, int(hashlib.md5(name.encode()).hexdigest()[:8], 16)])
    intervals = paired_bootstrap(counts, ref_counts, GATE_METRICS, cfg, gate.n_resamples, gate.confidence, rng)
    return {metric: {"candidate": i.candidate, "reference": i.reference, "delta": i.delta,
                     "ci": [i.ci_low, i.ci_high], "seed_sd": i.candidate_seed_sd, "noise_sd": i.noise_sd}
            for metric, i in intervals.items()}


def trait_means(tables: list[pd.DataFrame], params: Params, schema: DatasetSchema) -> dict[str, float]:
    """Per-trait prompt-holdout mean QWK, averaged over seeds."""
    min_n = params.evaluate.min_prompt_n
    return {target: float(np.mean([qwk_summary(t, schema, target, min_n)["mean"] for t in tables]))
            for target in schema.targets}


def write_doc(table: str, path: Path = DOC) -> None:
    """Put the table between the markers of `path`, keeping the hand-written text around it (a new file: the
    table alone)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    begin, end = MARKERS
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = f"{head}{begin}\n{table}{end}{rest.split(end, 1)[1]}"
    else:
        text = f"{text}{begin}\n{table}{end}\n"
    write_text(path, text)


def markdown(record: dict[str, Any]) -> str:
    """The ablation table of `docs/experiments/reference.md`."""
    head = record["settings"]
    commands = dict.fromkeys(v["command"] for v in record["variants"].values())
    lines = [
        "Rows from " + "; ".join(f"`{c}`" for c in commands) + f", last at commit `{record['commit']}`"
        + (" (with uncommitted changes)" if record["stages_modified"] else "") + f" on {record['machine']}.", "",
        f"Prompt-holdout CV of the reference arm over seeds {head['seeds']}"
        + (f", primary target ({head['targets'][0]}) only" if head["primary_only"] else ", all targets")
        + ". Deltas are variant − committed reference, seed-averaged; the interval is the gate's paired two-level "
        f"bootstrap ({head['n_resamples']} resamples of prompts × seeds, {head['confidence']:.0%}); seed SD is the "
        "variant's SD over seeds. Feature seconds: the family's computation plus its share of the shared parse, "
        "over all essays; fit seconds: one seed's folds, one process per core.", "",
        f"Reference: mean QWK {record['reference']['mean_qwk']:.4f}, worst-prompt QWK "
        f"{record['reference']['worst_prompt_qwk']:.4f}, fit {record['reference']['fit_seconds']:.0f} s per seed.", "",
        "| variant | mean QWK | Δ mean [interval] | worst-prompt QWK | Δ worst [interval] | seed SD mean / worst "
        "| feature s | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in record["variants"].items():
        m, w = v["gate"]["mean_qwk"], v["gate"]["worst_prompt_qwk"]
        sd = "/".join("–" if x["seed_sd"] is None else f"{x['seed_sd']:.4f}" for x in (m, w))
        lines.append(f"| {name} | {m['candidate']:.4f} | {m['delta']:+.4f} [{m['ci'][0]:+.4f}, {m['ci'][1]:+.4f}] "
                     f"| {w['candidate']:.4f} | {w['delta']:+.4f} [{w['ci'][0]:+.4f}, {w['ci'][1]:+.4f}] | {sd} "
                     f"| {v['feature_seconds']:.0f} | {v['fit_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", choices=[v.name for v in VARIANTS], help="default: all")
    parser.add_argument("--seeds", type=int, help="the first N of params seeds.xgb (default: all)")
    parser.add_argument("--primary-only", action="store_true", help="fit the primary target only (screening)")
    args = parser.parse_args()
    params = load_params()
    seeds = params.seeds.of("xgb")[:args.seeds]
    if args.primary_only:
        params = params.model_copy(update={"dataset": params.dataset.model_copy(
            update={"targets": [params.dataset.primary]})})
    schema = DatasetSchema.from_params(params)
    variants = [v for v in VARIANTS if not args.variants or v.name in args.variants]
    base = load_features()
    names = tuple(dict.fromkeys(n for v in variants for n in v.families))
    tables, feature_seconds = family_tables(params, names)

    def runs(features: pd.DataFrame, xgb: dict[str, Any]) -> tuple[list[pd.DataFrame], float]:
        out = [cross_validate(features, params, schema, seed, xgb) for seed in seeds]
        return [t for t, _ in out], float(np.mean([s for _, s in out]))

    reference, reference_seconds = runs(base, {})
    ref_means = trait_means(reference, params, schema)
    record: dict[str, Any] = {
        "command": "python -m tools.reference_ablation " + " ".join(
            ([f"--variants {' '.join(args.variants)}"] if args.variants else [])
            + ([f"--seeds {args.seeds}"] if args.seeds else []) + (["--primary-only"] if args.primary_only else [])),
        **git_commit(), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "settings": {"seeds": seeds, "primary_only": args.primary_only, "targets": list(schema.targets),
                     "n_resamples": params.gate.bootstrap.n_resamples, "confidence": params.gate.bootstrap.confidence},
        "reference": {"fit_seconds": reference_seconds, "qwk_by_trait": ref_means},
        "variants": {},
    }
    earlier = read_json(METRICS) if METRICS.is_file() else None
    if earlier and earlier.get("settings") == record["settings"]:
        record["variants"] = earlier["variants"]  # same seeds and targets: a later run adds or replaces variants
    essays = read_essays(["prompt"])
    for variant in variants:
        features = pd.concat([base, *(tables[n] for n in variant.families)], axis=1, join="inner")
        if variant.within_prompt:
            features = standardised_within_prompt(features, essays)
        predictions, fit_seconds = runs(features, variant.xgb)
        gate = judge(variant.name, predictions, reference, params, schema)
        record["reference"].update({m: gate[m]["reference"] for m in GATE_METRICS})
        record["variants"][variant.name] = {
            "command": record["command"], "families": list(variant.families), "xgb": variant.xgb,
            "within_prompt": variant.within_prompt,
            "gate": gate,
            "qwk_by_trait": trait_means(predictions, params, schema),
            "n_features_added": sum(tables[n].shape[1] for n in variant.families),
            "feature_seconds": sum(feature_seconds[n] for n in variant.families), "fit_seconds": fit_seconds}
        m, w = gate["mean_qwk"], gate["worst_prompt_qwk"]
        print(f"{variant.name}: mean {m['candidate']:.4f} ({m['delta']:+.4f}), worst {w['candidate']:.4f} "
              f"({w['delta']:+.4f}), fit {fit_seconds:.0f} s", flush=True)
        write_json(METRICS, record)  # after every variant: a long run keeps what it measured
        write_doc(markdown(record))


if __name__ == "__main__":
    main()
