"""A transformer arm's final model: the `finetune` stage's code path (`fold_essays.select_essays`, `encode`,
`target_scale`, `runtime.open_runtime` → `build`, the ridge head initialisation, `trainer.train`,
`trainer.predict`) run on every prepared essay instead of one fold's training essays, with the held-out
training slice calibrating the grid cutpoints exactly as in a fold. Saved the peft way (adapter config +
weights, loadable offline onto the budget's backbone) beside the head, the target scale and the cutpoints.
On a budget with `gate_valid: false` (the CPU budget) the artifact is a smoke artifact and says so."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stages.lib.core.runinfo import package_versions
from stages.lib.data.schema import DatasetSchema
from stages.lib.scoring.calibration import CutpointCalibrator, RoundingCalibrator, fit_calibrators
from stages.lib.serving.artifact_files import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SCHEMA,
    STATS,
    backbone_fingerprint,
    file_hashes,
    percentiles,
    write_json_file,
)
from stages.lib.training.essay_model import EssayRegressor, fit_head
from stages.lib.training.finetune_config import Budget, LoraSettings, SpeedSettings, finetune_config
from stages.lib.training.fold_essays import FoldEssays, encode, select_essays, target_scale
from stages.lib.training.objectives import make_objective
from stages.lib.training.runtime import open_runtime
from stages.lib.training.trainer import predict, train

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
    calibrators: tuple[RoundingCalibrator | CutpointCalibrator, ...]
    essays: FoldEssays
    log: dict[str, Any]


def fit_final(arm: str, essays_all: pd.DataFrame, params: dict[str, Any]) -> FinalRun:
    """Train `arm` on every essay of `essays_all` as `finetune` trains on a fold (see the module docstring)."""
    t0 = time.perf_counter()
    cfg = finetune_config(params)
    schema, budget, seed = DatasetSchema.from_params(params), cfg.budget, int(params["seed"])
    runtime = open_runtime(budget, seed)
    tokenizer = runtime.tokenizer
    essays = select_essays(essays_all, essays_all.iloc[:0], budget, seed)
    targets = list(schema.targets)
    y_train, y_held = schema.common_targets(essays.train), schema.common_targets(essays.held)
    mean, std = target_scale(y_train)
    train_set = encode(essays.train, tokenizer, budget, (y_train - mean) / std, essays.groups(essays.train))
    held_set = encode(essays.held, tokenizer, budget, groups=essays.groups(essays.held))
    model, objective, accelerator = runtime.build(
        len(targets), lambda m: make_objective(arm, m.hidden_size, essays.prompts, cfg.objectives[arm]))
    infer = partial(predict, model, accelerator=accelerator, pad_id=tokenizer.pad_token_id,
                    batch_size=budget.eval_batch_size, fold=FINAL_FOLD)
    head_alpha = fit_head(model, infer(train_set).rep.numpy(), train_set.targets, train_set.target_mask) \
        if budget.head_init == "ridge" else None
    training = train(model, objective, train_set, budget, accelerator, pad_id=tokenizer.pad_token_id, seed=seed,
                     fold=FINAL_FOLD)
    held_pred = infer(held_set).pred.numpy() * std + mean
    calibrators = fit_calibrators(budget.calibration, schema.grid, held_pred, y_held)
    log = {"n_essays": {"prepared": len(essays_all), "trained": len(essays.train), "holdout": len(essays.held),
                        "train_prompts": len(essays.prompts)},
           "head_init": {"kind": budget.head_init, "ridge_alpha": head_alpha},
           "micro_batches": training.get("micro_batches"), "precision": runtime.plan.name,
           "seconds": round(time.perf_counter() - t0, 1)}
    return FinalRun(arm, budget, model, tokenizer, mean, std, calibrators, essays, log)


def save_final(directory: Path, run: FinalRun, params: dict[str, Any], backbone: dict[str, Any]) -> dict[str, Any]:
    """Write the encoder adapter (peft `save_pretrained`), the head (safetensors) and `transformer.json`
    (budget, target scale, cutpoints, backbone) into `directory`; return what `transformer.json` holds."""
    from safetensors.torch import save_file

    run.model.encoder.save_pretrained(directory / ADAPTER)
    save_file({"weight": run.model.head.weight.detach().contiguous(),
               "bias": run.model.head.bias.detach().contiguous()}, str(directory / HEAD))
    schema = DatasetSchema.from_params(params)
    config = {
        "arm": run.arm,
        "budget": asdict(run.budget),
        "objective": finetune_config(params).objectives[run.arm],
        "lora": bool(run.budget.lora.enabled),
        "backbone": backbone,
        "targets": list(schema.targets),
        "target_scale": {"mean": [float(m) for m in run.mean], "std": [float(s) for s in run.std]},
        "calibration": {t: {"kind": "cutpoints" if getattr(c, "cutpoints_", None) is not None else "round",
                            "cutpoints": None if getattr(c, "cutpoints_", None) is None
                            else [float(x) for x in c.cutpoints_]}
                        for t, c in zip(schema.targets, run.calibrators, strict=True)},
        "training": run.log | {"seconds": None},  # no wall-clock in the artifact (the stage prints it)
        "packages": package_versions(PACKAGES),
    }
    (directory / CONFIG).write_text(json.dumps(config, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return config


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def budget_from_dict(raw: dict[str, Any]) -> Budget:
    """A `Budget` back from its JSON form (lists were tuples)."""
    lora = LoraSettings(**{k: _tuples(v) for k, v in raw["lora"].items()})
    return Budget(**{**{k: _tuples(v) for k, v in raw.items()}, "lora": lora, "speed": SpeedSettings(**raw["speed"])})


def load_final_model(directory: Path, config: dict[str, Any]) -> tuple[EssayRegressor, Any, Any]:
    """The saved arm rebuilt offline: the budget's backbone (float32), the peft adapter loaded onto it, the
    head; returns (model in eval mode, tokenizer, accelerator)."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from stages.lib.encoders.attention import use_attention
    from stages.lib.training.trainer import accelerator_for

    budget = budget_from_dict(config["budget"])
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


def build_transformer(directory: Path, arm: str, essays: pd.DataFrame, params: dict[str, Any]
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
    write_json_file(directory / SCHEMA, params["dataset"])
    write_json_file(directory / STATS, stats)
    name = params["finetune"]["budget"]
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "arm": arm, "kind": KIND,
        "gate_valid": bool(budget.gate_valid), "smoke": not budget.gate_valid, "budget": name,
        "backbone": budget.backbone,
        "trained_on": {"essays": len(run.essays.train), "holdout": len(run.essays.held),
                       "prepared": len(essays), "prompts": int(essays["prompt"].nunique())},
        "calibration": {"kind": budget.calibration, "fitted_on": "the held-out training slice (as in a fold)"},
        "params": {"seed": params["seed"], "dataset": params["dataset"], "prepare": params["prepare"],
                   "finetune": {"budget": name, "budgets": {name: params["finetune"]["budgets"][name]},
                                "objectives": {arm: params["finetune"]["objectives"][arm]}}},
        "packages": package_versions(PACKAGES),
        "files": file_hashes(directory),
    }
    write_json_file(directory / MANIFEST, manifest)
    return run, manifest
