"""Under CI=true a skip for something missing fails the run; a skip that says what kind of machine this is does
not."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import REPO

pytest_plugins = ["pytester"]

SUITE = '''
import pytest

def test_needs_a_tool():
    pytest.skip("the `zip` tool is not installed")

def test_on_a_gpu_machine():
    pytest.skip("checks the no-GPU failure")

def test_runs():
    assert True
'''


@pytest.mark.parametrize("ci, failed, skipped", [("true", 1, 1), ("", 0, 2)])
def test_a_missing_resource_fails_only_under_ci(pytester, monkeypatch, ci, failed, skipped):
    tests = pytester.mkpydir("tests")
    shutil.copy(REPO / "tests" / "conftest.py", tests / "conftest.py")
    (tests / "__init__.py").write_text("")
    (tests / "test_sample.py").write_text(SUITE)
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", f"{REPO}")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "tests")
    result.assert_outcomes(passed=1, failed=failed, skipped=skipped)
    if failed:
        result.stdout.fnmatch_lines(["*skipped under CI=true, where every test must run*zip*"])
