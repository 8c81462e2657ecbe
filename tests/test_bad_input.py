"""Bad input stops a stage with one clear message naming the file, row, column or prompt, and leaves
no partial output behind."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stages.lib.core.config import load_params
from stages.lib.core.errors import InputError
from stages.lib.core.hashing import file_digest
from stages.lib.core.params import Corpus
from stages.lib.data.corpus_source import acquire
from stages.lib.data.preparation import prepare_corpus
from tests.conftest import REPO, synthetic_raw
from tests.zipcrypto import write_zipcrypto


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_raw(frame) -> None:
    frame.to_csv("data/raw/corpus.csv", index=False)


def assert_no_outputs() -> None:
    assert not Path("data/prepared/essays.parquet").exists()
    assert not Path("metrics/data.json").exists()
    leftovers = [p for p in Path(".").rglob("*.tmp")]
    assert leftovers == []


def test_prepare_succeeds_on_valid_input(workdir):
    write_raw(synthetic_raw())
    prepare_corpus(load_params())
    assert Path("data/prepared/essays.parquet").is_file()


def test_missing_column_is_named(workdir):
    write_raw(synthetic_raw().drop(columns=["Grammar"]))
    with pytest.raises(InputError, match=r"corpus.csv: missing required column\(s\) \['Grammar'\]"):
        prepare_corpus(load_params())
    assert_no_outputs()


def test_off_grid_score_names_line_and_column(workdir):
    raw = synthetic_raw()
    raw.loc[5, "Syntax"] = 3.25
    write_raw(raw)
    with pytest.raises(InputError, match=r"line 7: column 'Syntax' value '3.25' is not on the score grid"):
        prepare_corpus(load_params())
    assert_no_outputs()


def test_non_numeric_score_is_named(workdir):
    raw = synthetic_raw()
    raw["Overall"] = raw["Overall"].astype(object)
    raw.loc[0, "Overall"] = "three"
    write_raw(raw)
    with pytest.raises(InputError, match=r"line 2: column 'Overall' value 'three'"):
        prepare_corpus(load_params())


def test_empty_essay_names_line(workdir):
    raw = synthetic_raw()
    raw.loc[3, "full_text"] = "   "
    write_raw(raw)
    with pytest.raises(InputError, match=r"line 5: empty essay in column 'full_text'"):
        prepare_corpus(load_params())
    assert_no_outputs()


def test_missing_corpus_is_named(workdir):
    with pytest.raises(InputError, match=r"data/raw/corpus.csv: corpus file not found"):
        prepare_corpus(load_params())


def test_malformed_csv_is_named(workdir):
    Path("data/raw/corpus.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n\x01")
    with pytest.raises(InputError, match=r"corpus.csv: not a readable UTF-8 CSV"):
        prepare_corpus(load_params())
    assert_no_outputs()


def test_stage_reports_one_line_and_exit_status(workdir):
    write_raw(synthetic_raw().drop(columns=["prompt"]))
    result = subprocess.run([sys.executable, "-m", "stages.prepare"], capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: data/raw/corpus.csv: missing required column(s) ['prompt']")


def test_acquire_rejects_wrong_checksum(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    synthetic_raw().to_csv(source / "corpus.csv", index=False)
    corpus = Corpus(source=str(source), file="corpus.csv", sha256="0" * 64, archive="x.zip")
    out = tmp_path / "raw" / "corpus.csv"
    with pytest.raises(InputError, match=r"src/corpus.csv: sha256 [0-9a-f]{64} does not match"):
        acquire(corpus, out)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_acquire_reads_a_password_protected_zip(tmp_path):
    csv = tmp_path / "corpus.csv"
    synthetic_raw().to_csv(csv, index=False)
    archive = tmp_path / "corpus.zip"
    write_zipcrypto(archive, "corpus.csv", csv.read_bytes(), "secret")
    with zipfile.ZipFile(archive) as zf:  # really encrypted: the standard library refuses it without the password
        assert zf.getinfo("corpus.csv").flag_bits & 0x1
        with pytest.raises(RuntimeError, match="password required"):
            zf.read("corpus.csv")
    corpus = Corpus(source=str(archive), file="corpus.csv", sha256=file_digest(csv),
                    archive_sha256=file_digest(archive), archive_password="secret")
    out = tmp_path / "raw" / "corpus.csv"
    assert acquire(corpus, out) == f"{archive}!corpus.csv"
    assert out.read_bytes() == csv.read_bytes()
    out.unlink()
    for password in ("wrong", None):
        with pytest.raises(InputError, match=rf"^{re.escape(str(archive))}: wrong password or corrupt archive "
                                             r"\(cannot extract corpus.csv: RuntimeError: "):
            acquire(corpus.model_copy(update={"archive_password": password}), out)
        assert not out.exists() and list(out.parent.iterdir()) == []


def test_acquire_names_a_missing_corpus(tmp_path):
    corpus = Corpus(source=str(tmp_path / "nowhere"), file="c.csv", archive="c.zip", published_at="https://example")
    with pytest.raises(InputError, match=r"nowhere: corpus not found"):
        acquire(corpus, tmp_path / "out.csv")


@pytest.mark.skipif(not (REPO.parent / "shared/data/ellipse/ELLIPSE_Final_github_test.zip").is_file(),
                    reason="the ELLIPSE release is not beside the repository")
def test_acquire_verifies_the_real_upstream_zip(tmp_path, params):
    corpus = params.corpus.model_copy(
        update={"source": str(REPO.parent / "shared/data/ellipse/ELLIPSE_Final_github_test.zip")})
    origin = acquire(corpus, tmp_path / "corpus.csv")
    assert origin.endswith("!ELLIPSE_Final_github_test.csv")


def unscored_params(prompt_targets: dict) -> None:
    import yaml

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["dataset"]["prompt_targets"] = prompt_targets
    params["prepare"]["exclude_prompts"] = []
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_an_empty_score_cell_is_named_with_the_way_to_declare_it(workdir):
    raw = synthetic_raw().astype({"Cohesion": str})
    raw.loc[13, "Cohesion"] = ""
    write_raw(raw)
    with pytest.raises(InputError, match=r"line 15: column 'Cohesion' value '' is not on the score grid .*prompt "
                                         r"'Prompt 1'.*say so in dataset.prompt_targets"):
        prepare_corpus(load_params())
    assert_no_outputs()


def test_declared_unscored_traits_are_empty_and_others_are_refused(workdir):
    import pandas as pd

    unscored_params({"Prompt 1": ["Overall", "Syntax", "Vocabulary", "Phraseology", "Grammar", "Conventions"]})
    raw = synthetic_raw().astype({"Cohesion": str})
    raw.loc[raw["prompt"] == "Prompt 1", "Cohesion"] = ""
    write_raw(raw)
    prepare_corpus(load_params())
    essays = pd.read_parquet("data/prepared/essays.parquet")
    assert essays.loc[essays["prompt"] == "Prompt 1", "Cohesion"].isna().all()
    assert essays.loc[essays["prompt"] != "Prompt 1", "Cohesion"].notna().all()
    Path("data/prepared/essays.parquet").unlink()
    Path("metrics/data.json").unlink()
    raw.loc[14, "Cohesion"] = "3.0"  # a score the declaration says Prompt 1 does not give
    write_raw(raw)
    with pytest.raises(InputError, match=r"line 16: column 'Cohesion' holds '3.0', but prompt 'Prompt 1' does not "
                                         r"score Cohesion"):
        prepare_corpus(load_params())
    assert_no_outputs()


def test_a_prompt_must_score_the_primary_target(workdir):
    unscored_params({"Prompt 1": ["Cohesion"]})
    write_raw(synthetic_raw())
    with pytest.raises(InputError, match=r"dataset.prompt_targets.Prompt 1: got \['Cohesion'\], expected the primary "
                                         r"target 'Overall'"):
        prepare_corpus(load_params())
