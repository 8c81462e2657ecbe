"""`aes-gate score` on a real-corpus sample: the final-model code fitted on one prompt_holdout fold's training
essays and the fold's held-out essays scored from raw text reproduce the CV path's predictions exactly; every
bad input fails in one line naming the file and line, writing nothing; per-essay flags on constructed (invented)
essays; determinism and batch-size independence; parquet in and out; model selection and provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from dvc_data.hashfile.build import build
from dvc_data.hashfile.db import HashFileDB
from dvc_objects.fs.local import LocalFileSystem

from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError
from stages.lib.core.params import Params
from stages.lib.data.preparation import prepare
from stages.lib.data.schema import DatasetSchema
from stages.lib.data.splitting import make_splits
from stages.lib.data.text import normalise_text, stable_id
from stages.lib.encoders.backbone import load_encoder
from stages.lib.encoders.embedding import embed_texts, embedding_columns
from stages.lib.features.store_builder import compute
from stages.lib.reference.artifact import build_reference, load_reference
from stages.lib.reference.model import run_fold
from stages.lib.serving import cli
from stages.lib.serving.flags import FEATURE_MARGIN, MIN_FUNCTION_SHARE, FlagRules, function_word_share
from stages.lib.serving.provenance import dvc_dir_md5, select_model
from stages.lib.serving.reader import Columns, inspect_input, iter_batches
from stages.lib.serving.scorer import ReferenceScorer
from tests.conftest import CORPUS_DIR, REPO, synthetic_raw
from tests.typed_params import edited

CORPUS_CSV = CORPUS_DIR / "ELLIPSE_Final_github_test.csv"
needs_corpus = pytest.mark.skipif(not CORPUS_CSV.is_file(), reason="the ELLIPSE corpus is not beside the repository")
TARGETS = ["Overall", "Cohesion", "Syntax", "Vocabulary", "Phraseology", "Grammar", "Conventions"]


@pytest.fixture(autouse=True)
def _scratch_cwd(tmp_path, monkeypatch):
    """The CLI sweeps stale temp files under the output roots of its working directory: keep it in tmp."""
    monkeypatch.chdir(tmp_path)


def small_params() -> Params:
    params = load_params(REPO / "params.yaml")  # as a stage gets them: defaults filled
    return edited(params, lambda raw: raw["xgb"].update(n_estimators=30, inner_splits=2, embedding_pca=4))


def build_fold(raw: pd.DataFrame, root: Path) -> dict:
    """`raw` prepared by `prepare`, its feature store built by the features and embeddings stages' code, the
    reference artifact fitted on prompt_holdout fold 0's training essays, and that fold's raw essays as a CSV."""
    params = small_params()
    schema = DatasetSchema.from_params(params)
    raw = raw.reset_index(drop=True)
    raw["id"] = [f"e{i:03d}" for i in range(len(raw))]
    essays, _ = prepare(raw, schema, params.prepare, Path("sample.csv"))
    assert len(essays) == len(raw)  # nothing dropped, so raw row i is prepared row i
    handcrafted = compute(essays, params.features, params.source, progress=False)
    tokenizer, model = load_encoder(params.embeddings.backbone)
    cfg = params.embeddings
    vectors, _ = embed_texts(essays["text"].tolist(), tokenizer, model, cfg.max_length, cfg.stride,
                             cfg.batch_tokens, progress=False)
    embedded = pd.concat([essays[["essay_id"]], pd.DataFrame(vectors, columns=embedding_columns(vectors.shape[1]))],
                         axis=1)
    features = pd.concat([handcrafted.set_index("essay_id"), embedded.set_index("essay_id")], axis=1, join="inner")
    val_mask = make_splits(essays, "prompt_holdout", 3, params.seed, schema)[0]
    train, val = essays[~val_mask].reset_index(drop=True), essays[val_mask].reset_index(drop=True)
    artifact = root / "models" / "xgb"
    artifact.mkdir(parents=True)
    build_reference(artifact, train, features, params, "fold_0/train")
    raw_val = raw[val_mask].reset_index(drop=True)
    val_csv = root / "val.csv"
    raw_val[["id", "prompt", "full_text"]].to_csv(val_csv, index=False)
    return {"params": params, "schema": schema, "features": features, "train": train, "val": val,
            "raw": raw, "raw_val": raw_val, "val_csv": val_csv, "artifact": artifact, "root": root}


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    """A raw sample of the real corpus (6 prompts × 16 essays within the word window) through `build_fold`."""
    if not CORPUS_CSV.is_file():
        pytest.skip("the ELLIPSE corpus is not beside the repository")
    corpus = pd.read_csv(CORPUS_CSV, dtype=str, keep_default_na=False)
    words = corpus["full_text"].str.split().str.len()
    corpus = corpus[(words >= 220) & (words <= 600)]
    prompts = corpus["prompt"].value_counts().index[:6]
    raw = pd.concat([corpus[corpus["prompt"] == p].head(16) for p in prompts], ignore_index=True)
    return build_fold(raw, tmp_path_factory.mktemp("score"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Invented essays (`conftest.synthetic_raw`: 6 prompts × 16) through `build_fold`: a real artifact for the
    tests that need some model but not the corpus."""
    raw = synthetic_raw(n_prompts=6, per_prompt=16).astype({t: str for t in TARGETS})
    return build_fold(raw, tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def synthetic_scorer(synthetic):
    return ReferenceScorer(load_reference(synthetic["artifact"]))


@pytest.fixture(scope="module")
def scorer(fold):
    return ReferenceScorer(load_reference(fold["artifact"]))


def score(fold, scorer, path: Path, out: Path, **kwargs) -> pd.DataFrame:
    cli.score_file(path, out, model=str(fold["artifact"]), decision=fold["root"] / "none.json", scorer=scorer,
                   progress=False, **kwargs)
    return pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out, keep_default_na=False,
                                                                           na_values=[""])


@needs_corpus
def test_score_reproduces_the_cv_predictions_exactly(fold, scorer, tmp_path):
    """Refit on fold 0's training essays, score its held-out prompts' essays from raw text: the continuous and
    on-grid scores equal `run_fold`'s for those essays, bit for bit."""
    continuous, on_grid, _ = run_fold(fold["train"], fold["val"], fold["features"], "prompt_holdout",
                                      fold["params"].xgb, fold["params"].seed, fold["schema"],
                                      "fold_0")
    scores = score(fold, scorer, fold["val_csv"], tmp_path / "scores.csv")
    assert scores["id"].tolist() == fold["raw_val"]["id"].tolist()
    assert scores["essay_id"].tolist() == fold["val"]["essay_id"].tolist()
    assert scores["scored"].all()
    got_continuous = scores[[f"{t}_continuous" for t in TARGETS]].to_numpy(float)
    got_grid = scores[TARGETS].to_numpy(float)
    assert np.array_equal(got_continuous, continuous.astype(float))
    assert np.array_equal(got_grid, on_grid.astype(float))
    assert np.unique(got_grid[:, 0]).size > 1 and got_continuous.std(0).min() > 0  # not a degenerate match


@needs_corpus
def test_score_path_features_equal_the_feature_store(fold, scorer):
    """The handcrafted and embedding features `score` computes from raw text equal the stages' rows."""
    texts = [normalise_text(t) for t in fold["raw_val"]["full_text"]]
    ids = [stable_id(t) for t in texts]
    rows = scorer.feature_rows(ids, texts)
    store = fold["features"].loc[ids, list(rows.columns)]
    assert np.array_equal(rows.to_numpy(), store.to_numpy())


def test_scoring_twice_is_byte_identical_and_independent_of_batch_size(synthetic, synthetic_scorer, tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    score(synthetic, synthetic_scorer, synthetic["val_csv"], a, batch_size=64)
    score(synthetic, synthetic_scorer, synthetic["val_csv"], b, batch_size=64)
    score(synthetic, synthetic_scorer, synthetic["val_csv"], c, batch_size=5)
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    side_a, side_b = cli.provenance_path(a).read_text(), cli.provenance_path(b).read_text()
    assert side_a.replace('"a.csv"', '"b.csv"') == side_b
    record = json.loads(side_a)
    assert record["scores"]["rows"] == len(synthetic["raw_val"])
    assert record["options"]["batch_size"] == 64


def test_parquet_in_and_out_gives_the_csv_scores(synthetic, synthetic_scorer, tmp_path):
    path = tmp_path / "val.parquet"
    synthetic["raw_val"][["id", "prompt", "full_text"]].to_parquet(path, index=False)
    from_csv = score(synthetic, synthetic_scorer, synthetic["val_csv"], tmp_path / "s.csv")
    from_parquet = score(synthetic, synthetic_scorer, path, tmp_path / "s.parquet", batch_size=7)
    cols = [c for t in TARGETS for c in (t, f"{t}_continuous")]
    assert np.array_equal(from_csv[cols].to_numpy(float), from_parquet[cols].to_numpy(float))
    assert from_parquet["id"].tolist() == from_csv["id"].astype(str).tolist()


def invented_essay(n_words: int, seed: int = 0) -> str:
    """English-looking invented text (never corpus text): sentences of common words."""
    rng = np.random.default_rng(seed)
    words = ["students", "should", "think", "about", "their", "school", "because", "many", "people", "believe",
             "that", "learning", "is", "important", "for", "the", "future", "and", "work", "every", "day"]
    out, count = [], 0
    while count < n_words:
        sentence = rng.choice(words, size=10).tolist()
        out.append(" ".join(sentence).capitalize() + ".")
        count += 10
    return " ".join(out)


@needs_corpus
def test_flags_on_constructed_essays(fold, scorer, tmp_path):
    stats = scorer.artifact.stats
    low, high = scorer.artifact.features["word_window"].values()
    french = " ".join(["Le chat noir dort sur la table pendant que nous mangeons le pain du matin."] * 25)
    symbols = " ".join(["1234 5678 $$$ %%% 42 ### 99 !!! 7 @@"] * 30)
    lowercase_i = " ".join(["yesterday i said that i think i should work at home."] * 30)
    training_text = fold["raw"].loc[fold["raw"]["prompt"].isin(fold["train"]["prompt"]), "full_text"].iloc[0]
    essays = pd.DataFrame({
        "id": ["normal", "short", "french", "symbols", "lower_i", "blank", "training"],
        "prompt": ["New prompt"] * 7,
        "full_text": [invented_essay(300), invented_essay(60, 1), french, symbols, lowercase_i, "   \n\t ",
                      training_text],
    })
    path = tmp_path / "constructed.csv"
    essays.to_csv(path, index=False)
    scores = score(fold, scorer, path, tmp_path / "flags.csv").set_index("id")
    flags = {i: set(str(f).split(";")) - {"nan", ""} for i, f in scores["flags"].items()}

    n_short = scores.at["short", "n_words"]
    assert (n_short < low) and "outside_word_window" in flags["short"]
    assert ("unusual_length" in flags["short"]) == (n_short < stats["n_words"]["p1"])
    assert "outside_word_window" not in flags["normal"] and low <= scores.at["normal", "n_words"] <= high
    share, _ = function_word_share(normalise_text(french))
    assert share < MIN_FUNCTION_SHARE and "non_english" in flags["french"] and "non_english" not in flags["normal"]
    assert function_word_share(normalise_text(training_text))[0] >= MIN_FUNCTION_SHARE
    assert "non_alphabetic" in flags["symbols"] and "non_alphabetic" not in flags["normal"]
    span = stats["features"]["lowercase_i_per_100_words"]
    bound = span["max"] + FEATURE_MARGIN * (span["max"] - span["min"])
    row = scorer.feature_rows(["x"], [normalise_text(lowercase_i)]).iloc[0]
    assert row["lowercase_i_per_100_words"] > bound
    assert "feature_out_of_range" in flags["lower_i"]
    assert "lowercase_i_per_100_words" in scores.at["lower_i", "flag_details"]
    assert flags["blank"] == {"empty"} and scores.at["blank", "scored"] == 0
    assert scores.loc["blank", TARGETS].isna().all() and scores.loc["normal", TARGETS].notna().all()
    assert "in_training_data" in flags["training"] and "in_training_data" not in flags["normal"]
    for name in ("empty", "outside_word_window", "non_english", "non_alphabetic", "feature_out_of_range"):
        assert scores[f"flag_{name}"].tolist() == [int(name in flags[i]) for i in scores.index]
    record = json.loads(cli.provenance_path(tmp_path / "flags.csv").read_text())
    assert record["scores"]["flags"]["empty"] == 1 and record["scores"]["scored"] == len(essays) - 1


@needs_corpus
def test_an_unscorable_essay_is_flagged_and_the_rest_are_scored(fold, scorer, tmp_path):
    """A text spaCy refuses (longer than its max_length) is flagged `unscorable` in its row; the batch's other
    essays get exactly the scores they get alone."""
    giant = "word " * (scorer.tools.nlp.max_length // 5 + 10)
    essays = pd.DataFrame({"id": ["a", "giant", "b"],
                           "full_text": [invented_essay(300), giant, invented_essay(250, 3)]})
    path = tmp_path / "mixed.csv"
    essays.to_csv(path, index=False)
    scores = score(fold, scorer, path, tmp_path / "mixed_scores.csv").set_index("id")
    assert scores.at["giant", "scored"] == 0 and scores.at["giant", "flag_unscorable"] == 1
    assert "unscorable" in scores.at["giant", "flag_details"]
    alone = tmp_path / "alone.csv"
    essays.drop(index=1).to_csv(alone, index=False)
    solo = score(fold, scorer, alone, tmp_path / "alone_scores.csv").set_index("id")
    cols = [f"{t}_continuous" for t in TARGETS]
    assert np.array_equal(scores.loc[["a", "b"], cols].to_numpy(float), solo.loc[["a", "b"], cols].to_numpy(float))


# --- bad input: one line naming the file and line, exit status 2, nothing written -----------------------------

def run_cli(fold, path: Path, out: Path, capsys, *extra: str) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main(["score", str(path), "--out", str(out), "--model", str(fold["artifact"]), "--no-progress", *extra])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}")
    assert not out.exists() and not cli.provenance_path(out).exists()
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    return err[0]


def test_empty_file(synthetic, tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "empty file" in run_cli(synthetic, path, tmp_path / "out.csv", capsys)
    path.write_text("id,full_text\n")
    assert "no essays" in run_cli(synthetic, path, tmp_path / "out.csv", capsys)


def test_missing_text_column(synthetic, tmp_path, capsys):
    path = tmp_path / "no_text.csv"
    path.write_text("id,essay\n1,Some text.\n")
    message = run_cli(synthetic, path, tmp_path / "out.csv", capsys)
    assert "line 1" in message and repr(synthetic["schema"].text) in message
    out = tmp_path / "out.csv"
    assert "no text column 'missing'" in run_cli(synthetic, path, out, capsys, "--text-column", "missing")
    path.write_text("id,full_text\n1,Some text.\n")
    assert "no prompt column 'topic'" in run_cli(synthetic, path, out, capsys, "--prompt-column", "topic")


def test_non_utf8_bytes_name_their_line(synthetic, tmp_path, capsys):
    lines = ["id,full_text", "1,First essay text.", '2,"A quoted essay', 'over two lines."', "3,Caf\xe9 bad byte here."]
    raw = "\n".join(lines).encode("utf-8").replace("\xe9".encode(), b"\xe9") + b"\n"
    path = tmp_path / "latin1.csv"
    path.write_bytes(raw)
    offset = raw.index(b"\xe9")
    bad_line = raw[:offset].count(b"\n") + 1
    message = run_cli(synthetic, path, tmp_path / "out.csv", capsys)
    assert (f"not a readable UTF-8 CSV: record 4 (data row 3, line {bad_line}), column 'full_text', byte offset "
            f"{offset}: byte 0xe9 is not UTF-8") in message


def test_duplicate_ids_name_both_lines(synthetic, tmp_path, capsys):
    rows = ['id,full_text', 'a,One.', 'b,"Two,\nwith a line break."', 'c,Three.', 'b,Four.']
    path = tmp_path / "dupes.csv"
    path.write_text("\n".join(rows) + "\n")
    message = run_cli(synthetic, path, tmp_path / "out.csv", capsys)
    assert "duplicate id 'b'" in message and "line 6" in message and "first at line 3" in message
    table = pd.DataFrame({"id": ["x", "y", "x"], "full_text": ["One.", "Two.", "Three."]})
    table.to_parquet(tmp_path / "dupes.parquet", index=False)
    message = run_cli(synthetic, tmp_path / "dupes.parquet", tmp_path / "out.csv", capsys)
    assert "row 3" in message and "first at row 1" in message


def test_ragged_record_and_unreadable_parquet(synthetic, tmp_path, capsys):
    path = tmp_path / "ragged.csv"
    path.write_text("id,full_text\n1,Fine.\n2,Too,many,fields\n")
    assert "line 3" in run_cli(synthetic, path, tmp_path / "out.csv", capsys)
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 not really")
    assert "not a readable parquet file" in run_cli(synthetic, bad, tmp_path / "out.csv", capsys)


def test_a_failed_run_leaves_the_previous_output_untouched(synthetic, synthetic_scorer, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    score(synthetic, synthetic_scorer, synthetic["val_csv"], out)
    before = out.read_bytes(), cli.provenance_path(out).read_bytes()
    path = tmp_path / "dupes.csv"
    path.write_text("id,full_text\na,One.\na,Two.\n")
    with pytest.raises(SystemExit):
        cli.main(["score", str(path), "--out", str(out), "--model", str(synthetic["artifact"])])
    assert (out.read_bytes(), cli.provenance_path(out).read_bytes()) == before


def test_reader_streams_in_batches(tmp_path):
    path = tmp_path / "many.csv"
    pd.DataFrame({"id": range(23), "full_text": [f"Essay {i}." for i in range(23)]}).to_csv(path, index=False)
    source = inspect_input(path, Columns("full_text", "id", "prompt"))
    sizes = [len(b) for b in iter_batches(source, 5)]
    assert sizes == [5, 5, 5, 5, 3] and source.n_rows == 23 and source.columns.prompt is None


# --- flags without a model: the prompt-scale rule -------------------------------------------------------------

def test_unknown_prompt_scale_needs_declared_grids(params):
    stats = {"n_words": {"p1": 0, "p99": 1e9}, "features": {}, "prompts": {"Seen prompt": 10}, "essay_ids": []}
    window = {"min_words": 0, "max_words": 10**9}
    plain = FlagRules(DatasetSchema.from_params(params), stats, window)
    declared = edited(params, lambda raw: raw["dataset"].update(prompt_grids={"Own scale": {"min": 0, "max": 3,
                                                                                            "step": 1}}))
    rules = FlagRules(DatasetSchema.from_params(declared), stats, window)
    text = "the " * 5
    assert "unknown_prompt_scale" not in plain.text_flags(text, 5, "x", "Never seen").raised
    assert "unknown_prompt_scale" in rules.text_flags(text, 5, "x", "Never seen").raised
    assert "unknown_prompt_scale" in rules.text_flags(text, 5, "x", None).raised
    for known in ("Own scale", "Seen prompt"):
        assert "unknown_prompt_scale" not in rules.text_flags(text, 5, "x", known).raised


# --- model selection and provenance ---------------------------------------------------------------------------

def test_default_model_follows_the_decision_record(synthetic, tmp_path):
    models = synthetic["artifact"].parent
    decision = tmp_path / "decision.json"
    decision.write_text(json.dumps({"verdict": "defer", "chosen_arm": ""}))
    path, selection = select_model(None, models, decision)
    assert path == models / "xgb" and "defer" in selection["by"]
    decision.write_text(json.dumps({"verdict": "accept", "chosen_arm": "lora"}))
    with pytest.raises(InputError, match="lora"):
        select_model(None, models, decision)
    path, _ = select_model(None, models, tmp_path / "missing.json")
    assert path == models / "xgb"


def test_provenance_names_the_locked_md5(synthetic, synthetic_scorer, tmp_path):
    fs = LocalFileSystem()
    _, _, obj = build(HashFileDB(fs, str(tmp_path / "odb")), str(synthetic["artifact"]), fs, "md5", dry_run=True)
    assert dvc_dir_md5(synthetic["artifact"]) == obj.hash_info.value  # DVC's own directory hash
    lock = synthetic["root"] / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train_final": {"cmd": "python -m stages.train_final",
                    "outs": [{"path": "models/xgb", "hash": "md5", "md5": obj.hash_info.value}]}}}))
    try:
        out = tmp_path / "scores.csv"
        score(synthetic, synthetic_scorer, synthetic["val_csv"], out)
        record = json.loads(cli.provenance_path(out).read_text())
        model = record["model"]
        assert model["md5"] == obj.hash_info.value and model["matches_dvc_lock"] is True
        assert model["lock"]["stage"] == "train_final"
        assert model["params"]["xgb"] == synthetic["params"].xgb.model_dump()
        assert record["input"]["rows"] == len(synthetic["raw_val"])
        assert record["packages"].get("xgboost-cpu") or record["packages"].get("xgboost")
        assert record["selection"]["by"] == "--model"
        assert "utc" not in json.dumps(record).lower()  # no wall-clock time
        written = list(pd.read_csv(out, nrows=0).columns)
        use = record["score_use"]
        assert use["continuous"]["columns"] == [c for c in written if c.endswith("_continuous")]
        assert use["on_grid"]["columns"] == [c.removesuffix("_continuous") for c in use["continuous"]["columns"]]
        assert set(use["on_grid"]["columns"]) <= set(written)
    finally:
        lock.unlink()
