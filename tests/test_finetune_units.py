"""Unit tests of the fine-tuning building blocks: gradient reversal, Ganin schedule, GroupDRO weights,
window coverage, precision policy, subsets, batching and the params section."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stages.lib.core.errors import InputError
from stages.lib.data.subsets import capped_sample, stratified_holdout
from stages.lib.training.essay_model import EssayOutput
from stages.lib.training.finite import NonFiniteError, check_finite
from stages.lib.training.objectives import GroupDRO, ganin_lambda, grad_reverse
from stages.lib.training.precision import resolve_device, select_precision
from stages.lib.windows.chunking import window_spans
from stages.lib.windows.essay_batches import LengthBucketedBatches, balanced_weights
from tests.tiny_backbone import make_tiny_backbone
from tests.typed_params import edited


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_flips_and_scales(lam):
    x = torch.randn(5, 3, requires_grad=True)
    weights = torch.randn(5, 3)
    (x * weights).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    y = grad_reverse(x, lam)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    assert torch.allclose(x.grad, -lam * plain)


def test_ganin_schedule_rises_from_zero_to_lambda_max():
    values = [ganin_lambda(p, 0.8) for p in np.linspace(0, 1, 11)]
    assert values[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(0.8 * (2 / (1 + np.exp(-10)) - 1))


def test_groupdro_weights_move_toward_worst_group():
    objective = GroupDRO(["easy", "hard", "absent"], eta=0.5)
    groups = torch.tensor([0, 0, 1, 1])
    targets = torch.zeros(4, 7)
    pred = torch.zeros(4, 7)
    pred[2:] = 2.0  # group "hard" has loss 4, group "easy" loss 0
    pred.requires_grad_(True)
    for _ in range(3):
        loss = objective.loss(EssayOutput(pred, torch.zeros(4, 2)), {"targets": targets, "groups": groups})
    q = objective.q.numpy()
    assert q.sum() == pytest.approx(1.0)
    assert q[1] > 1 / 3 > q[0] and q[0] == pytest.approx(q[2])  # zero-loss group keeps pace with an absent one
    loss.backward()
    assert pred.grad[2:].abs().sum() > 0 and pred.grad[:2].abs().sum() == 0
    assert objective.diagnostics(EssayOutput(pred, pred), np.array([]))["top_weighted"][0] == "hard"


def test_window_spans_cover_every_token_with_exact_overlap():
    for window in (1, 2, 3, 5, 8, 16, 126, 510):
        for stride in sorted({0, 1, window // 4, window // 2, window - 1} & set(range(window))):
            for n in [*range(0, 3 * window + 4), 1000]:
                spans = window_spans(n, window, stride).spans
                covered = np.zeros(n, dtype=int)
                for start, end in spans:
                    assert 0 <= start < end <= n or n == 0
                    assert end - start <= window
                    covered[start:end] += 1
                assert (covered >= 1).all(), (n, window, stride)
                assert spans[-1][1] == n
                overlaps = [a_end - b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans)]
                if overlaps:
                    assert all(o == stride for o in overlaps[:-1]), (n, window, stride, spans)
                    assert stride <= overlaps[-1] < window


def test_precision_policy_per_device():
    assert select_precision("auto", "cpu", False) == (None, False, "fp32")
    assert select_precision("fp32", "cpu", False).name == "fp32"
    assert select_precision("auto", "cuda", True) == (torch.bfloat16, False, "bf16")
    assert select_precision("bf16", "cuda", True).accelerate_mixed_precision == "bf16"
    assert select_precision("auto", "cuda", False).name == "fp32"  # fp16 only when asked for
    assert select_precision("fp16", "cuda", False) == (torch.float16, True, "fp16")
    assert select_precision("fp32", "cuda", True).accelerate_mixed_precision == "no"
    for requested, device, bf16 in (("bf16", "cpu", True), ("fp16", "cpu", False), ("bf16", "cuda", False),
                                    ("half", "cuda", True)):
        with pytest.raises(InputError):
            select_precision(requested, device, bf16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU failure")
def test_cuda_request_without_gpu_fails_instead_of_falling_back():
    with pytest.raises(InputError, match="no GPU"):
        resolve_device("cuda")
    assert resolve_device("auto") == ("cpu", False)


def test_check_finite_names_fold_step_and_value():
    check_finite("loss", torch.tensor(1.5), fold=1, step=3)
    with pytest.raises(NonFiniteError, match=r"non-finite loss at fold 2, step 9: value nan"):
        check_finite("loss", torch.tensor([1.0, float("nan")]), fold=2, step=9)
    with pytest.raises(NonFiniteError, match="inference: value inf"):
        check_finite("prediction", np.array([np.inf]), fold=0)


def test_stratified_holdout_and_cap_are_seeded_and_proportional():
    groups = np.repeat(np.arange(6), [40, 40, 20, 10, 3, 1])
    mask = stratified_holdout(groups, 0.25, seed=3)
    assert np.array_equal(mask, stratified_holdout(groups, 0.25, seed=3))
    assert 0.15 < mask.mean() < 0.35
    for g in np.unique(groups):
        assert (~mask[groups == g]).any()  # every prompt keeps training essays
    assert abs(stratified_holdout(groups, 0.5, seed=1, max_size=20).sum() - 20) <= 6
    sample = capped_sample(np.arange(100), 10, seed=1)
    assert len(sample) == 10 and np.array_equal(sample, capped_sample(np.arange(100), 10, seed=1))
    assert np.array_equal(capped_sample(np.arange(5), None, seed=1), np.arange(5))


def test_length_bucketed_batches_cover_each_essay_once_and_balance_groups():
    lengths = np.random.default_rng(0).integers(10, 500, size=37)
    sampler = LengthBucketedBatches(lengths, batch_size=4, seed=1, bucket_batches=2)
    first, second = list(sampler), list(sampler)
    assert sorted(i for b in first for i in b) == list(range(37))
    assert first != second  # reshuffled each pass
    assert all(len(b) <= 4 for b in first) and len(first) == len(sampler)
    within = [np.ptp(lengths[b]) for b in first]
    assert np.mean(within) < np.ptp(lengths) / 2  # buckets group similar lengths
    groups = np.array([0] * 90 + [1] * 10)
    weighted = LengthBucketedBatches(np.ones(100), 10, seed=2, weights=balanced_weights(groups))
    drawn = np.concatenate([np.concatenate(list(weighted)) for _ in range(20)])
    assert 0.4 < np.mean(groups[drawn] == 1) < 0.6
    inference = LengthBucketedBatches(lengths, 8, seed=0, shuffle=False)
    batches = list(inference)
    order = [i for b in batches for i in b]
    assert batches == list(inference)  # the same batches on every pass
    assert sorted(order) == list(range(37)) and (np.diff(lengths[order]) <= 0).all()  # longest first, each once


def _select(name: str):
    """The change selecting budget profile `name` (with its seeds, which `seeds.finetune` must include)."""
    def change(raw):
        raw["finetune"]["budget"] = name
        raw["seeds"]["finetune"] = list(raw["finetune"]["budgets"][name]["seeds"])
    return change


def test_every_budget_profile_parses_to_the_values_it_gives(params):
    written = yaml.safe_load(Path(params.source).read_text(encoding="utf-8"))  # the file as it spells them
    assert sorted(params.finetune.budgets) == sorted(written["finetune"]["budgets"])
    for name, profile in written["finetune"]["budgets"].items():
        cfg = edited(params, _select(name)).finetune
        parsed = cfg.selected.record()
        assert parsed.pop("name") == name and parsed == profile, name
        assert cfg.selected.name == name and cfg.selected is cfg.budgets[name]
        assert cfg.selected.accumulation_steps * cfg.selected.batch_size == profile["effective_batch"]
        assert [cfg.arms, cfg.schemes, cfg.folds] == [written["finetune"][k] for k in ("arms", "schemes", "folds")]


def test_a_budget_built_here_sets_accumulation_and_unknown_keys_fail(params):
    def change(raw):
        raw["finetune"]["budgets"][raw["finetune"]["budget"]].update(batch_size=3, effective_batch=12, lr=0.125,
                                                                     backbone="somewhere/else")

    budget = edited(params, change).finetune.selected
    assert (budget.accumulation_steps, budget.lr, budget.backbone) == (4, 0.125, "somewhere/else")

    def misspelt(raw):
        change(raw)
        raw["finetune"]["budgets"][raw["finetune"]["budget"]]["learning_rate"] = 1.0

    with pytest.raises(InputError, match=rf"finetune\.budgets\.{params.finetune.budget}\.learning_rate: unknown key"):
        edited(params, misspelt)


def test_unscored_targets_are_masked_out_of_the_loss_and_the_head_init(tmp_path):
    from stages.lib.encoders.backbone import load_encoder
    from stages.lib.training.essay_model import fit_head
    from stages.lib.training.objectives import essay_losses
    from stages.lib.windows.essay_batches import EssayCollator, encode_essays

    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    # essay 0: (1² + 2²) / 2 over its two scored targets; essay 1: 1 / 3 over all three
    assert essay_losses(pred, targets, mask).tolist() == pytest.approx([2.5, 1 / 3])
    assert essay_losses(pred, targets).tolist() == pytest.approx([(1 + 4 + 4) / 3, 1 / 3])

    tokenizer, _ = load_encoder(str(make_tiny_backbone(tmp_path / "tiny")))
    y = np.array([[1.0, np.nan], [2.0, 3.0]])
    data = encode_essays(["a short essay", "another short essay here"], tokenizer, 16, 4, y)
    assert data.target_mask.tolist() == [[1.0, 0.0], [1.0, 1.0]] and np.isfinite(data.targets).all()
    batch = EssayCollator(data, 0)([0, 1])
    assert batch["target_mask"].tolist() == [[1.0, 0.0], [1.0, 1.0]]

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 2)

    rng = np.random.default_rng(0)
    reps = rng.normal(size=(40, 3))
    truth = np.column_stack([reps @ [1.0, 0, 0], reps @ [0, 2.0, 0]])
    scored = np.ones_like(truth)
    scored[:20, 1] = 0  # the second target unscored on half the essays
    model = Head()
    with torch.no_grad():
        penalties = fit_head(model, reps, np.where(scored > 0, truth, 0.0), scored)
    assert len(penalties) == 2
    assert model.head.weight[1].tolist() == pytest.approx([0, 2.0, 0], abs=0.05)  # not pulled to 0 by the zeros
