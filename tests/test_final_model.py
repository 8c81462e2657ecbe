"""The final model on invented data: `run_fold` is `fit_reference` + `FittedReference.predict` (same numbers),
prediction does not depend on how rows are batched, the artifact round-trips exactly and refuses tampering,
the `train_final` stage writes the same artifact twice, and the `model_card` stage writes what the evidence
says (flags follow the thresholds in params)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages import model_card, train_final
from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError
from stages.lib.core.params import Params
from stages.lib.core.paths import (
    DATA_METRICS,
    DECISION,
    EMBEDDINGS,
    ESSAYS,
    GATE,
    HANDCRAFTED,
    MODEL_CARD,
    MODEL_CARD_BESIDE,
    metrics_path,
    model_dir,
)
from stages.lib.data.schema import DatasetSchema
from stages.lib.features.linguistic import FEATURES
from stages.lib.reference.artifact import MODEL, build_reference, load_reference
from stages.lib.reference.model import fit_reference, run_fold
from stages.lib.serving.provenance import dvc_dir_md5
from tests.conftest import REPO
from tests.typed_params import edited

TARGETS = ["Overall", "Cohesion", "Syntax", "Vocabulary", "Phraseology", "Grammar", "Conventions"]


def small_params() -> Params:
    params = load_params(REPO / "params.yaml")  # as a stage gets them: defaults filled
    return edited(params, lambda raw: raw["xgb"].update(n_estimators=25, inner_splits=2, embedding_pca=3))


def invented(n_prompts: int = 6, per_prompt: int = 20, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prepared-essay rows and a feature store whose features carry signal about the scores (never corpus
    text: there is no text at all)."""
    rng = np.random.default_rng(seed)
    n = n_prompts * per_prompt
    ability = rng.normal(0, 1, n)
    essays = pd.DataFrame({"essay_id": [f"{i:016x}" for i in range(n)],
                           "prompt": [f"Prompt {i // per_prompt}" for i in range(n)],
                           "n_words": rng.integers(200, 900, n)})
    for j, t in enumerate(TARGETS):
        essays[t] = np.clip(np.round((3 + 0.8 * ability + rng.normal(0, 0.4 + 0.05 * j, n)) * 2) / 2, 1, 5)
    names = list(FEATURES)
    hand = pd.DataFrame(rng.normal(0, 1, (n, len(names))) + ability[:, None] * rng.uniform(0, 1, len(names)),
                        columns=names)
    emb = pd.DataFrame((rng.normal(0, 1, (n, 8)) + ability[:, None]).astype(np.float32),
                       columns=[f"emb_{j:03d}_unitless" for j in range(8)])
    features = pd.concat([hand, emb], axis=1).set_index(essays["essay_id"])
    return essays, features


def split(essays: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    val = essays["prompt"].isin(["Prompt 0", "Prompt 3"])
    return essays[~val].reset_index(drop=True), essays[val].reset_index(drop=True)


def test_a_fold_learns_from_its_training_essays_only():
    """The validation essays' scores never reach the fold's model or cutpoints; its training essays' do; each
    essay's prediction depends on that essay alone (any order, any batching)."""
    params, (essays, features) = small_params(), invented()
    schema, cfg, seed = DatasetSchema.from_params(params), params.xgb, params.seed
    train, val = split(essays)
    continuous, on_grid, log = run_fold(train, val, features, "prompt_holdout", cfg, seed, schema, "fold")
    assert schema.grid.on_grid(on_grid).all() and np.unique(on_grid[:, 0]).size > 1
    assert set(log["cutpoints"]) == set(TARGETS)
    scrambled = val.copy()
    scrambled[TARGETS] = np.random.default_rng(1).permutation(val[TARGETS].to_numpy())[:, ::-1]
    again = run_fold(train, scrambled, features, "prompt_holdout", cfg, seed, schema, "fold")
    assert np.array_equal(again[0], continuous) and np.array_equal(again[1], on_grid)
    assert again[2]["cutpoints"] == log["cutpoints"]
    relabelled = train.copy()
    relabelled["Overall"] = relabelled["Overall"].to_numpy()[::-1]
    other = run_fold(relabelled, val, features, "prompt_holdout", cfg, seed, schema, "fold")
    assert not np.array_equal(other[0][:, 0], continuous[:, 0])
    order = np.random.default_rng(2).permutation(len(val))
    shuffled = run_fold(train, val.iloc[order], features, "prompt_holdout", cfg, seed, schema, "fold")
    assert np.array_equal(shuffled[0], continuous[order]) and np.array_equal(shuffled[1], on_grid[order])


def test_a_prompt_with_its_own_grid_gets_the_calibration_carried_onto_it():
    essays, features = invented()
    params = edited(small_params(), lambda raw: raw["dataset"].update(
        prompt_grids={"Prompt 3": {"min": 1.0, "max": 5.0, "step": 1.0}}))
    schema = DatasetSchema.from_params(params)
    train, val = split(essays)
    fitted = fit_reference(train, features, "prompt_holdout", params.xgb, params.seed, schema, "fold")
    continuous, on_grid = fitted.predict(features.loc[val["essay_id"]].to_numpy(np.float32), val["prompt"].to_numpy())
    own = (val["prompt"] == "Prompt 3").to_numpy()
    assert own.any() and schema.grid_for("Prompt 3").on_grid(on_grid[own]).all()
    for j, calibrator in enumerate(fitted.calibrators):  # same range: the cutpoint map, rounded to whole points
        assert np.array_equal(on_grid[own, j], np.clip(np.rint(calibrator.transform(continuous[own, j])), 1, 5))
        # where the cutpoints send a prediction to an integer point of the half-point grid, both grids agree
        half = calibrator.predict(continuous[own, j])
        whole = half == np.rint(half)
        assert np.array_equal(on_grid[own, j][whole], half[whole])
    other = np.column_stack([c.predict(continuous[~own, j]) for j, c in enumerate(fitted.calibrators)])
    assert np.array_equal(on_grid[~own], other)


def test_the_artifact_round_trips_exactly_and_refuses_tampering(tmp_path):
    params, (essays, features) = small_params(), invented()
    train, val = split(essays)
    fitted, manifest = build_reference(tmp_path, train, features, params, "fold")
    loaded = load_reference(tmp_path)
    x_val = features.loc[val["essay_id"]].to_numpy(np.float32)
    for a, b in zip(fitted.predict(x_val, val["prompt"]), loaded.fitted.predict(x_val, val["prompt"]), strict=True):
        assert np.array_equal(a, b)
    assert [list(c.cutpoints_) for c in loaded.fitted.calibrators] == [list(c.cutpoints_) for c in fitted.calibrators]
    assert loaded.handcrafted == list(FEATURES) and manifest["trained_on"]["essays"] == len(train)
    stats = loaded.stats["features"]["words_count"]
    assert stats["min"] == features.loc[train["essay_id"], "words_count"].min()
    assert loaded.stats["essay_ids"] == sorted(train["essay_id"])
    with (tmp_path / MODEL).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(InputError, match=r"model\.joblib: sha256 differs"):
        load_reference(tmp_path)


def write_params(root: Path, params: Params) -> None:
    """`params` as the project's params.yaml (every key spelled out, as `load_params` filled them in)."""
    (root / "params.yaml").write_text(yaml.safe_dump(params.model_dump(), sort_keys=False))


def write_inputs(root: Path, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    essays, features = invented()
    (root / ESSAYS).parent.mkdir(parents=True)
    (root / HANDCRAFTED).parent.mkdir(parents=True)
    essays.to_parquet(root / ESSAYS, index=False)
    features[list(FEATURES)].reset_index().to_parquet(root / HANDCRAFTED, index=False)
    features[[c for c in features.columns if c.startswith("emb_")]].reset_index().to_parquet(root / EMBEDDINGS,
                                                                                            index=False)
    write_params(root, params)
    return essays, features


def test_train_final_writes_the_same_artifact_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = small_params()
    essays, features = write_inputs(tmp_path, params)
    train_final.main()
    first = dvc_dir_md5(model_dir("xgb"))
    manifest = json.loads((model_dir("xgb") / "manifest.json").read_text())
    train_final.main()
    assert dvc_dir_md5(model_dir("xgb")) == first
    assert manifest["trained_on"]["essays"] == len(essays) and manifest["seed"] == params.seeds.xgb[0]
    assert manifest["calibration"]["inner_scheme"] == "prompt_holdout"
    # the final model is a prompt-holdout CV fold whose training fold is every prepared essay, fitted with the
    # reference's first training seed
    schema = DatasetSchema.from_params(params)
    as_fold = run_fold(essays, essays, features, "prompt_holdout", params.xgb, params.seeds.xgb[0], schema,
                       "all essays")
    loaded = load_reference(model_dir("xgb"))
    x = features.loc[essays["essay_id"]].to_numpy(np.float32)
    predicted = loaded.fitted.predict(x, essays["prompt"].to_numpy())
    assert np.array_equal(predicted[0], as_fold[0]) and np.array_equal(predicted[1], as_fold[1])


def arm_metrics(rng: np.random.Generator, arm: str, scheme: str) -> dict:
    trait = {t: {"mean": float(rng.uniform(0.45, 0.8)), "std": 0.02, "pooled": 0.6} for t in TARGETS}
    return {"arm": arm, "scheme": scheme, "qwk": {"mean": trait["Overall"]["mean"], "std": 0.03, "pooled": 0.61},
            "qwk_by_trait": trait, "mcrmse": 0.5, "agreement": {"exact": 0.4, "rmse": 0.62},
            "continuous": {"qwk": {"mean": float(rng.uniform(0.45, 0.8))}, "rmse": 0.536, "smd": 0.012},
            "subgroups": {"grade": {"levels": {"8": {"n": 400, "dsm": 0.05, "dsm_continuous": 0.04},
                                               "9": {"n": 6, "dsm": -0.32, "dsm_continuous": -0.22}},
                                    **{kind: {key: {"r2_adj": float(rng.uniform(0, 0.01)), "p": p}
                                              for key, p in (("osa", 0.31), ("osd", 0.0004), ("csd", 0.045))}
                                       for kind in ("on_grid", "continuous")}}},
            "worst_prompt_qwk": 0.41,
            "worst_prompts": ["Prompt 1"], "per_prompt_qwk": {"Prompt 1": 0.41},
            "tails": {"low_adjacent": 0.8, "high_adjacent": 0.79},
            "smd": {"overall": float(rng.uniform(-0.3, 0.3)),
                    "by_subgroup": {"grade": {"8": {"n": 400, "smd": float(rng.uniform(-0.3, 0.3))},
                                              "9": {"n": 6, "smd": -0.6}}}}}


def test_the_model_card_says_what_the_evidence_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = small_params()
    write_inputs(tmp_path, params)
    train_final.main()
    rng = np.random.default_rng(3)
    evidence = {metrics_path("xgb", s): arm_metrics(rng, "xgb", s) for s in ("prompt_holdout", "stratified_text")}
    evidence[DATA_METRICS] = {"rows_in": 130, "rows_out": 120, "dropped": {"below_min_words": 10}, "n_prompts": 6,
                              "words": {"min": 200, "median": 400.0, "max": 900},
                              "score_mean": dict.fromkeys(TARGETS, 3.0)}
    evidence[GATE] = {"reference": "xgb", "lora.prompt_holdout.mean_qwk.threshold": -0.003,
                      "lora.prompt_holdout.mean_qwk.evaluated": 1, "lora.prompt_holdout.mean_qwk.delta": -0.25,
                      "lora.prompt_holdout.mean_qwk.ci_low": -0.3, "lora.prompt_holdout.mean_qwk.ci_high": -0.2,
                      "lora.prompt_holdout.mean_qwk.pass": 0}
    evidence[DECISION] = {"verdict": "defer", "chosen_arm": "", "gate_valid": 0, "reasons": ["lora: fails"]}
    for path, payload in evidence.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload))
    model_card.main()
    card = MODEL_CARD.read_text()
    assert MODEL_CARD_BESIDE.read_text() == card
    assert dvc_dir_md5(model_dir("xgb")) in card and "Verdict: defer" in card and "lora: fails" in card
    assert "-0.250 [-0.300, -0.200]" in card
    ph = evidence[metrics_path("xgb", "prompt_holdout")]
    assert (f"| QWK (mean over folds) | {ph['qwk']['mean']:.3f} | {ph['continuous']['qwk']['mean']:.3f} |" in card
            and "| RMSE | 0.620 | 0.536 |" in card and "the continuous score has the lower RMSE" in card)
    # the DSM columns are the metrics' seed means
    assert "| grade | 9 (small n) | 6 | **-0.600** ⚑ | **-0.320** ⚑ | **-0.220** ⚑ |" in card
    fit = ph["subgroups"]["grade"]["on_grid"]
    assert (f"| grade | on-grid | {fit['osa']['r2_adj']:.4f} | 0.310 | {fit['osd']['r2_adj']:.4f} | < 0.001 | "
            f"{fit['csd']['r2_adj']:.4f} | 0.045 |") in card

    def flagged_traits(text: str) -> set[str]:
        return {line.split("|")[1].strip() for line in text.splitlines()
                if line.startswith("| ") and line.split("|")[1].strip() in TARGETS and "⚑" in line}

    scores = evidence[metrics_path("xgb", "prompt_holdout")]["qwk_by_trait"]
    strat = evidence[metrics_path("xgb", "stratified_text")]["qwk_by_trait"]
    expected = {t for t in TARGETS if min(scores[t]["mean"], strat[t]["mean"]) < params.report.qwk_flag}
    assert flagged_traits(card) == expected and expected
    stricter = edited(params, lambda raw: raw["report"].update(qwk_flag=0.5))
    write_params(tmp_path, stricter)
    model_card.main()
    again = MODEL_CARD.read_text()
    assert flagged_traits(again) == {t for t in TARGETS if min(scores[t]["mean"], strat[t]["mean"]) < 0.5}
    write_params(tmp_path, params)
    model_card.main()
    assert MODEL_CARD.read_text() == card  # same evidence, same card
    shutil.rmtree(model_dir("xgb"))
    with pytest.raises(InputError, match="no final-model artifact"):
        model_card.main()


def test_a_transformer_final_model_saves_the_peft_way_and_scores_as_trained(tmp_path, monkeypatch,
                                                                              restore_torch_globals):
    """The baseline arm on a tiny random backbone: the stage writes a smoke artifact (peft adapter + head) that
    `score` reloads offline and that predicts what the trained model in memory predicts; training twice writes
    the same weights."""
    from peft import PeftConfig

    from stages import preflight, train_final_transformer
    from stages.lib.core.errors import run_stage
    from stages.lib.serving.cli import provenance_path, score_file
    from stages.lib.serving.models import load_artifact, make_scorer
    from stages.lib.training.final import ADAPTER, build_transformer
    from stages.lib.training.trainer import predict
    from stages.lib.windows.essay_batches import encode_essays
    from tests.tiny_backbone import invented_essays, make_tiny_backbone, tiny_params, write_project

    monkeypatch.chdir(tmp_path)
    backbone = make_tiny_backbone(tmp_path / "tiny")
    essays = invented_essays(60, 4)
    write_project(tmp_path, essays, 2)
    params = tiny_params(backbone, [0])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_stage(preflight.main)  # the speed settings every training run takes
    train_final_transformer.main(["--arm", "lora"])
    artifact = load_artifact(model_dir("lora"))
    assert artifact.manifest["smoke"] is True and artifact.manifest["gate_valid"] is False
    assert PeftConfig.from_pretrained(str(model_dir("lora") / ADAPTER)).peft_type.value == "LORA"

    adapter = json.loads((model_dir("lora") / ADAPTER / "adapter_config.json").read_text())
    # nothing machine- or process-specific: the backbone by its spec, not this checkout's path; modules sorted
    assert adapter["base_model_name_or_path"] == params["finetune"]["budgets"]["cpu"]["backbone"]
    assert adapter["target_modules"] == sorted(adapter["target_modules"]) and len(adapter["target_modules"]) == 2
    assert not (model_dir("lora") / ADAPTER / "README.md").exists()
    run, _ = build_transformer(tmp_path / "again", "lora", essays, load_params())  # as the stage reads them
    for path in sorted(p.relative_to(model_dir("lora")) for p in model_dir("lora").rglob("*") if p.is_file()):
        assert (tmp_path / "again" / path).read_bytes() == (model_dir("lora") / path).read_bytes(), path
    scorer = make_scorer(artifact)
    texts = essays["text"].tolist()[:12]
    _, continuous, on_grid = scorer._predict([f"x{i}" for i in range(12)], texts, [None] * 12)
    data = encode_essays(texts, run.tokenizer, run.budget.max_length, run.budget.stride)
    expected = predict(run.model, data, scorer.accelerator, pad_id=run.tokenizer.pad_token_id, batch_size=8,
                       fold=-1).pred.numpy() * run.std + run.mean
    assert np.array_equal(continuous, expected) and continuous.std(0).max() > 0
    grid = np.column_stack([c.predict(continuous[:, j]) for j, c in enumerate(run.calibrators)])
    assert np.array_equal(on_grid, grid)

    frame = pd.DataFrame({"id": [f"n{i}" for i in range(12)], "full_text": texts})
    frame.to_csv(tmp_path / "new.csv", index=False)
    record = score_file(tmp_path / "new.csv", tmp_path / "scores.csv", model="lora", progress=False)
    assert record["model"]["smoke"] is True and record["scores"]["scored"] == 12
    assert json.loads(provenance_path(tmp_path / "scores.csv").read_text())["model"]["kind"] == "transformer"
