"""Benchmark (not a pipeline stage): training throughput and model FLOPs utilisation of one arm on one fold
with a budget's real backbone, batching and training step, for a few optimizer steps.

Runs the project's own code: the fold's essays chosen by `stages.lib.training.fold_essays.select_essays`, windows from
`encode_essays`, the model from `model_for_budget`, the objective from `make_objective`, and
`stages.lib.training.trainer.train` itself on a seeded sample of the trained essays sized to `warmup + max_steps`
optimizer steps. The objective is wrapped (`MeteredObjective`) to time the steady-state micro-batches and
count their real and padded tokens, without changing what the loop computes. Inference is timed with
`stages.lib.training.trainer.predict` on a few validation batches.

Writes `--out` (default `metrics/benchmark_<device>.json`): tokens/s, essays/s, optimizer steps/s, MFU
against the device's dense bf16 peak, peak memory, parameter counts, and an EXTRAPOLATED wall time per fold
and for the whole gate (arms × folds, training + inference + per-fold overhead), computed from the measured
throughput and the folds' real token counts under the real samplers.

    python -m tools.benchmark --budget gpu --arm lora --scheme prompt_holdout --fold 0 --max-steps 20
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stages.lib.core.atomic import write_json
from stages.lib.core.config import load_params, select_budget
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.params import ARMS, SCHEMES, Budget, Objectives
from stages.lib.core.runinfo import device_name, run_info
from stages.lib.data.fold_files import read_fold
from stages.lib.data.schema import DatasetSchema
from stages.lib.training.essay_model import EssayOutput, count_parameters
from stages.lib.training.fold_essays import FoldEssays, encode, select_essays
from stages.lib.training.objectives import Objective, make_objective
from stages.lib.training.recipe import TargetScale
from stages.lib.training.runtime import open_runtime
from stages.lib.training.trainer import predict, train
from stages.lib.windows.chunking import window_spans
from stages.lib.windows.essay_batches import LengthBucketedBatches, encode_essays
from tools.flops import (
    INFERENCE_FORMULA,
    SYMBOLS,
    TRAINING_FORMULA,
    BatchShapes,
    ModelShape,
    batch_shapes,
    executed_training_flops,
    forward_flops,
    model_shape,
    peak_bf16_flops,
    training_flops,
)
from tools.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
EXTRAPOLATED = ("EXTRAPOLATED, not measured: the folds' real token counts under the real samplers (padded "
                "shapes), divided by the FLOP rate measured above; per-fold overhead = measured backbone load + "
                "tokenisation at the measured rate; calibration, leakage probe and file writes not included")


class MeteredObjective(Objective):
    """Delegates everything to the real objective; times the micro-batches after the first `skip` and counts
    their tokens. Adds no host-device synchronisation inside the measured window (counts stay on the device
    until the end) except one at its start."""

    def __init__(self, inner: Objective, skip: int, cuda: bool):
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.skip, self.cuda = skip, cuda
        self.micro = 0
        self.started: float | None = None
        self.padded = BatchShapes()
        self._real_tokens: list[torch.Tensor] = []
        self._real_seq_sq: list[torch.Tensor] = []

    def sample_weights(self, groups: np.ndarray) -> np.ndarray | None:
        return self.inner.sample_weights(groups)

    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups()

    def set_progress(self, progress: float) -> None:
        if self.micro == self.skip:
            if self.cuda:
                torch.cuda.synchronize()
            self.started = time.perf_counter()
        self.micro += 1
        self.inner.set_progress(progress)

    def loss(self, out: EssayOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.micro > self.skip:
            mask = batch["attention_mask"]
            windows, width = mask.shape
            self.padded += BatchShapes(1, int(batch["index"].shape[0]), windows, 0, windows * width, 0,
                                       windows * width * width)
            lengths = mask.sum(1)
            self._real_tokens.append(lengths.sum())
            self._real_seq_sq.append((lengths * lengths).sum())
        return self.inner.loss(out, batch)

    def diagnostics(self, held_out: EssayOutput, groups: np.ndarray) -> dict[str, Any]:
        return self.inner.diagnostics(held_out, groups)

    def measured(self) -> BatchShapes:
        """The measured micro-batches' totals (reads the device counters once)."""
        real = int(torch.stack(self._real_tokens).sum()) if self._real_tokens else 0
        seq_sq = int(torch.stack(self._real_seq_sq).sum()) if self._real_seq_sq else 0
        return replace(self.padded, real_tokens=real, real_seq_sq=seq_sq)


def _sync(cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()


def sample_rows(frame: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Row positions of a seeded sample of `n` essays (all, in order, when there are no more)."""
    if n >= len(frame):
        return np.arange(len(frame))
    return np.sort(np.random.default_rng([seed, 3]).choice(len(frame), size=n, replace=False))


def window_lengths(counts: np.ndarray, content_window: int, stride: int, n_special: int) -> list[np.ndarray]:
    """Per essay, the lengths of its windows (special tokens included), as `window_essays` cuts them."""
    return [np.asarray([e - s + n_special for s, e in window_spans(int(c), content_window, stride).spans])
            for c in counts]


def simulate(sampler: LengthBucketedBatches, lengths: list[np.ndarray], passes: int) -> BatchShapes:
    """Padded shapes of every batch the sampler yields over `passes` passes."""
    total = BatchShapes()
    for _ in range(passes):
        for batch in sampler:
            total += batch_shapes(itertools.chain.from_iterable(lengths[i] for i in batch), len(batch))
    return total


def fold_workload(essays: FoldEssays, counts: dict[str, int], budget: Budget, arm: str, hidden: int,
                  objectives: Objectives, seed: int, content_window: int,
                  n_special: int) -> dict[str, BatchShapes]:
    """Training batches (the arm's sampler, every epoch) and inference batches (ridge probe on the trained
    essays when head_init is ridge, validation, held-out slice) of one fold, as `finetune.run_fold` runs them."""

    def lengths(frame: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
        c = frame["essay_id"].map(counts).to_numpy(np.int64)
        return c, window_lengths(c, content_window, budget.stride, n_special)

    objective = make_objective(arm, hidden, essays.prompts, objectives.of(arm))
    train_counts, train_lengths = lengths(essays.train)
    sampler = LengthBucketedBatches(train_counts, budget.batch_size, seed,
                                    weights=objective.sample_weights(essays.groups(essays.train)))
    work = {"train": simulate(sampler, train_lengths, budget.epochs)}
    inference = BatchShapes()
    for frame in ([essays.train] if budget.head_init == "ridge" else []) + [essays.val, essays.held]:
        c, ls = lengths(frame)
        inference += simulate(LengthBucketedBatches(c, budget.eval_batch_size, 0, shuffle=False), ls, 1)
    work["inference"] = inference
    return work


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no", "--", "stages")
    return {"commit": git("rev-parse", "HEAD"), "stages_modified": None if status is None else bool(status)}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def peak_memory(cuda: bool) -> dict[str, Any]:
    if cuda:
        return {"kind": "torch.cuda.max_memory_allocated (training + inference)",
                "peak_bytes": torch.cuda.max_memory_allocated(),
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {"kind": "peak RSS of the benchmark process (ru_maxrss; includes tokenisation)", "peak_bytes": rss,
            "peak_gib": rss / 2**30}


def rates(shapes: BatchShapes, seconds: float, micro_per_step: int) -> dict[str, float]:
    return {"seconds": seconds,
            "real_tokens_per_s": shapes.real_tokens / seconds,
            "padded_tokens_per_s": shapes.padded_tokens / seconds,
            "essays_per_s": shapes.essays / seconds,
            "windows_per_s": shapes.windows / seconds,
            "optimizer_steps_per_s": shapes.batches / micro_per_step / seconds}


def mfu_block(shape: ModelShape, measured: BatchShapes, seconds: float, peak: float | None,
              peak_source: str) -> dict[str, Any]:
    n, L, h = shape.matmul_params, shape.n_layers, shape.hidden
    model_real = training_flops(n, L, h, measured.real_tokens, measured.real_seq_sq)
    model_padded = training_flops(n, L, h, measured.padded_tokens, measured.padded_seq_sq)
    executed = executed_training_flops(shape, measured.padded_tokens, measured.padded_seq_sq)
    per_s = {"model_flops_per_s": model_real / seconds, "model_flops_per_s_padded": model_padded / seconds,
             "executed_flops_per_s_padded": executed / seconds}

    def ratio(flops_per_s: float) -> float | None:
        return None if peak is None else flops_per_s / peak

    return {
        "peak_flops_per_s": peak, "peak_source": peak_source,
        "mfu": ratio(per_s["model_flops_per_s"]),
        "mfu_padded": ratio(per_s["model_flops_per_s_padded"]),
        "hfu_executed_padded": ratio(per_s["executed_flops_per_s_padded"]),
        "definitions": {
            "mfu": "model FLOPs (formula) on real tokens / s / peak: the headline, padding counts as waste",
            "mfu_padded": "the same formula on the padded tensors / s / peak",
            "hfu_executed_padded": "executed-FLOP estimate (tools.flops.executed_training_flops: no backward "
                                   "below the lowest trained layer, weight gradients for trainable weights only, "
                                   "recompute under checkpointing) on padded tensors / s / peak",
        },
        "model_flops": model_real, "model_flops_padded": model_padded, "executed_flops_padded": executed,
        **per_s,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", required=True, help="a finetune.budgets key of params.yaml (cpu | gpu)")
    parser.add_argument("--arm", default="lora", choices=ARMS)
    parser.add_argument("--scheme", default="prompt_holdout", choices=SCHEMES)
    parser.add_argument("--fold", default=0, type=int)
    parser.add_argument("--max-steps", default=8, type=int, help="optimizer steps measured (after the warm-up)")
    parser.add_argument("--warmup-steps", default=1, type=int, help="optimizer steps run first, not measured")
    parser.add_argument("--eval-batches", default=1, type=int,
                        help="validation batches timed through predict (0: assume the training FLOP rate)")
    parser.add_argument("--full-finetune", action="store_true", help="override lora.enabled to false")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the budget (YAML value; dotted for nested keys), e.g. "
                             "batch_size=16, speed.attention=eager, gradient_checkpointing=false; repeatable")
    parser.add_argument("--peak-flops", type=float, default=None,
                        help="declared dense peak FLOP/s of the device (overrides the table; e.g. for a CPU)")
    parser.add_argument("--gate-schemes", default=None,
                        help="comma-separated schemes of the extrapolated gate (default: --scheme)")
    parser.add_argument("--params", default=None, help="parameter file (default params.yaml or $AES_PARAMS)")
    parser.add_argument("--out", default=None, help="metrics JSON (default metrics/benchmark_<device>.json)")
    args = parser.parse_args(argv)
    if args.max_steps < 1 or args.warmup_steps < 0 or args.eval_batches < 0:
        parser.error("need --max-steps >= 1, --warmup-steps >= 0 and --eval-batches >= 0")
    args.gate_schemes = tuple(args.gate_schemes.split(",")) if args.gate_schemes else (args.scheme,)
    unknown = set(args.gate_schemes) - set(SCHEMES)
    if unknown:
        parser.error(f"--gate-schemes: unknown {sorted(unknown)}")
    return args


def run_benchmark(args: argparse.Namespace, command: str) -> tuple[Path, dict[str, Any]]:
    t_begin = time.perf_counter()
    load_start = os.getloadavg()
    params = select_budget(load_params(args.params), args.budget, args.overrides)
    cfg = params.finetune
    budget = cfg.selected
    if args.full_finetune:
        budget = budget.model_copy(update={"lora": budget.lora.model_copy(update={"enabled": False})})
    schema, seed = DatasetSchema.from_params(params), params.seed
    runtime = open_runtime(budget, seed)
    cuda = runtime.device == "cuda"
    tokenizer, load_seconds, plan = runtime.tokenizer, runtime.load_seconds, runtime.plan
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    content_window = budget.max_length - n_special

    # Every fold of the extrapolated gate, essays chosen as finetune.run_fold chooses them; each essay tokenised once.
    gate_essays = {(s, k): select_essays(*read_fold(s, k), budget, seed) for s in args.gate_schemes for k in cfg.folds}
    if (args.scheme, args.fold) not in gate_essays:
        gate_essays[(args.scheme, args.fold)] = select_essays(*read_fold(args.scheme, args.fold), budget, seed)
    texts = pd.concat([pd.concat([e.train, e.held, e.val])[["essay_id", "text"]] for e in gate_essays.values()])
    texts = texts.drop_duplicates("essay_id")
    t0 = time.perf_counter()
    token_counts = encode_essays(texts["text"].tolist(), tokenizer, budget.max_length, budget.stride).token_counts
    tokenise_seconds_per_essay = (time.perf_counter() - t0) / max(len(texts), 1)
    counts = dict(zip(texts["essay_id"], token_counts.tolist(), strict=True))

    # The measured run: the real training loop on a seeded sample of the fold's trained essays.
    essays = gate_essays[(args.scheme, args.fold)]
    targets = list(schema.targets)
    scale, _ = TargetScale.of(schema, essays.train)  # the recipe's targets: common scale, standardised
    steps_possible = len(essays.train) // budget.effective_batch - args.warmup_steps
    if steps_possible < 1:
        raise InputError(f"fold {args.fold}: {len(essays.train)} trained essays are too few for "
                         f"{args.warmup_steps} warm-up + 1 measured step of {budget.effective_batch} essays")
    measured_steps = min(args.max_steps, steps_possible)
    sample = essays.train.iloc[sample_rows(essays.train, (args.warmup_steps + measured_steps)
                                              * budget.effective_batch, seed)]
    y = scale.standardise(schema, sample)
    train_set = encode(sample, tokenizer, budget, y, essays.groups(sample))

    model, objective, accelerator = runtime.build(
        len(targets), lambda m: make_objective(args.arm, m.hidden_size, essays.prompts, cfg.objectives.of(args.arm)))
    config = model.encoder.config
    shape = model_shape(model, int(config.num_hidden_layers), int(config.hidden_size), budget.gradient_checkpointing)
    metered = MeteredObjective(objective, args.warmup_steps * budget.accumulation_steps, cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = _sync(cuda)
    one_epoch = budget.model_copy(update={"epochs": 1})
    log = train(model, metered, train_set, one_epoch, accelerator, pad_id=tokenizer.pad_token_id, seed=seed,
                fold=args.fold)
    t_end = _sync(cuda)
    if metered.started is None:
        raise InputError("benchmark: no micro-batch ran after the warm-up")
    train_seconds = t_end - metered.started
    measured = metered.measured()
    losses = np.asarray(log["step_loss"], float)
    if not np.isfinite(losses).all():  # train() stops first; this guards the benchmark's own assumptions
        raise InputError("benchmark: non-finite training loss")

    # Inference: predict() on a seeded sample of validation essays.
    inference: dict[str, Any] = {"measured": False}
    infer_rate = None
    if args.eval_batches and len(essays.val):
        val_sample = essays.val.iloc[sample_rows(essays.val, args.eval_batches * budget.eval_batch_size, seed)]
        val_set = encode(val_sample, tokenizer, budget)
        val_shapes = simulate(LengthBucketedBatches(val_set.token_counts, budget.eval_batch_size, 0, shuffle=False),
                              window_lengths(val_set.token_counts, content_window, budget.stride, n_special), 1)
        ti = _sync(cuda)
        predict(model, val_set, accelerator, pad_id=tokenizer.pad_token_id, batch_size=budget.eval_batch_size,
                fold=args.fold)
        infer_seconds = _sync(cuda) - ti
        flops = forward_flops(shape.matmul_params, shape.n_layers, shape.hidden, val_shapes.padded_tokens,
                              val_shapes.padded_seq_sq)
        infer_rate = flops / infer_seconds
        inference = {"measured": True, **val_shapes.as_dict(), "seconds": infer_seconds,
                     "real_tokens_per_s": val_shapes.real_tokens / infer_seconds,
                     "padded_tokens_per_s": val_shapes.padded_tokens / infer_seconds,
                     "essays_per_s": val_shapes.essays / infer_seconds,
                     "forward_flops_per_s_padded": infer_rate}
    memory = peak_memory(cuda)

    # Extrapolation from the measured FLOP rates to the folds' real workloads.
    device_label = device_name()
    peak, peak_source = peak_bf16_flops(device_label)
    if args.peak_flops:
        peak, peak_source = args.peak_flops, "declared with --peak-flops"
    train_rate = executed_training_flops(shape, measured.padded_tokens, measured.padded_seq_sq) / train_seconds
    if infer_rate is None:
        infer_rate = train_rate
        inference["assumed"] = "inference not measured: extrapolated at the training FLOP rate"

    def fold_estimate(arm: str, fold_essays: FoldEssays) -> dict[str, Any]:
        work = fold_workload(fold_essays, counts, budget, arm, model.hidden_size, cfg.objectives, seed,
                             content_window, n_special)
        train_s = executed_training_flops(shape, work["train"].padded_tokens, work["train"].padded_seq_sq) / train_rate
        infer_s = forward_flops(shape.matmul_params, shape.n_layers, shape.hidden, work["inference"].padded_tokens,
                                work["inference"].padded_seq_sq) / infer_rate
        n_encoded = len(fold_essays.train) + len(fold_essays.held) + len(fold_essays.val)
        overhead_s = load_seconds + tokenise_seconds_per_essay * n_encoded
        micro_batches = math.ceil(len(fold_essays.train) / budget.batch_size)
        return {"train_essays": len(fold_essays.train),
                "optimizer_steps": budget.epochs * math.ceil(micro_batches / budget.accumulation_steps),
                "train_batches": work["train"].as_dict(), "inference_batches": work["inference"].as_dict(),
                "train_s": train_s, "inference_s": infer_s, "overhead_s": overhead_s,
                "total_s": train_s + infer_s + overhead_s}

    per_fold = {f"{a}/{s}/fold_{k}": fold_estimate(a, e) for a in cfg.arms for (s, k), e in gate_essays.items()
                if s in args.gate_schemes and k in cfg.folds}
    this_fold = per_fold.get(f"{args.arm}/{args.scheme}/fold_{args.fold}") or fold_estimate(args.arm, essays)
    gate_total = {key: sum(f[key] for f in per_fold.values()) for key in ("train_s", "inference_s", "overhead_s",
                                                                            "total_s")}
    autocast = str(plan.autocast_dtype).removeprefix("torch.") if plan.autocast_dtype else None
    parameters = count_parameters(model)
    result = {
        "what": "training benchmark: measured steady-state steps of stages.lib.training.trainer.train "
                "(not a pipeline run)",
        "command": command,
        **git_commit(),
        "device": str(accelerator.device), "device_name": device_label,
        "device_detail": torch.cuda.get_device_name(0) if cuda else cpu_model(),
        "precision": {"requested": budget.precision, "used": plan.name, "autocast_dtype": autocast,
                      "grad_scaler": log["grad_scaler"], "activation_dtype": log["activation_dtype"]},
        "backbone": budget.backbone, "budget": budget.name, "arm": args.arm, "scheme": args.scheme,
        "fold": args.fold, "full_finetune": not budget.lora.enabled, "overrides": list(args.overrides),
        "speed": {**budget.speed.model_dump(), "attention_used": model.attention},
        "lora": {"enabled": budget.lora.enabled, "r": budget.lora.r, "target_modules": list(budget.lora.target_modules),
                 "layers": None if budget.lora.layers is None else list(budget.lora.layers)},
        "config": {"max_length": budget.max_length, "stride": budget.stride, "batch_size": budget.batch_size,
                   "effective_batch": budget.effective_batch, "accumulation_steps": budget.accumulation_steps,
                   "eval_batch_size": budget.eval_batch_size, "epochs": budget.epochs,
                   "gradient_checkpointing": budget.gradient_checkpointing, "threads": torch.get_num_threads()},
        "parameters": {**parameters, "objective_extra": sum(p.numel() for p in objective.parameters()),
                       **shape.as_dict()},
        "flops_formula": {"training": TRAINING_FORMULA, "inference": INFERENCE_FORMULA, "symbols": SYMBOLS,
                          "note": "the 6NT convention counts weight gradients of frozen weights too, so with LoRA "
                                  "it overstates the work done; hfu_executed_padded shows the executed estimate"},
        "measured": {"warmup_optimizer_steps": args.warmup_steps, "optimizer_steps": measured_steps,
                     "micro_batches": measured.batches, **measured.as_dict(),
                     **rates(measured, train_seconds, budget.accumulation_steps),
                     "final_loss": float(losses[-1])},
        "training_tokens_per_s": measured.real_tokens / train_seconds,
        "padded_tokens_per_s": measured.padded_tokens / train_seconds,
        "essays_per_s": measured.essays / train_seconds,
        "optimizer_steps_per_s": measured.batches / budget.accumulation_steps / train_seconds,
        "measured_wall_s": train_seconds,
        "utilisation": mfu_block(shape, measured, train_seconds, peak, peak_source),
        "inference": inference,
        "memory": memory,
        "extrapolated": {
            "label": EXTRAPOLATED,
            "this_fold": this_fold,
            "gate": {"arms": list(cfg.arms), "schemes": list(args.gate_schemes), "folds": list(cfg.folds),
                     "runs": len(per_fold), **gate_total, "total_h": gate_total["total_s"] / 3600},
            "per_fold_total_s": {k: v["total_s"] for k, v in per_fold.items()},
            "load_s": load_seconds, "tokenise_s_per_essay": tokenise_seconds_per_essay,
        },
        "conditions": {"loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()),
                       "niceness": os.nice(0), "benchmark_wall_s": time.perf_counter() - t_begin},
        "run": run_info(seed, threads=torch.get_num_threads()),
    }
    out = Path(args.out) if args.out else Path("metrics") / f"benchmark_{slug(device_label)}.json"
    write_json(out, result)
    return out, result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    out, r = run_benchmark(args, shlex.join(["python", "-m", "tools.benchmark", *argv]))
    u, gate = r["utilisation"], r["extrapolated"]["gate"]
    mfu = "n/a" if u["mfu"] is None else f"{100 * u['mfu']:.1f}%"
    print(f"{r['backbone']} {r['arm']} on {r['device_name']} ({r['precision']['used']}): "
          f"{r['training_tokens_per_s']:.0f} real tok/s, {r['padded_tokens_per_s']:.0f} padded tok/s, "
          f"{r['essays_per_s']:.2f} essays/s, {r['optimizer_steps_per_s']:.3f} steps/s, MFU {mfu}, "
          f"peak memory {r['memory']['peak_gib']:.2f} GiB; extrapolated gate ({gate['runs']} runs) "
          f"{gate['total_h']:.2f} h -> {out}")


if __name__ == "__main__":
    run_stage(main)
