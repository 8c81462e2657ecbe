"""A transformer arm's final model: the training recipe (`recipe.fit_arm`) a `finetune` fold runs, on every
prepared essay instead of one fold's training essays, with the arm's final seed (`Seeds.final`) and the
held-out training slice calibrating the grid cutpoints exactly as in a fold. Saved the peft way (adapter config +
weights, loadable offline onto the budget's backbone) beside the head, the target scale and the cutpoints.
On a budget with `gate_valid: false` (the CPU budget) the artifact is a smoke artifact and says so."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stages.lib.artifacts.files import SCHEMA, STATS, backbone_fingerprint, percentiles, write_json_file, write_manifest
from stages.lib.core.params import Budget, Params
from stages.lib.core.paths import PREFLIGHT
from stages.lib.core.runinfo import package_versions
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.calibration import Calibrator, calibration_record, fit_calibrators
from stages.lib.training.essay_model import EssayRegressor
from stages.lib.training.fold_essays import FoldEssays, select_essays
from stages.lib.training.recipe import fit_arm
from stages.lib.training.runtime import open_runtime
from stages.lib.training.speed_ladder import proven_budget

ADAPTER = "adapter"  # peft's save_pretrained directory (or the whole encoder for a full fine-tune)
HEAD = "head.safetensors"
CONFIG = "transformer.json"
FINAL_FOLD = -1  # what training logs and errors call the final run (no fold)
PACKAGES = ("numpy", "torch", "transformers", "peft", "accelerate", "safetensors", "scikit-learn")
KIND = "transformer"


@dataclass
class FinalRun:
    """A trained transformer arm with everything its artifact needs."""

    arm: str
    budget: Budget
    model: EssayRegressor
    tokenizer: Any
    mean: np.ndarray
    std: np.ndarray
    calibrators: tuple[Calibrator, ...]
    essays: FoldEssays
    log: dict[str, Any]


def fit_final(arm: str, essays_all: pd.DataFrame, params: Params) -> FinalRun:
    """Train `arm` on every essay of `essays_all` through the training recipe, as `finetune` trains on a fold,
    with the arm's final seed (see the module docstring)."""
    t0 = time.perf_counter()
    budget = proven_budget(params.finetune.selected, PREFLIGHT)
    schema, seed = DatasetSchema.from_params(params), params.seeds.final(arm)
    runtime = open_runtime(budget, seed)
    essays = select_essays(essays_all, essays_all.iloc[:0], budget, seed)
    fitted = fit_arm(arm, runtime, essays, schema, params.finetune.objectives.of(arm), seed, FINAL_FOLD)
    calibrators = fit_calibrators(budget.calibration, schema.grid, fitted.common_scale(fitted.infer(fitted.held_set)),
                                  schema.common_targets(essays.held))
    log = {"n_essays": {"prepared": len(essays_all), "trained": len(essays.train), "holdout": len(essays.held),
                        "train_prompts": len(essays.prompts)},
           "seed": seed,
           "head_init": {"kind": budget.head_init, "ridge_alpha": fitted.head_alpha},
           "micro_batches": fitted.training.get("micro_batches"), "precision": runtime.plan.name,
           "seconds": round(time.perf_counter() - t0, 1)}
    return FinalRun(arm, budget, fitted.model, runtime.tokenizer, fitted.scale.mean, fitted.scale.std, calibrators,
                    essays, log)


def make_portable(adapter_dir: Path, spec: str) -> None:
    """peft's `save_pretrained` writes the backbone's absolute local path (in `adapter_config.json` and a README
    citing it) and the target modules in set order, which varies with the process's hash seed: the artifact names
    the backbone by its spec and lists the modules sorted, so the same training gives the same bytes anywhere."""
    (adapter_dir / "README.md").unlink(missing_ok=True)
    path = adapter_dir / "adapter_config.json"
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = spec
        if isinstance(config.get("target_modules"), list):
            config["target_modules"] = sorted(config["target_modules"])
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_final(directory: Path, run: FinalRun, params: Params, backbone: dict[str, Any]) -> dict[str, Any]:
    """Write the encoder adapter (peft `save_pretrained`), the head (safetensors) and `transformer.json`
    (budget, target scale, cutpoints, backbone) into `directory`; return what `transformer.json` holds."""
    from safetensors.torch import save_file

    run.model.encoder.save_pretrained(directory / ADAPTER)
    make_portable(directory / ADAPTER, run.budget.backbone)
    save_file({"weight": run.model.head.weight.detach().contiguous(),
               "bias": run.model.head.bias.detach().contiguous()}, str(directory / HEAD))
    schema = DatasetSchema.from_params(params)
    config = {
        "arm": run.arm,
        "budget": run.budget.record(),
        "objective": params.finetune.objectives.of(run.arm),
        "lora": bool(run.budget.lora.enabled),
        "backbone": backbone,
        "targets": list(schema.targets),
        "target_scale": {"mean": [float(m) for m in run.mean], "std": [float(s) for s in run.std]},
        "calibration": calibration_record(run.calibrators, schema.targets),
        "training": run.log | {"seconds": None},  # no wall-clock in the artifact (the stage prints it)
        "packages": package_versions(PACKAGES),
    }
    write_json_file(directory / CONFIG, config)
    return config


def load_final_model(directory: Path, config: dict[str, Any]) -> tuple[EssayRegressor, Any, Any]:
    """The saved arm rebuilt offline: the budget's backbone (float32), the peft adapter loaded onto it, the
    head; returns (model in eval mode, tokenizer, accelerator)."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from stages.lib.encoders.attention import use_attention
    from stages.lib.training.trainer import accelerator_for

    budget = Budget.from_record(config["budget"], str(directory / CONFIG))
    runtime = open_runtime(budget, None)
    encoder = runtime.encoder
    if budget.speed.attention:
        use_attention(encoder, budget.speed.attention)
    if config["lora"]:
        encoder = PeftModel.from_pretrained(encoder, str(directory / ADAPTER), is_trainable=False)
    else:
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(directory / ADAPTER, dtype=torch.float32)
    model = EssayRegressor(encoder, len(config["targets"]), float(budget.head_dropout))
    head = load_file(str(directory / HEAD))
    with torch.no_grad():
        model.head.weight.copy_(head["weight"])
        model.head.bias.copy_(head["bias"])
    model.eval()
    return model, runtime.tokenizer, accelerator_for(runtime.plan, runtime.device, budget)


def build_transformer(directory: Path, arm: str, essays: pd.DataFrame, params: Params
                      ) -> tuple[FinalRun, dict[str, Any]]:
    """Train `arm` on every essay of `essays` (`stages.lib.training.final.fit_final`) and write its artifact
    into `directory`; return the run and the manifest."""
    run = fit_final(arm, essays, params)
    budget = run.budget
    save_final(directory, run, params, backbone_fingerprint(budget.backbone))
    used = pd.concat([run.essays.train, run.essays.held])
    stats = {"n_essays": len(used), "n_words": percentiles(used["n_words"].to_numpy()), "features": {},
             "prompts": {str(p): int(n) for p, n in used["prompt"].value_counts().sort_index().items()},
             "essay_ids": sorted(str(i) for i in used["essay_id"])}
    write_json_file(directory / SCHEMA, params.dataset.model_dump())
    write_json_file(directory / STATS, stats)
    name = params.finetune.budget
    manifest = write_manifest(directory, {
        "arm": arm, "kind": KIND,
        "gate_valid": bool(budget.gate_valid), "smoke": not budget.gate_valid, "budget": name,
        "backbone": budget.backbone,
        "trained_on": {"essays": len(run.essays.train), "holdout": len(run.essays.held),
                       "prepared": len(essays), "prompts": int(essays["prompt"].nunique())},
        "calibration": {"kind": budget.calibration, "fitted_on": "the held-out training slice (as in a fold)"},
        "seed": run.log["seed"],
        "params": {"seed": params.seed, "dataset": params.dataset.model_dump(), "prepare": params.prepare.model_dump(),
                   "finetune": {"budget": name, "budgets": {name: params.finetune.selected.model_dump()},
                                "objectives": {arm: params.finetune.objectives.of(arm)}}},
        "packages": package_versions(PACKAGES),
    })
    return run, manifest
