"""The benchmark command: FLOP accounting against hand-computed cases, the peak table, and a 2-step run on
the tiny random BERT that writes finite positive throughput figures."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
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


def test_benchmark_two_steps_on_the_tiny_model(tmp_path, monkeypatch):
    backbone = make_tiny_backbone(tmp_path / "tiny_bert")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    write_project(tmp_path, invented_essays(96, 4, seed=3), n_folds=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(backbone, [0, 1])))
    out = tmp_path / "bench.json"
    benchmark.main(["--budget", "cpu", "--arm", "groupdro", "--scheme", "prompt_holdout", "--fold", "0",
                    "--max-steps", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    for key in ("command", "commit", "device", "device_name", "precision", "backbone", "parameters",
                "flops_formula", "measured", "utilisation", "memory", "inference", "extrapolated"):
        assert key in result, key
    for key in ("training_tokens_per_s", "padded_tokens_per_s", "essays_per_s", "optimizer_steps_per_s",
                "measured_wall_s"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    measured = result["measured"]
    assert measured["optimizer_steps"] == 2 and measured["micro_batches"] == 4  # accumulation 2
    assert measured["essays"] == 16 and 0 < measured["real_tokens"] <= measured["padded_tokens"]
    assert result["precision"]["used"] == "fp32" and result["device"] == "cpu"
    assert result["utilisation"]["mfu"] is None and "CPU" in result["utilisation"]["peak_source"]
    assert result["utilisation"]["model_flops_per_s"] > 0
    assert "12 * L * h" in result["flops_formula"]["training"]
    assert 0 < result["parameters"]["trainable"] < result["parameters"]["total"]
    assert result["memory"]["peak_bytes"] > 0 and result["inference"]["measured"]
    gate = result["extrapolated"]["gate"]
    assert "EXTRAPOLATED" in result["extrapolated"]["label"]
    assert gate["runs"] == 3 * 2 and gate["total_s"] > 0 and math.isfinite(gate["total_s"])
    assert result["command"].startswith("python -m tools.benchmark --budget cpu")


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
    assert 0 < result["utilisation"]["mfu"] < 1 and result["inference"]["assumed"]
