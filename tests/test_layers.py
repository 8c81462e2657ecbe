"""The layering rule (`tools.layering`): no `stages/lib` package imports one that imports it back, and no stage
that trains a model runs evaluation, gate or reporting code; each checked on the real tree and shown to catch a
planted violation in a copy."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import REPO
from tools.layering import late_imports, package_cycles, violations


def test_the_tree_keeps_the_rule():
    assert violations() == []


@pytest.fixture
def tree(tmp_path):
    """A copy of the code and dvc.yaml to plant violations in."""
    shutil.copytree(REPO / "stages", tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path


def _append(path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_training_that_imports_evaluation_code_is_caught(tree):
    assert late_imports("stages.finetune", tree) == []
    _append(tree / "stages/lib/training/recipe.py", "from stages.lib.scoring.evaluation import table_qwk  # noqa")
    assert late_imports("stages.finetune", tree) == ["stages/lib/scoring/evaluation.py",
                                                     "stages/lib/scoring/metrics.py"]
    found = violations(tree)
    assert "stage finetune (stages.finetune) runs stages/lib/scoring/evaluation.py" in found
    assert "stage train_final_transformer (stages.train_final_transformer) runs stages/lib/scoring/evaluation.py" \
        in found


def test_a_package_that_imports_its_importer_is_caught(tree):
    assert package_cycles(tree) == []
    _append(tree / "stages/lib/artifacts/files.py", "from stages.lib.serving.models import load_artifact  # noqa")
    cycles = package_cycles(tree)
    assert ("artifacts", "serving") in cycles and ("artifacts", "reference") in cycles
