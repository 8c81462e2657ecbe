"""The verdict follows from the numbers: constructed gate records for a pass, a fail, a pass inside the
noise and CPU-budget evidence; and the decide stage's record cites dvc.lock."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from gate_synth import build_workspace, gpu_training

from stages import compare, decide
from stages.lib.core.errors import InputError
from stages.lib.gate.bootstrap import Interval
from stages.lib.gate.criteria import GateConfig, gate_record
from stages.lib.gate.decision import ACCEPT, DEFER, verdict
from stages.lib.scoring.training_record import LOSS, PREDICTION, FoldRecord, build_record, parse_record

CRITERIA = [("prompt_holdout", "worst_prompt_qwk"), ("prompt_holdout", "mean_qwk"),
            ("prompt_holdout", "low_tail_adjacent"), ("prompt_holdout", "high_tail_adjacent"),
            ("stratified_text", "mean_qwk")]
GOOD = {"worst_prompt_qwk": 0.05, "mean_qwk": 0.02, "low_tail_adjacent": 0.02, "high_tail_adjacent": 0.02}


def make_gate(params, arms: dict[str, dict], half_width: float = 0.005, seed_sd: float = 0.002,
              n_seeds: int = 3) -> dict:
    """A gate record: `arms[name]` maps (scheme, metric) or metric to a delta; a scheme absent from
    `arms[name]["schemes"]` counts as not run. Intervals are delta ± half_width; each arm's SD over its
    `n_seeds` seeds is `seed_sd` (None: unmeasured); `arms[name]` may override all three."""
    cfg = GateConfig.from_params(params)
    intervals, sizes = {}, {}
    for arm in cfg.candidates:
        spec = arms.get(arm)
        for scheme in cfg.criteria_schemes:
            if spec is None or scheme not in spec.get("schemes", ["prompt_holdout", "stratified_text"]):
                intervals[(arm, scheme)] = None
                continue
            width = spec.get("half_width", half_width)
            sd, n = spec.get("seed_sd", seed_sd), spec.get("n_seeds", n_seeds)
            pair = {}
            for metric in cfg.metrics_for(scheme):
                delta = spec.get((scheme, metric), spec.get(metric, GOOD.get(metric, 0.02)))
                pair[metric] = Interval(0.8 + delta, 0.8, delta, delta - width, delta + width, 100, sd, sd, n, 5)
            intervals[(arm, scheme)] = pair
            sizes[(arm, scheme)] = {"n_essays": 2000, "n_prompts": 40, "n_folds": 5}
    return gate_record(cfg, intervals, sizes)


def training_for(arms: dict[str, dict], seeds: tuple[int, ...] = (1, 2, 3)) -> dict:
    """What `decide` loads: per run, one training record per training seed."""
    return {f"{arm}_{scheme}": {seed: spec.get("training", gpu_training()) for seed in seeds}
            for arm, spec in arms.items() for scheme in spec.get("schemes", ["prompt_holdout", "stratified_text"])}


def test_pass_accepts(params):
    arms = {"lora": {}}
    d = verdict(make_gate(params, arms), training_for(arms))
    assert d.verdict == ACCEPT and d.label == "accept" and d.chosen == "lora" and d.gate_valid


def test_fail_defers(params):
    arms = {"lora": {"worst_prompt_qwk": 0.005}}
    d = verdict(make_gate(params, arms), training_for(arms))
    assert d.verdict == DEFER and d.chosen is None
    assert any("worst_prompt_qwk fails" in r for r in d.reasons)


def test_mean_qwk_loss_beyond_margin_defers(params):
    arms = {"lora": {("stratified_text", "mean_qwk"): -0.006}}
    d = verdict(make_gate(params, arms), training_for(arms))
    assert d.verdict == DEFER
    assert d.arms[0].failed == ("stratified_text.mean_qwk",)


def test_pass_inside_the_noise_is_a_fragile_accept(params):
    arms = {"lora": {"worst_prompt_qwk": 0.02, "half_width": 0.03}}
    d = verdict(make_gate(params, arms), training_for(arms))
    assert d.verdict == ACCEPT and d.fragile and d.label == "accept (fragile)"
    assert "prompt_holdout.worst_prompt_qwk" in d.arms[0].inside_noise
    assert any("passes inside the noise" in r for r in d.reasons)


@pytest.mark.parametrize("spec, why", [
    ({"worst_prompt_qwk": 0.012, "seed_sd": 0.004}, "within the training-noise SD"),  # margin 0.002 < 0.0057
    ({"seed_sd": None, "n_seeds": 1}, "training noise unmeasured: 1 seed(s)"),
])
def test_a_pass_inside_the_training_noise_is_fragile(params, spec, why):
    """Intervals clear of the threshold, but the margin is smaller than the seed-to-seed noise of the delta,
    or that noise is unmeasured (one seed): accept (fragile) at best, and the reason says which."""
    arms = {"lora": spec}
    d = verdict(make_gate(params, arms, half_width=0.0005), training_for(arms))
    assert d.label == "accept (fragile)"
    assert any(why in r for r in d.reasons), d.reasons


def test_a_pass_far_outside_the_training_noise_is_clean(params):
    arms = {"lora": {"worst_prompt_qwk": 0.05, "seed_sd": 0.004}}
    gate = make_gate(params, arms, half_width=0.0005)
    assert gate["lora.prompt_holdout.worst_prompt_qwk.noise_sd"] == pytest.approx(0.004 * 2 ** 0.5)
    d = verdict(gate, training_for(arms))
    assert d.label == "accept" and not d.arms[0].inside_noise


def test_one_missing_seed_record_is_not_gate_valid(params):
    arms = {"lora": {}}
    training = training_for(arms)
    training["lora_prompt_holdout"][2] = None
    d = verdict(make_gate(params, arms), training)
    assert d.verdict == DEFER and any("seed 2: no training metadata" in v for v in d.arms[0].validity)


def test_robust_candidate_preferred_over_fragile_one(params):
    arms = {"lora": {"half_width": 0.05}, "adversarial": {}}
    d = verdict(make_gate(params, arms), training_for(arms))
    assert d.label == "accept" and d.chosen == "adversarial"


def test_cpu_budget_evidence_never_accepts(params):
    arms = {"lora": {"training": gpu_training(budget="cpu", device="cpu:x86_64")}}
    d = verdict(make_gate(params, arms), training_for(arms))
    assert d.verdict == DEFER and not d.gate_valid
    assert d.arms[0].passed and not d.arms[0].gate_valid
    assert any("not gate-valid" in r and "budget 'cpu'" in r for r in d.reasons)


def test_cpu_budget_prompt_holdout_only_defers(params):
    arms = {"lora": {"schemes": ["prompt_holdout"], "training": gpu_training(budget="cpu")}}
    d = verdict(make_gate(params, arms), training_for(arms))
    assert d.verdict == DEFER
    assert d.arms[0].missing == ("stratified_text.mean_qwk",)


LEGACY = {"budget": "gpu", "gate_valid": True, "device": "cuda:0", "precision": "bf16", "seed": 1, "finite": True,
          "folds": [{"fold": f, "finite": True} for f in range(5)]}  # a shape no stage writes: literal flags only


@pytest.mark.parametrize("training, problem", [
    (gpu_training(4), "4 of 5 folds"),
    (gpu_training(fold_checks={2: {LOSS: 10, PREDICTION: 400}}), "fold 2: training loss checked at 10 of 32 steps"),
    (gpu_training(fold_checks={0: {}}), "fold 0: no finite checks recorded"),
    (gpu_training(fold_checks={1: {LOSS: 32}}), "fold 1: 0 of 400 validation predictions checked"),
    (gpu_training(gate_valid=False), "gate_valid"),
    (gpu_training(precision=""), "precision not recorded"),
    (gpu_training(3), "marked incomplete"),
    (LEGACY, "training record invalid"),
    ({**gpu_training(), "folds": [0, 1, 2, 3, 4]}, "training record invalid"),
])
def test_invalid_gpu_evidence_defers(params, training, problem):
    arms = {"lora": {"training": training}}
    d = verdict(make_gate(params, arms), training_for(arms))
    assert d.verdict == DEFER and not d.gate_valid
    assert any(problem in v for v in d.arms[0].validity), d.arms[0].validity


def test_valid_gpu_record_round_trips_and_counts_its_checks():
    raw = gpu_training()
    record = parse_record(json.loads(json.dumps(raw)))
    assert record.to_dict() == raw and record.finite and record.complete
    assert record.finite_summary() == "5/5 folds checked (160 training loss, 80 gradient norm, 2000 prediction)"


def test_folds_under_different_settings_are_not_one_record():
    folds = [FoldRecord(f, 1.0, "cuda:0", "bf16", 4, 10, {LOSS: 4, PREDICTION: 10}, {"lr": lr})
             for f, lr in enumerate((1e-5, 2e-5))]
    with pytest.raises(InputError, match="fold 1 has settings"):
        build_record(arm="lora", scheme="prompt_holdout", budget="gpu", gate_valid=True, backbone="b", seed=1,
                     folds=folds, expected_folds=[0, 1], n_essays=20)


def test_nothing_run_defers(params):
    d = verdict(make_gate(params, {}), {})
    assert d.verdict == DEFER and d.reasons[0] == "no candidate arm has been run"
    assert [a.run for a in d.arms] == [False, False, False]


def test_decide_stage_renders_record_with_lock_hashes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    build_workspace(tmp_path, {"lora": {"training": gpu_training(budget="cpu")}}, n_resamples=200)
    compare.main()
    md5 = hashlib.md5((tmp_path / "metrics/gate.json").read_bytes()).hexdigest()
    lock = {"schema": "2.0", "stages": {
        "compare": {"cmd": "python -m stages.compare",
                    "outs": [{"path": "metrics/gate.json", "hash": "md5", "md5": md5, "size": 1}]},
        "collect@lora": {"cmd": "x", "outs": [{"path": "data/predictions/lora_prompt_holdout/seed_1.parquet",
                                               "hash": "md5", "md5": "0" * 32, "size": 1}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    decide.main()
    adr = (tmp_path / "docs/decisions/0001-transformer-track-gate.md").read_text()
    record = json.loads((tmp_path / "metrics/decision.json").read_text())
    assert record["verdict"] == "defer" and record["accept"] == 0 and record["gate_valid"] == 0
    assert record["checklist.1"] == 1 and record["checklist.2"] == 0 and record["checklist.3"] == 1
    assert "- [x] 1. A baseline fine-tuning run" in adr
    assert "- [ ] 2. An invariance variant" in adr
    assert f"stage `compare` → `metrics/gate.json` md5 `{md5}`" in adr
    assert "collect@lora" in adr and "workspace file differs from dvc.lock" in adr
    assert "Status: decided — **defer**" in adr and "Date: 2025-11-24" in adr
    assert "| lora | stratified_text | mean_qwk | not run |" in adr
    assert "adversarial | prompt_holdout | not run" in adr


@pytest.mark.parametrize("n_seeds, label", [(3, "accept"), (1, "accept (fragile)")])
def test_measured_seed_noise_from_predictions_decides_robust_or_fragile(tmp_path, monkeypatch, n_seeds, label):
    """End to end through `compare`: a candidate far better than the reference on every seed passes cleanly
    when each arm has three seeds (noise measured from the seeds' predictions, well below the margins), and
    only fragile with one seed each (noise unmeasured)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    seeds = list(range(1, n_seeds + 1))
    build_workspace(tmp_path, {"lora": {"noise": 0.12, "training": gpu_training(),
                                        "schemes": ["prompt_holdout", "stratified_text"]}},
                    n_resamples=300, seeds={"xgb": seeds, "finetune": seeds})
    compare.main()
    gate = json.loads((tmp_path / "metrics/gate.json").read_text())
    key = "lora.prompt_holdout.worst_prompt_qwk"
    assert gate[f"{key}.n_seeds_candidate"] == n_seeds and gate[f"{key}.noise_measured"] == int(n_seeds > 1)
    if n_seeds > 1:
        assert 0 < gate[f"{key}.noise_sd"] < gate[f"{key}.delta"] - gate[f"{key}.threshold"]
    runs = dict.fromkeys(seeds, gpu_training())
    d = verdict(gate, {f"lora_{s}": runs for s in ("prompt_holdout", "stratified_text")})
    assert d.label == label and d.chosen == "lora"
