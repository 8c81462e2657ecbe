"""A tiny randomly initialised BERT (built here, no downloads) through the real training code: every
objective trains and predicts finite values, CPU runs are bit-reproducible, the finite guard stops a
NaN run, preflight fails closed in one line, and the stages run end to end on invented essays."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tiny_backbone import TARGETS, invented_essays, make_tiny_backbone, tiny_params, write_project

from stages import collect, finetune, preflight
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.params import Speed
from stages.lib.data.schema import DatasetSchema
from stages.lib.encoders.backbone import load_encoder
from stages.lib.scoring.predictions import read_predictions
from stages.lib.scoring.training_record import parse_record
from stages.lib.training.essay_model import (
    CheckpointedLayer,
    EssayOutput,
    build_essay_model,
    enable_gradient_checkpointing,
)
from stages.lib.training.finite import NonFiniteError
from stages.lib.training.objectives import essay_losses, make_objective
from stages.lib.training.precision import FP32
from stages.lib.training.speed_ladder import speed_ladder
from stages.lib.training.trainer import make_accelerator, predict, run_model, seed_everything, train
from stages.lib.windows.essay_batches import EssayCollator, EssayWindows, encode_essays
from tests.conftest import REPO
from tests.typed_params import typed


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))


pytestmark = pytest.mark.usefixtures("restore_torch_globals")


class Fit(NamedTuple):
    log: dict | None
    out: EssayOutput
    head: torch.Tensor
    diagnostics: dict
    model: torch.nn.Module
    objective: torch.nn.Module
    data: EssayWindows
    targets: np.ndarray
    pad_id: int


def _fit(backbone, arm: str, targets_nan: bool = False, seed: int = 5, dropout: bool = True, trained: bool = True,
         budget_overrides: dict | None = None, **speed) -> Fit:
    """Train the tiny model for a few steps on invented essays (budget speed settings overridden by `speed`,
    other budget fields by `budget_overrides`; `trained=False` skips training)."""
    cfg = typed(tiny_params(backbone, [0])).finetune
    budget = cfg.selected.model_copy(update={"speed": cfg.selected.speed.model_copy(update=speed),
                                             **(budget_overrides or {})})
    seed_everything(seed, deterministic=True)
    tokenizer, encoder = load_encoder(str(backbone))
    essays = invented_essays(24, 3, seed=1)
    y = essays[TARGETS].to_numpy(float)
    y = (y - y.mean(0)) / y.std(0)
    if targets_nan:  # an infinite target poisons the loss (a NaN one would be masked as "not scored")
        y[0, 0] = np.inf
    groups = essays["prompt"].str[-1].map({"A": 0, "B": 1, "C": 2}).to_numpy()
    data = encode_essays(essays["text"].tolist(), tokenizer, 16, 4, y, groups)
    model = build_essay_model(encoder, len(TARGETS), budget.lora, 0.1 if dropout else 0.0, False,
                              None if dropout else 0.0, compile_encoder=budget.speed.compile)
    objective = make_objective(arm, model.hidden_size, ["A", "B", "C"], cfg.objectives.of(arm))
    accelerator = make_accelerator(FP32, "cpu", budget.accumulation_steps)
    pad_id = tokenizer.pad_token_id
    log = train(model, objective, data, budget, accelerator, pad_id=pad_id, seed=seed, fold=3) if trained else None
    out = predict(model, data, accelerator, pad_id=pad_id, batch_size=5, fold=3)
    return Fit(log, out, model.head.weight.detach().clone(), objective.diagnostics(out, groups), model, objective,
               data, y, pad_id)


def _mse(fit: Fit) -> float:
    return float(((fit.out.pred.numpy() - fit.targets) ** 2).mean())


def _grads(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params, strict=True)])


def _check_gradient_reversal(fit: Fit) -> None:
    """The adversary's loss reaches the encoder negated and scaled by λ, and its own classifier unreversed."""
    model, objective = fit.model, fit.objective
    model.eval()  # no dropout: one forward serves every loss below
    batch = EssayCollator(fit.data, fit.pad_id)(list(range(8)))
    out = run_model(model, batch)
    encoder = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("head.")]
    classifier = list(objective.classifier.parameters())
    regression = essay_losses(out.pred, batch["targets"], batch.get("target_mask")).mean()
    adversary = torch.nn.functional.cross_entropy(objective.classifier(out.rep.float()), batch["groups"])
    total = objective.loss(out, batch)
    torch.testing.assert_close(total, regression + adversary)
    reaching_encoder = _grads(adversary, encoder)
    assert objective.lam > 0.9 and reaching_encoder.norm() > 1e-4
    torch.testing.assert_close(_grads(total, encoder), _grads(regression, encoder) - objective.lam * reaching_encoder)
    torch.testing.assert_close(_grads(total, classifier), _grads(adversary, classifier))


def _check_groupdro_update(objective) -> None:
    """q_g ← q_g·exp(η·loss_g) renormalised, so the worst prompt gains weight; the loss is the q-weighted mean."""
    q0 = objective.q.clone()
    assert not torch.allclose(q0, torch.full_like(q0, 1 / 3))  # training has moved the weights
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    targets = torch.zeros(6, 2)
    pred = targets + torch.tensor([0.2, 0.2, 1.0, 1.0, 0.5, 0.5])[:, None]
    group_loss = torch.tensor([0.04, 1.0, 0.25], dtype=torch.float64)  # prompt B is the worst
    loss = objective.loss(EssayOutput(pred, torch.zeros(6, 4)), {"targets": targets, "groups": groups})
    q1 = q0 * torch.exp(objective.eta * group_loss)
    q1 /= q1.sum()
    torch.testing.assert_close(objective.q, q1)
    assert int(torch.argmax(objective.q / q0)) == 1 and objective.q[1] > q0[1]
    torch.testing.assert_close(loss, (q1 * group_loss).sum().float())


@pytest.mark.parametrize("arm", ["lora", "adversarial", "groupdro"])
def test_each_objective_trains_and_predicts_finite(backbone, arm):
    fit = _fit(backbone, arm)
    log, out, diagnostics = fit.log, fit.out, fit.diagnostics
    assert log["micro_batches"] == 12 and log["optimizer_steps"] == 6  # 24 essays / 4 × 2 epochs, accumulation 2
    assert np.isfinite(log["step_loss"]).all()
    assert torch.isfinite(out.pred).all() and out.pred.shape == (24, len(TARGETS))
    assert log["activation_dtype"] == "float32"
    if arm == "lora":  # ERM: the mean regression loss, which training lowers
        batch = EssayCollator(fit.data, fit.pad_id)(list(range(8)))
        fit.model.eval()
        with torch.no_grad():
            pred = run_model(fit.model, batch).pred
            loss = fit.objective.loss(EssayOutput(pred, None), batch)
        torch.testing.assert_close(loss, ((pred - batch["targets"].float()) ** 2).mean())
        longer = {"lr": 1e-2, "head_lr": 1e-2, "epochs": 4}
        after, before = _mse(_fit(backbone, arm, budget_overrides=longer)), _mse(_fit(backbone, arm, trained=False))
        assert after < 0.95 * before, (after, before)
    if arm == "adversarial":
        assert 0.0 <= diagnostics["adversary_accuracy"] <= 1.0 and diagnostics["lambda_final"] > 0.9
        _check_gradient_reversal(fit)
    if arm == "groupdro":
        weights = diagnostics["group_weights"]
        assert sum(weights.values()) == pytest.approx(1.0) and list(weights.values()) == fit.objective.q.tolist()
        _check_groupdro_update(fit.objective)


def test_cpu_training_is_bit_reproducible(backbone):
    first, second = _fit(backbone, "adversarial"), _fit(backbone, "adversarial")
    assert first[0]["step_loss"] == second[0]["step_loss"]
    assert torch.equal(first[1].pred, second[1].pred)
    assert torch.equal(first[2], second[2])


def test_finite_guard_stops_a_nan_run(backbone):
    with pytest.raises(NonFiniteError, match=r"non-finite training loss at fold 3, step \d+: value inf"):
        _fit(backbone, "lora", targets_nan=True)


def test_deferred_finite_checks_and_loader_workers_change_nothing_learned(backbone):
    reference = _fit(backbone, "groupdro")
    fast = _fit(backbone, "groupdro", finite_check_every=5, loader_workers=1)
    assert fast[0]["step_loss"] == reference[0]["step_loss"]
    assert torch.equal(fast[1].pred, reference[1].pred)


def test_deferred_finite_guard_still_names_the_first_bad_step(backbone):
    with pytest.raises(NonFiniteError) as immediate:
        _fit(backbone, "lora", targets_nan=True)
    with pytest.raises(NonFiniteError) as deferred:
        _fit(backbone, "lora", targets_nan=True, finite_check_every=50)  # read only at the end of training
    assert str(deferred.value) == str(immediate.value)


def test_compiled_encoder_trains_like_the_eager_one(backbone):
    # without dropout: compiled kernels draw their dropout masks from another random stream
    eager = _fit(backbone, "adversarial", dropout=False)
    compiled = _fit(backbone, "adversarial", dropout=False, compile=True)
    np.testing.assert_allclose(compiled[0]["step_loss"], eager[0]["step_loss"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled[1].pred, eager[1].pred, rtol=1e-3, atol=1e-4)


@pytest.fixture()
def project(tmp_path, monkeypatch, backbone):
    """An invented two-fold project in a temporary working directory, params pointing at the tiny backbone."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    write_project(tmp_path, invented_essays(48, 4, seed=2), n_folds=2)
    params = tiny_params(backbone, [0, 1])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path, params


def _one_line_error(capsys, main) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_stage(main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_preflight_missing_backbone_is_one_line(project, capsys):
    root, params = project
    params["finetune"]["budgets"]["cpu"]["backbone"] = "package:no_such_model_package"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert "no_such_model_package" in _one_line_error(capsys, preflight.main)


def test_preflight_missing_fold_is_one_line(project, capsys):
    root, _ = project
    (root / "data/folds/prompt_holdout/fold_1/val.parquet").unlink()
    assert "fold_1/val.parquet not found" in _one_line_error(capsys, preflight.main)


def test_preflight_cuda_budget_without_gpu_is_one_line(project, capsys):
    if torch.cuda.is_available():
        pytest.skip("checks the no-GPU failure")
    root, params = project
    params["finetune"]["budget"] = "gpu"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert "no GPU" in _one_line_error(capsys, preflight.main)


def test_preflight_nonfinite_canary_fails(project, backbone):
    _, params = project
    cfg = typed(params).finetune
    tokenizer, encoder = load_encoder(str(backbone))
    model = build_essay_model(encoder, len(TARGETS), cfg.selected.lora, 0.0, False)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="canary prediction"):
        preflight.canary(model, cfg, tokenizer, FP32, make_accelerator(FP32, "cpu", 1))


def test_speed_ladder_falls_back_one_setting_at_a_time():
    gpu_like = Speed(attention="sdpa", compile=True, fused_optimizer=True, finite_check_every=25, loader_workers=2,
                     pin_memory=True)
    rungs = speed_ladder(gpu_like)
    assert [name for name, _ in rungs] == ["configured", "eager attention", "unfused optimizer", "no loader workers",
                                          "no compile"]
    last = rungs[-1][1]
    assert (last.attention, last.fused_optimizer, last.loader_workers, last.pin_memory, last.compile) == \
        ("eager", False, 0, False, False) and last.finite_check_every == 25
    # rungs that would change nothing are left out
    plain = last.model_copy(update={"attention": "sdpa"})
    assert [name for name, _ in speed_ladder(plain)] == ["configured", "eager attention"]


def _sdpa_breaks(monkeypatch) -> None:
    """A kernel failure in PyTorch's SDPA only (what a first CUDA call can hit); eager attention still works."""
    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated SDPA kernel failure\nsecond line")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", broken)


def test_preflight_falls_back_and_every_run_uses_what_it_proved(project, monkeypatch, capsys):
    root, params = project
    _sdpa_breaks(monkeypatch)
    run_stage(preflight.main)
    assert "speed settings fell back to 'eager attention'" in capsys.readouterr().out
    speed = json.loads((root / "metrics/preflight.json").read_text())["speed"]
    assert speed["fell_back"] and speed["configured"]["attention"] == "sdpa" and speed["used"]["attention"] == "eager"
    assert [a["passed"] for a in speed["attempts"]] == [False, True]
    assert speed["attempts"][0]["error"] == "RuntimeError: simulated SDPA kernel failure"
    finetune.main(["--arm", "lora", "--scheme", "prompt_holdout", "--fold", "0"])
    log = json.loads((root / "data/runs/lora/prompt_holdout/seed_7/fold_0/train_log.json").read_text())
    assert log["speed_fell_back"] and log["hyperparameters"]["speed"]["attention"] == "eager"
    assert log["attention_used"] == "eager"
    # the params' speed settings changed since preflight: the run refuses rather than use unproven settings
    params["finetune"]["budgets"]["cpu"]["speed"]["finite_check_every"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(InputError, match="run the preflight stage again"):
        finetune.run_fold("lora", "prompt_holdout", 1, load_params())


def test_preflight_names_every_rung_when_none_works(project, monkeypatch, capsys):
    _sdpa_breaks(monkeypatch)
    def no_softmax(*_args, **_kwargs):
        raise RuntimeError("simulated softmax failure")

    monkeypatch.setattr(torch.nn.functional, "softmax", no_softmax)  # what eager attention computes with
    err = _one_line_error(capsys, preflight.main)
    assert "canary failed with every speed setting" in err
    assert "configured: RuntimeError: simulated SDPA kernel failure" in err and "eager attention: " in err


def test_one_process_runs_several_folds_as_separate_runs_would(project):
    root, _ = project
    run_stage(preflight.main)
    finetune.main(["--arm", "lora", "--scheme", "prompt_holdout", "--fold", "0", "1"])
    together = {k: (root / f"data/runs/lora/prompt_holdout/seed_7/fold_{k}/predictions.parquet").read_bytes()
                for k in (0, 1)}
    shutil.rmtree(root / "data/runs")
    finetune.main(["--arm", "lora", "--scheme", "prompt_holdout", "--fold", "1"])
    alone = (root / "data/runs/lora/prompt_holdout/seed_7/fold_1/predictions.parquet").read_bytes()
    assert alone == together[1] and together[0] != together[1]


def test_stages_run_end_to_end(project):
    root, params = project
    run_stage(preflight.main)
    report = json.loads((root / "metrics/preflight.json").read_text())
    assert report["passed"] and report["precision"]["used"] == "fp32" and report["checks"]["fold_files"] == 4
    for fold in (0, 1):
        finetune.main(["--arm", "groupdro", "--scheme", "prompt_holdout", "--fold", str(fold)])
    run_dir = root / "data/runs/groupdro/prompt_holdout/seed_7/fold_0"
    coverage = json.loads((run_dir / "truncation_coverage.json").read_text())
    assert coverage["pct_essays_exceeding_max_length"] > 0 and coverage["avg_chunks_per_essay"] > 1
    log = json.loads((run_dir / "train_log.json").read_text())
    assert log["gate_valid"] is False and log["precision"]["used"] == "fp32" and "finite" not in log
    checks, steps = log["finite_checks"], log["training"]["micro_batches"]
    assert checks["training loss"] == steps > 0 and checks["gradient norm"] == log["training"]["optimizer_steps"]
    n = log["n_essays"]  # every inference is checked: the ridge head's pass over the trained essays, held, val
    assert log["head_init"]["kind"] == "ridge" and checks["prediction"] == n["trained"] + n["holdout"] + n["val"]
    assert log["diagnostics"]["prompt_leakage"]["chance"] == pytest.approx(1 / 2)
    collect.main(["--arm", "groupdro", "--scheme", "prompt_holdout"])
    schema = DatasetSchema.from_params(typed(params))
    table = read_predictions(root / "data/predictions/groupdro_prompt_holdout/seed_7.parquet", schema)
    assert len(table) == 48 and set(table["fold"]) == {0, 1}
    record = parse_record(json.loads((root / "metrics/training/groupdro_prompt_holdout/seed_7.json").read_text()))
    assert record.complete and record.finite and record.budget == "cpu" and not record.gate_valid
    assert record.fold_ids == [0, 1] and record.folds[0].finite_checks == log["finite_checks"]
    assert record.details["truncation_coverage"]["n_essays"] == 48
    with pytest.raises(InputError, match="not selected"):
        finetune.run_fold("groupdro", "prompt_holdout", 4, typed(params))
    with pytest.raises(InputError, match="--seed 8 is not selected"):
        finetune.run_fold("groupdro", "prompt_holdout", 0, typed(params), seed=8)
    assert pd.read_parquet(run_dir / "tokens.parquet")["split"].isin(["train", "holdout", "val"]).all()


def test_transformers_checkpointing_is_used_where_the_architecture_has_it(backbone):
    _, encoder = load_encoder(str(backbone))  # BERT: Transformers' own checkpointing, whichever 5.x names it
    assert enable_gradient_checkpointing(encoder) == "transformers"
    flag = next(f for f in ("is_activation_checkpointing", "is_gradient_checkpointing") if hasattr(type(encoder), f))
    assert getattr(encoder, flag)
    assert not any(isinstance(layer, CheckpointedLayer) for layer in encoder.encoder.layer)


def test_layer_checkpointing_fallback_matches_plain_gradients(backbone, monkeypatch):
    _, plain = load_encoder(str(backbone))
    _, wrapped = load_encoder(str(backbone))

    def unsupported(**_):
        raise ValueError("no activation checkpointing")

    for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable"):  # names differ across 5.x
        if hasattr(wrapped, name):
            monkeypatch.setattr(wrapped, name, unsupported)
    assert enable_gradient_checkpointing(wrapped) == "layer_wrapper"
    assert all(isinstance(layer, CheckpointedLayer) for layer in wrapped.encoder.layer)
    calls = []
    real_checkpoint = torch.utils.checkpoint.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(1)
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting_checkpoint)
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    mask = (ids > 0).long()
    grads = []
    for model in (plain, wrapped):
        model.train()  # checkpointing acts in training mode; no dropout, so both compute identically
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model(input_ids=ids, attention_mask=mask).last_hidden_state.pow(2).sum().backward()
        grads.append(model.embeddings.word_embeddings.weight.grad)
    assert len(calls) == len(wrapped.encoder.layer)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_activation_dtype_records_the_autocast_actually_used(backbone):
    cfg = typed(tiny_params(backbone, [0])).finetune
    _, encoder = load_encoder(str(backbone))
    model = build_essay_model(encoder, len(TARGETS), cfg.selected.lora, 0.0, False)
    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
             "owner": torch.tensor([0]), "n_essays": 1}
    model(**batch)
    assert model.activation_dtype == "float32"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # only to observe the evidence; runs use fp32 on CPU
        out = model(**batch)
    assert model.activation_dtype == "bfloat16" and out.pred.dtype == torch.float32


def test_empty_essay_set_encodes_and_predicts_nothing(backbone):
    tokenizer, encoder = load_encoder(str(backbone))
    empty = encode_essays([], tokenizer, 16, 4)
    assert len(empty) == 0 and len(empty.token_counts) == 0
    lora = typed(tiny_params(backbone, [0])).finetune.selected.lora
    model = build_essay_model(encoder, len(TARGETS), lora, 0.0, False)
    out = predict(model, empty, make_accelerator(FP32, "cpu", 1), pad_id=0, batch_size=4, fold=0)
    assert out.pred.shape == (0, len(TARGETS))


def _device_scripts(root):
    """The device-machine scripts in the tiny project (stages linked, not copied)."""
    (root / "scripts").mkdir()
    for name in ("gpu_gate.sh", "gpu_benchmarks.sh", "straightforward_loop.sh"):
        shutil.copy(REPO / "scripts" / name, root / "scripts" / name)
    (root / "stages").symlink_to(REPO / "stages")


def test_gpu_gate_script_runs_every_arm_and_packs_the_outputs(project, tmp_path_factory):
    """scripts/gpu_gate.sh (the device-machine runner) on the tiny project, cpu budget, two runs at a time."""
    root, _ = project
    _device_scripts(root)
    out = tmp_path_factory.mktemp("out")
    env = {**os.environ, "BUDGET": "cpu", "JOBS": "2", "PYTHON": sys.executable, "OUT": str(out),
           "AES_PARAMS": str(root / "selected.yaml")}
    result = subprocess.run(["bash", "scripts/gpu_gate.sh"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "gate runs:" in result.stdout and "3 arms x (prompt_holdout) x 2 folds x 1 seeds (7), 2 at a time" \
        in result.stdout
    for arm in ("lora", "adversarial", "groupdro"):
        assert (root / f"data/predictions/{arm}_prompt_holdout/seed_7.parquet").is_file()
        record = parse_record(json.loads((root / f"metrics/training/{arm}_prompt_holdout/seed_7.json").read_text()))
        assert record.complete and record.finite, record.finite_problems()
    with tarfile.open(out / "gate_outputs.tgz") as tar:
        names = set(tar.getnames())
    assert "data/runs/groupdro/prompt_holdout/seed_7/fold_1/predictions.parquet" in names
    assert "metrics/preflight.json" in names and "logs/finetune_lora_prompt_holdout_7_0_1.log" in names
    # RESUME=1 (after a call that ran out of time) skips the finished runs and adds a wall-time line; a second
    # seed runs after every run of the first (seed-major order), and is collected once its folds are complete.
    env.update(RESUME="1", SEEDS="7 8", ARMS="lora")
    finished = (root / "data/runs/lora/prompt_holdout/seed_7/fold_0").stat().st_mtime_ns
    again = subprocess.run(["bash", "scripts/gpu_gate.sh"], cwd=root, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("already finished") == 2
    assert (root / "data/runs/lora/prompt_holdout/seed_7/fold_0").stat().st_mtime_ns == finished
    assert (root / "data/predictions/lora_prompt_holdout/seed_8.parquet").is_file()
    assert len((root / "logs/gate_wall.txt").read_text().splitlines()) == 2


def test_gpu_gate_straightforward_run_is_tagged_and_packs_only_its_arms(project, tmp_path_factory):
    root, params = project
    _device_scripts(root)
    shutil.rmtree(root / "data/folds")  # only data/prepared is carried: the script runs the folds stage itself
    params["folds"] = {"n_splits": 2, "min_essays_per_prompt": 2}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path_factory.mktemp("out")
    env = {**os.environ, "BUDGET": "cpu", "JOBS": "2", "PYTHON": sys.executable, "OUT": str(out),
           "SPEED": "straightforward", "SET": "effective_batch=16", "ARMS": "lora", "AES_PARAMS": str(root / "s.yaml")}
    result = subprocess.run(["bash", "scripts/gpu_gate.sh"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 arms x (prompt_holdout) x 2 folds" in result.stdout
    with tarfile.open(out / "gate_outputs_straightforward.tgz") as tar:
        names = set(tar.getnames())
        selected = yaml.safe_load(tar.extractfile("logs/params_selected.yaml"))
        overrides = tar.extractfile("logs/overrides.txt").read().decode().split()
    assert "data/predictions/lora_prompt_holdout/seed_7.parquet" in names
    assert not any("groupdro" in n or "adversarial" in n for n in names)
    budget = selected["finetune"]["budgets"]["cpu"]
    assert budget["batch_size"] == 16 and budget["effective_batch"] == 16 and budget["speed"]["attention"] == "eager"
    assert selected["finetune"]["arms"] == ["lora"] and "speed.finite_check_every=1" in overrides
    assert "logs/fold_md5.txt" in names and (root / "data/folds/prompt_holdout/fold_1/val.parquet").is_file()
    check = subprocess.run(["md5sum", "-c", "logs/fold_md5.txt"], cwd=root, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 8  # 2 schemes x 2 folds x train/val


def test_gpu_benchmarks_script_writes_every_variant(project, tmp_path_factory):
    """scripts/gpu_benchmarks.sh (the device-machine benchmarks) on the tiny project, cpu budget, one step each."""
    root, _ = project
    _device_scripts(root)
    out = tmp_path_factory.mktemp("out")
    env = {**os.environ, "BUDGET": "cpu", "STEPS": "1", "WARMUP": "0", "SET": "effective_batch=16",
           "PYTHON": sys.executable, "OUT": str(out)}
    result = subprocess.run(["bash", "scripts/gpu_benchmarks.sh"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    variants = ("straightforward", "optimised", "lora", "adversarial", "groupdro", "optimised_compiled")
    figures = {v: json.loads((root / f"metrics/benchmark_cpu_{v}.json").read_text()) for v in variants}
    assert figures["straightforward"]["full_finetune"] and figures["straightforward"]["config"]["batch_size"] == 16
    assert figures["straightforward"]["speed"]["attention_used"] == "eager"
    assert figures["optimised_compiled"]["speed"]["compile"] and not figures["lora"]["full_finetune"]
    assert figures["groupdro"]["arm"] == "groupdro"
    with tarfile.open(out / "benchmarks.tgz") as tar:
        assert {f"metrics/benchmark_cpu_{v}.json" for v in variants} <= set(tar.getnames())
