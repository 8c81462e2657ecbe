"""The speed work changes how fast a run goes, never what it computes: SDPA attention for MPNet matches the
eager attention (outputs and gradients, padding included), GroupDRO without boolean indexing matches the
indexed formulation, deferred finite checks name the first bad step, the fused optimizer is CUDA-only,
benchmark overrides reach the budget, and the fold files live in one layout."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_backbone import TARGETS, make_tiny_backbone, tiny_params

from stages.lib.core.config import select_budget
from stages.lib.core.errors import InputError
from stages.lib.core.params import Lora
from stages.lib.data.fold_files import fold_file, read_fold, scheme_folds, write_fold
from stages.lib.encoders.attention import SdpaMPNetEncoder, SdpaMPNetSelfAttention, use_attention
from stages.lib.encoders.backbone import load_encoder
from stages.lib.training.essay_model import EssayOutput, build_essay_model
from stages.lib.training.finite import DeferredFiniteChecks, NonFiniteError
from stages.lib.training.objectives import GroupDRO, make_objective
from stages.lib.training.trainer import make_optimizer
from tests.typed_params import typed


def _tiny_mpnet():
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=80, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
    model = MPNetModel(config)
    with torch.no_grad():  # a visible relative position bias, so the test exercises it
        model.encoder.relative_attention_bias.weight.normal_(0, 1.0)
    return model


def _forward_backward(model, ids, mask):
    model.zero_grad(set_to_none=True)
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    probe = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(1))  # not |LayerNorm|², a constant
    (hidden * probe * mask[..., None]).sum().backward()
    return hidden.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_sdpa_mpnet_matches_eager_outputs_and_gradients():
    eager = _tiny_mpnet().train()
    fast = copy.deepcopy(eager)
    assert use_attention(fast, "sdpa") == "sdpa:mpnet-bias"
    assert sum(isinstance(m, SdpaMPNetSelfAttention) for m in fast.modules()) == 2
    assert isinstance(fast.encoder, SdpaMPNetEncoder)  # bias + mask built once, shared by the layers
    ids = torch.randint(5, 50, (3, 24))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 4:] = 0
    h_eager, g_eager = _forward_backward(eager, ids, mask)
    h_fast, g_fast = _forward_backward(fast, ids, mask)
    torch.testing.assert_close(h_fast, h_eager, rtol=1e-5, atol=1e-5)
    assert g_fast.keys() == g_eager.keys() and "encoder.relative_attention_bias.weight" in g_fast
    for name in g_eager:
        torch.testing.assert_close(g_fast[name], g_eager[name], rtol=1e-4, atol=1e-5, msg=name)
    assert g_fast["encoder.relative_attention_bias.weight"].abs().sum() > 0


def test_sdpa_mpnet_under_bf16_autocast_and_with_hidden_states():
    eager = _tiny_mpnet().eval()
    fast = copy.deepcopy(eager)
    use_attention(fast, "sdpa")
    ids = torch.randint(5, 50, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        plain, swapped = (m(input_ids=ids, attention_mask=mask, output_hidden_states=True) for m in (eager, fast))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_eager, low_fast = (m(input_ids=ids, attention_mask=mask).last_hidden_state for m in (eager, fast))
    assert len(swapped.hidden_states) == len(plain.hidden_states) == 3
    for a, b in zip(swapped.hidden_states, plain.hidden_states, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(low_fast).all()  # the padding mask must not turn into -inf/NaN in bf16
    torch.testing.assert_close(low_fast.float(), low_eager.float(), rtol=0.05, atol=0.05)


def test_sdpa_mpnet_keeps_lora_adapters_trainable():
    lora = Lora(enabled=True, r=4, alpha=8.0, dropout=0.0, target_modules=["q", "v"], layers=None)
    model = build_essay_model(_tiny_mpnet(), len(TARGETS), lora, 0.0, False, attention="sdpa")
    assert model.attention == "sdpa:mpnet-bias"
    ids = torch.randint(5, 50, (2, 12))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), owner=torch.tensor([0, 1]), n_essays=2)
    out.pred.sum().backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads[1::2])  # lora_B


def test_bert_runs_sdpa_natively_and_eager_on_request(tmp_path):
    _, encoder = load_encoder(str(make_tiny_backbone(tmp_path / "bert")))
    assert use_attention(encoder, "sdpa") == "sdpa"
    assert use_attention(encoder, "eager") == "eager" and encoder.config._attn_implementation == "eager"
    with pytest.raises(InputError, match="expected sdpa or eager"):
        use_attention(encoder, "flash")


def _indexed_groupdro_loss(q: torch.Tensor, eta: float, pred, targets, groups):
    """The textbook formulation with boolean indexing (one host synchronisation per call)."""
    losses = ((pred - targets) ** 2).mean(1)
    n = q.numel()
    sums = torch.zeros(n).index_add(0, groups, losses)
    counts = torch.zeros(n).index_add(0, groups, torch.ones_like(losses))
    present = counts > 0
    group_loss = sums[present] / counts[present]
    q = q.clone()
    q[present] = q[present] * torch.exp(eta * group_loss.detach().double())
    q = q / q.sum()
    weights = q[present].float()
    return (weights * group_loss).sum() / weights.sum(), q


def test_groupdro_without_boolean_indexing_matches_the_indexed_formulation():
    rng = torch.Generator().manual_seed(3)
    objective = GroupDRO([f"p{i}" for i in range(6)], eta=0.3)
    q = objective.q.clone()
    for _ in range(4):
        groups = torch.randint(0, 4, (10,), generator=rng)  # prompts 4 and 5 never appear
        pred, targets = torch.randn(10, 7, generator=rng), torch.randn(10, 7, generator=rng)
        expected, q = _indexed_groupdro_loss(q, 0.3, pred, targets, groups)
        got = objective.loss(EssayOutput(pred, torch.zeros(10, 2)), {"targets": targets, "groups": groups})
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(objective.q, q)


def test_deferred_checks_wait_then_name_the_first_bad_step():
    checks = DeferredFiniteChecks(every=3, fold=2)
    checks.add("training loss", torch.tensor(0.5), 0)
    checks.micro_batch_done()
    checks.add("training loss", torch.tensor(float("inf")), 1)
    checks.add("gradient norm", torch.tensor(float("nan")), 1)
    checks.micro_batch_done()  # not read yet
    checks.add("training loss", torch.tensor(float("nan")), 2)
    with pytest.raises(NonFiniteError, match=r"non-finite training loss at fold 2, step 1: value inf"):
        checks.micro_batch_done()
    clean = DeferredFiniteChecks(every=1, fold=0)
    clean.add("training loss", torch.tensor(1.0), 0)
    clean.micro_batch_done()
    clean.flush()
    assert clean.pending == []


def test_fused_adamw_only_on_cuda(tmp_path):
    cfg = typed(tiny_params(make_tiny_backbone(tmp_path / "bert"), [0])).finetune
    budget = cfg.selected
    fused_budget = budget.model_copy(update={"speed": budget.speed.model_copy(update={"fused_optimizer": True})})
    _, encoder = load_encoder(str(tmp_path / "bert"))
    model = build_essay_model(encoder, len(TARGETS), budget.lora, 0.0, False)
    objective = make_objective("lora", model.hidden_size, ["a"], {})
    assert not make_optimizer(model, objective, fused_budget, "cpu").defaults["fused"]
    assert not make_optimizer(model, objective, budget, "cuda").defaults["fused"]
    assert make_optimizer(model, objective, fused_budget, "cuda").defaults["fused"]


def test_budget_overrides_reach_the_budget_and_unknown_keys_fail(tmp_path):
    params = typed(tiny_params(tmp_path / "unused", [0]))
    changed = select_budget(params, "gpu", ["batch_size=16", "effective_batch=16", "speed.attention=eager",
                                             "lora.enabled=false"])
    block = changed.finetune.budgets["gpu"]
    assert changed.finetune.budget == "gpu" and changed.finetune.selected is block and block.batch_size == 16
    assert block.speed.attention == "eager" and block.lora.enabled is False
    assert changed.source == ("test params with batch_size=16 effective_batch=16 speed.attention=eager "
                              "lora.enabled=false")
    assert params.finetune.budgets["gpu"].batch_size == 4  # the input is not modified
    with pytest.raises(InputError, match=r"speed\.atention"):
        select_budget(params, "gpu", ["speed.atention=eager"])
    with pytest.raises(InputError, match="KEY=VALUE"):
        select_budget(params, "gpu", ["batch_size"])
    narrowed = select_budget(params, "cpu", arms=["lora"], schemes=["stratified_text"])
    assert narrowed.finetune.arms == ["lora"] and narrowed.finetune.schemes == ["stratified_text"]


def test_fold_files_layout_round_trip(tmp_path):
    frame = pd.DataFrame({"essay_id": ["a", "b"], "score": [1.0, 2.0]})
    for fold in (10, 2):
        write_fold(tmp_path, "prompt_holdout", fold, frame, frame.iloc[:1])
    assert fold_file("prompt_holdout", 2, "val", tmp_path) == tmp_path / "prompt_holdout/fold_2/val.parquet"
    assert scheme_folds("prompt_holdout", tmp_path) == [2, 10]
    train, val = read_fold("prompt_holdout", 10, tmp_path)
    assert len(train) == 2 and len(val) == 1 and np.array_equal(train["score"], [1.0, 2.0])
    with pytest.raises(InputError, match="stratified_text: no fold directories"):
        scheme_folds("stratified_text", tmp_path)
    (tmp_path / "prompt_holdout/fold_2/train.parquet").unlink()
    with pytest.raises(InputError, match=r"fold_2/train\.parquet: fold file not found"):
        read_fold("prompt_holdout", 2, tmp_path)
