"""Any corpus by params, on a corpus made here: ELLIPSE's largest prompts, each re-expressed on its own integer
scale (0–8 … 0–48) with some traits unscored (`tools.multiscale_corpus`), run end to end with
`params/multiscale.yaml` (leave one prompt out), and the reference arm's scale invariance on the same features."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from stages.lib.core.config import load_params
from stages.lib.core.params import Params, validate_section
from stages.lib.core.paths import EMBEDDINGS, HANDCRAFTED
from stages.lib.data.fold_files import read_fold, scheme_folds
from stages.lib.data.schema import DatasetSchema
from stages.lib.data.text import normalise_text, stable_id
from stages.lib.features.feature_store import load_features
from stages.lib.reference.model import fit_reference, run_fold
from stages.lib.scoring.evaluation import per_prompt_table
from stages.lib.scoring.predictions import fold_predictions
from tests.conftest import REPO
from tests.e2e_project import CORPUS_CSV, run, scratch_repo
from tools.multiscale_corpus import SCALES, TARGETS, UNSCORED, build, dataset_block, largest_prompts, read_ellipse

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CORPUS_CSV.is_file(), reason="the ELLIPSE corpus is not beside the repository"),
]
PER_PROMPT = 30


def multiscale_params(repo, corpus_dir) -> dict:
    """params/multiscale.yaml with the small corpus and shrunken budgets (one transformer arm, the gate on it)."""
    params = yaml.safe_load((REPO / "params" / "multiscale.yaml").read_text())
    params["corpus"].update(source=str(corpus_dir), file="multiscale.csv", sha256=None)
    params["features"]["n_process"] = 1
    params["embeddings"].update(max_length=128, stride=16)
    params["xgb"].update(n_estimators=30, inner_splits=2, embedding_pca=4)
    params["evaluate"].update(min_prompt_n=10, bottom_k=2)
    params["gate"].update(candidates=["lora"], baseline="lora", schemes=["prompt_holdout", "stratified_text"])
    params["gate"]["bootstrap"]["n_resamples"] = 200
    params["seeds"]["xgb"] = params["seeds"]["xgb"][:2]
    params["finetune"].update(arms=["lora"])
    params["finetune"]["budgets"]["cpu"].update(max_length=64, stride=8, max_train_essays=12, max_holdout_essays=12)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiscale")
    repo = scratch_repo(root / "repo")
    ellipse = read_ellipse(CORPUS_CSV)
    build(ellipse, PER_PROMPT).to_csv(root / "multiscale.csv", index=False)
    multiscale_params(repo, root)
    run(["dvc", "repro"], repo)
    return repo, ellipse


def test_the_profile_describes_the_corpus_the_tool_builds():
    profile = yaml.safe_load((REPO / "params" / "multiscale.yaml").read_text())["dataset"]
    block = dataset_block(largest_prompts(read_ellipse(CORPUS_CSV)))
    assert profile["prompt_grids"] == block["prompt_grids"] and profile["prompt_targets"] == block["prompt_targets"]


def test_every_stage_runs_and_metrics_are_per_prompt(pipeline):
    repo, _ = pipeline
    xgb = json.loads((repo / "metrics/arms/xgb_prompt_holdout.json").read_text())
    assert xgb["n_folds"] == len(SCALES)  # leave one prompt out
    assert xgb["qwk"]["averaged_over"] == "folds"  # each fold is one prompt: one scale
    assert xgb["qwk"]["pooled"] is None and "different score scales" in xgb["qwk"]["pooled_omitted"]
    assert xgb["qwk"]["mean"] == pytest.approx(xgb["qwk"]["prompt_mean"])  # one prompt per fold, all eligible
    assert np.isfinite(xgb["mcrmse"]) and xgb["tails"]["low_n"] > 0 and xgb["tails"]["high_n"] > 0
    assert xgb["qwk_by_trait"]["Cohesion"]["n_prompts"] == len(SCALES) - 2  # two prompts do not score it
    assert xgb["qwk_by_trait"]["Vocabulary"]["n_prompts"] == len(SCALES)
    stratified = json.loads((repo / "metrics/arms/xgb_stratified_text.json").read_text())
    assert stratified["qwk"]["averaged_over"] == "prompts"  # every fold mixes the six scales
    gate = json.loads((repo / "metrics/gate.json").read_text())
    assert gate["mean_qwk_over.prompt_holdout"] == "folds" and gate["mean_qwk_over.stratified_text"] == "prompts"
    assert gate["lora.prompt_holdout.worst_prompt_qwk.evaluated"] == 1  # lora runs on prompt_holdout only (cpu)
    assert np.isfinite(gate["lora.prompt_holdout.worst_prompt_qwk.ci_low"])
    decision = json.loads((repo / "metrics/decision.json").read_text())
    assert decision["verdict"] == "defer"
    html = (repo / "reports/evaluation_report.html").read_text()
    assert "Score scales" in html and "0–48 step 1" in html and "2–18 step 1" in html


def test_predictions_sit_on_each_prompts_own_grid_and_unscored_traits_stay_empty(pipeline):
    repo, ellipse = pipeline
    prompts = largest_prompts(ellipse)
    table = pd.read_parquet(next((repo / "data/predictions/xgb_prompt_holdout").glob("seed_*.parquet")))
    for rank, prompt in enumerate(prompts):
        low, step = SCALES[rank]
        rows = table[table["prompt"] == prompt]
        assert rows["grid_Overall"].between(low, low + 8 * step).all()
        assert np.array_equal(rows["grid_Overall"], np.rint(rows["grid_Overall"]))
        for target in UNSCORED.get(rank, ()):
            assert rows[f"true_{target}"].isna().all() and rows[f"grid_{target}"].isna().all()
    # the largest scale is really used: predictions spread beyond the 9 points the human scores take
    top = table[table["prompt"] == prompts[SCALES.index((0, 6))]]
    assert top["grid_Overall"].nunique() > 3


def store(repo) -> pd.DataFrame:
    return load_features(tuple(repo / p for p in (HANDCRAFTED, EMBEDDINGS)))


def mean_prompt_qwk(repo, essays: pd.DataFrame, schema: DatasetSchema, params: Params) -> float:
    """Average per-prompt QWK (Overall) of the reference arm over the leave-one-prompt-out folds, on the feature
    store the pipeline computed, with `essays` as the scores."""
    features = store(repo)
    scores = essays.set_index("essay_id")
    frames = []
    for fold in scheme_folds("prompt_holdout", repo / "data/folds"):
        train, val = read_fold("prompt_holdout", fold, repo / "data/folds")
        train, val = (f.drop(columns=list(TARGETS)).join(scores[list(TARGETS)], on="essay_id") for f in (train, val))
        continuous, on_grid, _ = run_fold(train, val, features, "prompt_holdout", params.xgb, params.seed, schema,
                                          "fold")
        frames.append(fold_predictions(val, fold, schema, continuous, on_grid))
    return float(per_prompt_table(pd.concat(frames), schema)["qwk"].mean())


def test_the_reference_arm_is_scale_invariant(pipeline):
    """Same essays, features, folds and seeds: the re-scaled corpus scores nearly as the untouched one does."""
    repo, ellipse = pipeline
    params = load_params(repo / "params.yaml")  # as the pipeline's stages read them
    rescaled = pd.read_parquet(repo / "data/prepared/essays.parquet")
    multiscale = DatasetSchema.from_params(params)
    untouched = ellipse.assign(essay_id=ellipse["full_text"].map(normalise_text).map(stable_id)).drop_duplicates(
        "essay_id").set_index("essay_id")[list(TARGETS)].astype(float)
    original = rescaled.copy()
    original[list(TARGETS)] = untouched.loc[original["essay_id"]].to_numpy()
    for rank, prompt in enumerate(largest_prompts(ellipse)):  # the re-scaled scores are the affine maps of these
        low, step = SCALES[rank]
        rows = (original["prompt"] == prompt).to_numpy()
        assert rows.any()
        for target in (t for t in TARGETS if t not in UNSCORED.get(rank, ())):
            assert np.array_equal(rescaled.loc[rows, target], low + step * (2 * original.loc[rows, target] - 2))
    plain = DatasetSchema.from_dataset(validate_section(
        "dataset", {**params.dataset.model_dump(), "prompt_grids": {}, "prompt_targets": {}}, params.source))
    assert plain.grid.on_grid(original[list(TARGETS)].to_numpy()).all()
    scaled_qwk = mean_prompt_qwk(repo, rescaled, multiscale, params)
    original_qwk = mean_prompt_qwk(repo, original, plain, params)
    print(f"average per-prompt QWK: re-scaled {scaled_qwk:.3f}, original {original_qwk:.3f}")
    assert abs(scaled_qwk - original_qwk) <= 0.03, (scaled_qwk, original_qwk)
    assert original_qwk > 0.2  # the comparison is between working models, not two failures


def test_fit_refuses_a_target_no_training_essay_scores(pipeline):
    repo, _ = pipeline
    params = load_params(repo / "params.yaml")
    schema = DatasetSchema.from_params(params)
    features = store(repo)
    train, _ = read_fold("prompt_holdout", 0, repo / "data/folds")
    train = train.assign(Cohesion=np.nan)
    with pytest.raises(Exception, match="target 'Cohesion' is scored on 0 training essay"):
        fit_reference(train, features, "prompt_holdout", params.xgb, 1, schema, "fold")
