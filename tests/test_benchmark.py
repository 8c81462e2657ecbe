"""The benchmark command: FLOP accounting against hand-computed cases, the peak table, and a 2-step run on
the tiny random BERT that writes finite positive throughput figures."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import replace

import pytest
import torch
import yaml
from tiny_backbone import invented_essays, make_tiny_backbone, tiny_params, write_project

from tools import benchmark
from tools.flops import (
    BatchShapes,
    ModelShape,
    batch_shapes,
    executed_training_flops,
    forward_flops,
    peak_bf16_flops,
    training_flops,
)

pytestmark = pytest.mark.usefixtures("restore_torch_globals")


def test_training_flops_by_hand():
    # N = 1000 parameters, 10 tokens; L = 2 layers of width 32; two windows of 4 and 8 tokens (4 + 8 = 10).
    # 6·1000·10 = 60 000; 12·2·32·(4² + 8²) = 768·80 = 61 440.
    assert training_flops(1000, 2, 32, 10, 4**2 + 8**2) == 121_440
    assert forward_flops(1000, 2, 32, 10, 80) == 2 * 1000 * 10 + 4 * 2 * 32 * 80


def test_executed_flops_match_the_convention_for_a_full_finetune():
    full = ModelShape(n_layers=2, hidden=32, matmul_params=1000, other_params=50, trainable_matmul_params=1000,
                      first_trained_layer=0, embeddings_trained=True, checkpointing=False)
    assert executed_training_flops(full, 10, 80) == training_flops(1000, 2, 32, 10, 80)
    # checkpointing recomputes one forward of every layer: + 2·N·T + 4·L·h·Σs²
    assert executed_training_flops(replace(full, checkpointing=True), 10, 80) == 121_440 + 20_000 + 20_480
    # LoRA (100 adapter weights) on the top layer only: forward 2·1000·10, backward through 1 layer of 500
    # (2·500·10) plus adapter gradients (2·100·10); attention 4·2 + 8·1 = 16 → 16·32·80.
    lora = replace(full, trainable_matmul_params=100, first_trained_layer=1, embeddings_trained=False)
    assert lora.backward_layers == 1
    assert executed_training_flops(lora, 10, 80) == 20_000 + 10_000 + 2_000 + 16 * 32 * 80


def test_batch_shapes_pad_to_the_longest_window():
    shapes = batch_shapes([4, 8, 3], essays=2)
    assert shapes == BatchShapes(1, 2, 3, 15, 24, 16 + 64 + 9, 3 * 64)
    assert (shapes + shapes).padded_tokens == 48


@pytest.mark.parametrize(("name", "peak"), [
    ("cuda:NVIDIA H100 80GB HBM3", 989e12), ("cuda:NVIDIA H200", 989e12), ("cuda:NVIDIA A100-SXM4-80GB", 312e12),
    ("cuda:NVIDIA H100 PCIe", 756e12), ("cpu:x86_64", None), ("cuda:Some Future GPU", None),
])
def test_peak_table(name, peak):
    value, source = peak_bf16_flops(name)
    assert value == peak and source


# The tiny BERT of tests/tiny_backbone.py by hand: per layer Q, K, V, O 4·(32·32 + 32) = 4224, two LayerNorms
# 2·64 = 128, intermediate 32·64 + 64 = 2112, output 64·32 + 32 = 2080: 8544; LoRA r = 4 on query and value adds
# 2·(4·32 + 32·4) = 512 trainable weights. Two layers: N = 2·(8544 + 512) = 18 112, of which 1024 train.
TINY_N, TINY_LORA, TINY_HEAD = 18_112, 1024, 32 * 7 + 7


class Clock:
    """The benchmark's clock, made exact: one second per training loss computed, a microsecond per reading."""

    def __init__(self) -> None:
        self.ticks = self.reads = 0

    def perf_counter(self) -> float:
        self.reads += 1
        return self.ticks + 1e-6 * self.reads


def _record_training_batches(monkeypatch) -> tuple[list[dict], Clock]:
    """Every batch the training loop collates (the loader runs in-process), in the order it is fed, and the
    clock the benchmark reads, which each training micro-batch's loss advances by one second."""
    from stages.lib.training import trainer

    fed, training, clock = [], [], Clock()

    class Recording(trainer.EssayCollator):
        def __call__(self, indices):
            batch = super().__call__(indices)
            if training:
                fed.append(batch)
            return batch

    real_train, real_objective = benchmark.train, benchmark.make_objective

    def make_objective(*args, **kwargs):
        objective = real_objective(*args, **kwargs)
        loss = objective.loss

        def ticking(out, batch):
            clock.ticks += 1
            return loss(out, batch)

        objective.loss = ticking
        return objective

    def train(*args, **kwargs):
        training.append(True)
        try:
            return real_train(*args, **kwargs)
        finally:
            training.clear()

    monkeypatch.setattr(trainer, "EssayCollator", Recording)
    monkeypatch.setattr(benchmark, "train", train)
    monkeypatch.setattr(benchmark, "make_objective", make_objective)
    monkeypatch.setattr(benchmark, "time", clock)
    return fed, clock


def test_benchmark_two_steps_on_the_tiny_model(tmp_path, monkeypatch):
    backbone = make_tiny_backbone(tmp_path / "tiny_bert")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    write_project(tmp_path, invented_essays(96, 4, seed=3), n_folds=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(backbone, [0, 1])))
    out = tmp_path / "bench.json"
    fed, _ = _record_training_batches(monkeypatch)
    argv = ["--budget", "cpu", "--arm", "groupdro", "--scheme", "prompt_holdout", "--fold", "0", "--max-steps", "2",
            "--out", str(out)]
    benchmark.main(argv)
    result = json.loads(out.read_text())
    assert result["command"] == shlex.join(["python", "-m", "tools.benchmark", *argv])
    config, measured = result["config"], result["measured"]
    accumulation = config["accumulation_steps"]
    assert accumulation == config["effective_batch"] // config["batch_size"] == 2
    # one warm-up step (the default) is fed but not measured
    assert len(fed) == (1 + 2) * accumulation
    timed = fed[accumulation:]
    lengths = torch.cat([b["attention_mask"].sum(1) for b in timed])
    assert measured["optimizer_steps"] == 2 and measured["micro_batches"] == len(timed) == 4
    assert measured["essays"] == sum(len(b["index"]) for b in timed) == 2 * config["effective_batch"]
    assert measured["windows"] == len(lengths)
    assert measured["real_tokens"] == int(lengths.sum())
    assert measured["padded_tokens"] == sum(b["attention_mask"].numel() for b in timed) > measured["real_tokens"]
    # every rate is the counted total over the seconds recorded in the same file
    seconds = result["measured_wall_s"]
    assert measured["seconds"] == seconds
    # the timer runs from the first timed micro-batch to the end of training, warm-up excluded
    assert len(timed) <= seconds < len(timed) + 0.01
    for rate, total in (("training_tokens_per_s", measured["real_tokens"]),
                        ("padded_tokens_per_s", measured["padded_tokens"]), ("essays_per_s", measured["essays"]),
                        ("optimizer_steps_per_s", measured["micro_batches"] / accumulation)):
        assert result[rate] == pytest.approx(total / seconds), rate
    assert measured["real_tokens_per_s"] == pytest.approx(result["training_tokens_per_s"])
    # FLOPs: 6·N·T + 12·L·h·Σs² on the real tokens of the timed batches, N counted by hand above
    parameters, utilisation = result["parameters"], result["utilisation"]
    assert (parameters["matmul_params_N"], parameters["layers"], parameters["hidden"]) == (TINY_N, 2, 32)
    assert parameters["trainable_matmul_params"] == TINY_LORA and parameters["backward_layers"] == 2
    assert parameters["trainable"] == TINY_LORA + TINY_HEAD < parameters["total"]
    model_flops = 6 * TINY_N * int(lengths.sum()) + 12 * 2 * 32 * int((lengths ** 2).sum())
    assert utilisation["model_flops"] == model_flops
    assert utilisation["model_flops_per_s"] == pytest.approx(model_flops / seconds)
    padded_sq = sum(b["attention_mask"].shape[0] * b["attention_mask"].shape[1] ** 2 for b in timed)
    executed = (2 * TINY_N + 2 * TINY_N + 2 * TINY_LORA) * measured["padded_tokens"] + 24 * 32 * padded_sq
    assert utilisation["executed_flops_padded"] == executed  # forward, activation grads in 2 layers, LoRA grads
    assert utilisation["mfu"] is None and utilisation["peak_flops_per_s"] is None  # no CPU peak, none declared
    inference = result["inference"]
    assert inference["measured"] and inference["real_tokens_per_s"] == pytest.approx(
        inference["real_tokens"] / inference["seconds"])
    assert result["memory"]["peak_bytes"] > 0 and result["precision"]["used"] == "fp32"
    # the extrapolated gate adds up its own folds: arms × folds runs
    extrapolated = result["extrapolated"]
    gate, per_fold = extrapolated["gate"], extrapolated["per_fold_total_s"]
    assert gate["runs"] == len(per_fold) == len(gate["arms"]) * len(gate["folds"]) == 3 * 2
    assert gate["total_s"] == pytest.approx(sum(per_fold.values()))
    assert gate["total_s"] == pytest.approx(gate["train_s"] + gate["inference_s"] + gate["overhead_s"])
    assert gate["total_h"] == pytest.approx(gate["total_s"] / 3600) and math.isfinite(gate["total_s"])
    this_fold = extrapolated["this_fold"]
    assert this_fold["total_s"] == pytest.approx(per_fold["groupdro/prompt_holdout/fold_0"])
    assert this_fold["optimizer_steps"] == config["epochs"] * math.ceil(
        math.ceil(this_fold["train_essays"] / config["batch_size"]) / accumulation)


def test_benchmark_declared_peak_and_full_finetune(tmp_path, monkeypatch):
    backbone = make_tiny_backbone(tmp_path / "tiny_bert")
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, invented_essays(96, 4, seed=3), n_folds=2)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(tiny_params(backbone, [0, 1])))
    out = tmp_path / "bench.json"
    benchmark.main(["--budget", "cpu", "--max-steps", "1", "--warmup-steps", "0", "--eval-batches", "0",
                    "--full-finetune", "--peak-flops", "1e12", "--params", str(params), "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["full_finetune"] and result["parameters"]["trainable"] == result["parameters"]["total"]
    utilisation = result["utilisation"]
    assert utilisation["peak_flops_per_s"] == 1e12 and result["inference"]["assumed"]
    assert utilisation["mfu"] == pytest.approx(utilisation["model_flops_per_s"] / 1e12)
    assert utilisation["hfu_executed_padded"] == pytest.approx(utilisation["executed_flops_per_s_padded"] / 1e12)
