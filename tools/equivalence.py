"""Do two runs of the same arms score alike? (The speed settings must leave QWK unchanged.)

Not a DVC stage: it compares the predictions tables of two gate runs made on a lent GPU, typically the
straightforward loop (`SPEED=straightforward scripts/gpu_gate.sh`, unpacked under REFERENCE_ROOT) against
the optimised one (the committed evidence, CANDIDATE_ROOT = the repository). Per arm it reports both runs'
mean-over-folds and worst-prompt QWK, the per-fold differences, and whether the difference of the means is
within fold noise: no larger than the standard error of the reference's mean over folds.

    python -m tools.equivalence --reference-root /tmp/straightforward --candidate-root . \\
        --arms lora adversarial groupdro --out metrics/speed_equivalence.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stages.lib.core.atomic import write_json
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.params import ARMS, SCHEMES, Evaluate
from stages.lib.core.paths import predictions_path
from stages.lib.core.runinfo import run_info
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.evaluation import summarise
from stages.lib.scoring.metrics import exact_agreement
from stages.lib.scoring.predictions import read_predictions

NOISE = ("standard error of the reference's mean over folds: std(per-fold QWK, ddof=1) / sqrt(folds); "
         "within fold noise when |candidate mean - reference mean| <= that")


def _qwk_block(summary: dict[str, Any]) -> dict[str, Any]:
    q = summary["qwk"]
    return {"mean": q["mean"], "std": q["std"], "per_fold": q["per_fold"], "worst_prompt": summary["worst_prompt_qwk"]}


def compare_runs(reference: pd.DataFrame, candidate: pd.DataFrame, schema: DatasetSchema,
                 evaluate_cfg: Evaluate, names: tuple[str, str] = ("reference", "candidate")) -> dict[str, Any]:
    """QWK of both runs, their differences and the fold-noise verdict; both tables must hold the same essays
    in the same folds (otherwise an `InputError` naming the first essay that differs)."""
    keyed = [t.set_index("essay_id")["fold"] for t in (reference, candidate)]
    if not keyed[0].sort_index().equals(keyed[1].sort_index()):
        only = keyed[0].index.symmetric_difference(keyed[1].index)
        essay = only[0] if len(only) else next(e for e in keyed[0].index if keyed[0][e] != keyed[1][e])
        raise InputError(f"{names[0]} vs {names[1]}: not the same essays in the same folds (first: essay {essay})")
    ref, cand = (summarise(t, schema, evaluate_cfg) for t in (reference, candidate))
    ref_q, cand_q = _qwk_block(ref), _qwk_block(cand)
    n_folds = len(ref_q["per_fold"])
    noise = ref_q["std"] / np.sqrt(n_folds) if n_folds > 1 else float("nan")
    delta = cand_q["mean"] - ref_q["mean"]
    p = schema.primary
    aligned = candidate.set_index("essay_id").loc[reference["essay_id"]]
    return {
        "primary": p,
        "n_essays": len(reference),
        "reference": {"source": names[0], **ref_q},
        "candidate": {"source": names[1], **cand_q},
        "delta": {"mean": delta, "worst_prompt": cand_q["worst_prompt"] - ref_q["worst_prompt"],
                  "per_fold": (np.asarray(cand_q["per_fold"]) - np.asarray(ref_q["per_fold"])).tolist()},
        "fold_noise": noise,
        "within_fold_noise": bool(abs(delta) <= noise),
        "same_grid_score": exact_agreement(reference[f"grid_{p}"].to_numpy(), aligned[f"grid_{p}"].to_numpy(),
                                           schema.grid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-root", required=True, type=Path, help="holds data/predictions/ of run 1")
    parser.add_argument("--candidate-root", default=Path("."), type=Path, help="holds data/predictions/ of run 2")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--scheme", default="prompt_holdout", choices=SCHEMES)
    parser.add_argument("--seed", type=int, help="the training seed compared (default: the first of seeds.finetune)")
    parser.add_argument("--out", type=Path, default=Path("metrics/speed_equivalence.json"))
    args = parser.parse_args()
    params = load_params()
    schema = DatasetSchema.from_params(params)
    result: dict[str, Any] = {"what": __doc__.splitlines()[0], "fold_noise_definition": NOISE,
                              "scheme": args.scheme, "arms": {}}
    seed = params.seeds.of(args.arms[0])[0] if args.seed is None else args.seed
    result["seed"] = seed
    for arm in args.arms:
        paths = [root / predictions_path(arm, args.scheme, seed) for root in (args.reference_root, args.candidate_root)]
        tables = [read_predictions(path, schema) for path in paths]
        result["arms"][arm] = compare_runs(*tables, schema, params.evaluate, names=(str(paths[0]), str(paths[1])))
        r = result["arms"][arm]
        verdict = "within" if r["within_fold_noise"] else "OUTSIDE"
        print(f"{arm}: QWK {r['reference']['mean']:.3f} -> {r['candidate']['mean']:.3f} "
              f"(delta {r['delta']['mean']:+.4f}, fold noise {r['fold_noise']:.4f}: {verdict}); "
              f"worst-prompt delta {r['delta']['worst_prompt']:+.4f}")
    result["run"] = run_info(seed)
    write_json(args.out, result)


if __name__ == "__main__":
    run_stage(main)
