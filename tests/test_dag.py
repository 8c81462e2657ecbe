"""`dvc.yaml` against the code: every stage depends on every project module its entry point runs
(`tools.stage_deps`), no stage imports another stage, and one stage = one entry-point module."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stages.lib.core.paths import (
    ARM_TABLES,
    PLOT_DATA,
    arm_table_path,
    metrics_path,
    plot_data_path,
    residual_report_path,
    residuals_path,
)
from tools.stage_deps import ROOT, import_closure, imported_modules, missing_deps, rewrite, stage_modules

STAGE_DIR = ROOT / "stages"
STAGES = stage_modules()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_depends_on_its_whole_import_closure(stage):
    module, deps = STAGES[stage]
    assert missing_deps(module, deps) == [], (
        f"dvc.yaml stage {stage!r} misses code it runs: `python -m tools.stage_deps --write` fixes it")


def test_a_removed_dep_is_caught():
    module, deps = STAGES["finetune"]
    assert "stages/lib/training/trainer.py" in missing_deps(module, [d for d in deps if not d.endswith("trainer.py")])
    assert "stages/lib/training/trainer.py" not in missing_deps(module, [*deps, "stages/lib/training"])


def test_closure_follows_imports_inside_functions(tmp_path):
    entry = tmp_path / "entry.py"
    entry.write_text("def f():\n    from stages.lib.core import paths\n")
    closure = {p.relative_to(ROOT).as_posix() for p in import_closure(entry) if p.is_relative_to(ROOT)}
    assert {"stages/lib/core/paths.py", "stages/lib/core/__init__.py", "stages/__init__.py"} <= closure


def test_rewrite_restores_a_removed_dep_and_keeps_data_deps():
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    broken = text.replace("      - stages/lib/training/trainer.py\n", "", 1)
    assert broken != text
    assert rewrite(broken, STAGES) == rewrite(text, STAGES) == text


@pytest.mark.parametrize("stage_file", sorted(p.name for p in STAGE_DIR.glob("*.py") if p.name != "__init__.py"))
def test_no_stage_imports_another_stage(stage_file):
    stage_names = {f"stages.{p.stem}" for p in STAGE_DIR.glob("*.py") if p.name != "__init__.py"}
    offending = sorted(n for n in imported_modules(STAGE_DIR / stage_file)
                       if ".".join(n.split(".")[:2]) in stage_names)
    assert offending == [], f"stages/{stage_file} imports stage module(s) {offending}"


def test_one_stage_one_entry_module():
    modules = {f"stages.{p.stem}" for p in STAGE_DIR.glob("*.py") if p.name != "__init__.py"}
    assert modules == {module for module, _ in STAGES.values()}


def test_paths_module_owns_the_paths():
    """No module but `stages.lib.core.paths` spells a pipeline output location."""
    roots = ("data/", "metrics/", "reports/", "plots/", "docs/decisions/")
    offenders = []
    for path in sorted((ROOT / "stages").rglob("*.py")):
        if path.name == "paths.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(f'"{r}' in code or f"'{r}" in code or f'f"{r}' in code for r in roots):
                offenders.append(f"{Path(path).relative_to(ROOT)}:{number}")
    assert offenders == []


DAG = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def _paths(entries: list) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def test_evaluate_declares_every_output_the_paths_module_names():
    body = DAG["stages"]["evaluate"]
    arm, scheme = "${item.arm}", "${item.scheme}"
    expected = {residuals_path(arm, scheme), residual_report_path(arm, scheme),
                *(arm_table_path(arm, scheme, t) for t in ARM_TABLES)}
    assert set(_paths(body["outs"])) == {p.as_posix() for p in expected}
    assert set(_paths(body["plots"])) == {plot_data_path(arm, scheme, n).as_posix() for n in PLOT_DATA}
    assert _paths(body["metrics"]) == [metrics_path(arm, scheme).as_posix()]
    transformer = DAG["stages"]["evaluate_transformer"]
    assert [transformer[k] for k in ("outs", "plots", "metrics")] == [body[k] for k in ("outs", "plots", "metrics")]


def test_stages_are_listed_in_pipeline_order():
    """A stage comes after every stage whose output it depends on, so dvc.yaml reads top to bottom."""
    order = list(DAG["stages"])
    produced: dict[str, str] = {}
    for name in order:
        body = DAG["stages"][name]
        for out in _paths(body.get("outs", [])) + _paths(body.get("metrics", [])) + _paths(body.get("plots", [])):
            produced[out] = name
    for position, name in enumerate(order):
        for dep in DAG["stages"][name].get("deps", []):
            producers = {s for out, s in produced.items() if out == dep or out.startswith(dep.rstrip("/") + "/")
                         or dep.startswith(out.rstrip("/") + "/")}
            late = sorted(s for s in producers if order.index(s) > position)
            assert not late, f"{name} depends on {dep}, written by {late} listed after it"


def test_dvc_lock_records_only_stages_dvc_yaml_defines():
    """DVC keeps a lock entry after its stage is renamed or removed; a stale entry misstates the evidence."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        defined = {stage.name for stage in repo.index.stages}
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    assert sorted(set(locked) - defined) == [], "dvc.lock holds entries of stages dvc.yaml no longer defines"
