"""The figures and report stages on an invented workspace: every section present, strings escaped,
arms not run shown as such; and the page opens in headless Chromium (skipped when it is absent)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from gate_synth import build_workspace, gpu_training

from stages import compare, decide, figures, report
from stages.lib.core.paths import arm_table_path
from stages.lib.reporting.sections import SECTIONS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Run compare → decide → figures → report once, with lora (CPU budget, prompt_holdout only) present."""
    root = tmp_path_factory.mktemp("report")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(root)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    try:
        build_workspace(root, {"lora": {"noise": 0.3, "training": gpu_training(budget="cpu")}}, n_resamples=200)
        for stage in (compare, decide, figures, report):
            stage.main()
    finally:
        monkeypatch.undo()
    return root


def test_report_has_every_section_and_no_external_resources(built):
    html = (built / "reports/evaluation_report.html").read_text()
    for section_id in SECTIONS:
        assert f'<section id="{section_id}">' in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # self-contained
    assert html.count("data:image/png;base64,") >= 5
    for figure in ("plots/figures/per_prompt_qwk_prompt_holdout.png", "plots/figures/confusion.png",
                   "plots/figures/residual_by_band.png", "plots/gate/deltas.png"):
        assert (built / figure).stat().st_size > 1000


def test_report_shows_not_run_and_the_decided_verdict(built):
    html = (built / "reports/evaluation_report.html").read_text()
    decision = json.loads((built / "metrics/decision.json").read_text())
    assert decision["verdict"] == "defer" and decision["gate_valid"] == 0  # lora ran on the CPU budget only
    assert '<span class="badge defer">DEFER</span>' in html and "(gate-valid evidence: no)" in html
    assert "Not run: adversarial · prompt_holdout, groupdro · prompt_holdout, lora · stratified_text" in html


def test_gate_table_shows_each_criterion_result_of_the_gate_record(built):
    html = (built / "reports/evaluation_report.html").read_text()
    gate = json.loads((built / "metrics/gate.json").read_text())
    evaluated = [k[:-len(".evaluated")] for k, v in gate.items() if k.startswith("lora.") and k.count(".") == 3
                 and k.endswith(".evaluated") and v]
    assert len(evaluated) == 4  # prompt_holdout only
    fails = sum(not gate[f"{k}.pass"] for k in evaluated)
    noisy = sum(gate[f"{k}.pass"] and not gate[f"{k}.robust_pass"] for k in evaluated)
    robust = sum(gate[f"{k}.robust_pass"] for k in evaluated)
    assert html.count('<td class="fail">fail</td>') == fails
    assert html.count('<td class="noise">pass (inside the noise)</td>') == noisy
    assert html.count('<td class="pass">pass</td>') == robust + sum(gate[f"{a}.pass"] for a in ("lora",))
    for k in evaluated:
        assert f"<td>{gate[f'{k}.delta']:+.3f}</td>" in html


def test_report_displays_evaluates_subgroup_and_descriptive_tables(built):
    html = (built / "reports/evaluation_report.html").read_text()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(built)
        dsm = pd.read_csv(arm_table_path("xgb", "prompt_holdout", "subgroup_dsm"), dtype={"level": str})
        desc = pd.read_csv(arm_table_path("xgb", "prompt_holdout", "descriptives")).iloc[0]
    row = dsm[dsm["recorded"] & (dsm["n"] >= 30)].iloc[0]
    cells = re.search(rf'<tr><td class="text">{row.subgroup}</td><td class="text">{re.escape(row.level)}</td>'
                      rf'<td>{row.n}</td><td[^>]*>([^<]+)</td><td[^>]*>([^<]+)</td>', html)
    assert cells is not None and cells.groups() == (f"{row.smd:+.3f}", f"{row.dsm:+.3f}")
    agreement = re.search(r'<tr><td class="text">xgb</td><td class="text">prompt_holdout</td><td>\d+</td>'
                          r'<td>1</td><td class="muted">unmeasured</td>'
                          r"<td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", html)
    assert agreement.groups() == tuple(f"{desc[k]:.3f}" for k in ("human_mean", "human_sd", "system_mean",
                                                                    "system_sd"))


def _rerun_report(built: Path, tmp_path: Path, **flags) -> str:
    """The report stage alone on a copy of the built workspace, with params `report` overridden."""
    root = shutil.copytree(built, tmp_path / "copy")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["report"].update(flags)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("AES_PARAMS", raising=False)
        report.main()
    return (root / "reports/evaluation_report.html").read_text()


def test_flags_come_from_params(built, tmp_path):
    none = _rerun_report(built, tmp_path / "none", qwk_flag=-1.0, smd_flag=99.0, dsm_flag=99.0)
    assert 'class="flag"' not in none and "Flags: QWK &lt; -1.00; |SMD| &gt; 99.00; |DSM| &gt; 99.00." in none
    every_qwk = _rerun_report(built, tmp_path / "all", qwk_flag=1.0, smd_flag=99.0, dsm_flag=99.0)
    assert every_qwk.count('class="flag"') >= 3 * 2  # mean and pooled QWK of each of the three runs at least


def test_compare_owns_the_gate_figure(built, tmp_path):
    root = shutil.copytree(built, tmp_path / "copy")
    (root / "plots/gate/deltas.png").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("AES_PARAMS", raising=False)
        report.main()
    assert not (root / "plots/gate/deltas.png").exists()
    assert "Figure not available (plots/gate/deltas.png)" in (root / "reports/evaluation_report.html").read_text()


def test_figures_read_evaluates_tables_and_the_qwk_flag(built, tmp_path, monkeypatch):
    combined = pd.read_csv(built / "plots/figures/residual_by_band.csv", dtype={"score_band": str})
    own = pd.read_csv(built / "reports/arms/xgb_prompt_holdout/residual_by_band.csv", dtype={"score_band": str})
    shown = combined[combined["series"] == "xgb · prompt_holdout"][list(own.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(shown, own)
    root = shutil.copytree(built, tmp_path / "copy")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["report"]["qwk_flag"] = 0.42
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    seen = []
    real = figures.per_prompt_figure
    monkeypatch.setattr(figures, "per_prompt_figure", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    monkeypatch.chdir(root)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    figures.main()
    assert seen == [0.42, 0.42]  # one per scheme


def test_first_screen_summary_and_headline(built):
    summary = (built / "reports/summary.txt").read_text().splitlines()
    headline = {k.removeprefix("headline."): v for k, v in json.loads((built / "metrics/headline.json").read_text())
                .items() if k.startswith("headline.")}
    decision = json.loads((built / "metrics/decision.json").read_text())
    assert len(summary) <= 25
    assert summary[0].startswith(f"Verdict: {decision['verdict'].upper()}  (gate-valid evidence: no")
    assert headline["verdict"] == decision["verdict"] and headline["gate_valid"] == decision["gate_valid"]
    assert all(not isinstance(v, dict | list) for v in headline.values())
    for arm, scheme in (("xgb", "prompt_holdout"), ("xgb", "stratified_text"), ("lora", "prompt_holdout")):
        m = json.loads((built / f"metrics/arms/{arm}_{scheme}.json").read_text())
        key = f"{arm}.{scheme}"
        assert headline[f"{key}.mean_qwk"] == m["qwk"]["mean"] and headline[f"{key}.sd_qwk"] == m["qwk"]["std"]
        assert headline[f"{key}.worst_prompt_qwk"] == m["worst_prompt_qwk"]
        assert headline[f"{key}.low_tail_adjacent"] == m["tails"]["low_adjacent"]
        row = next(line for line in summary if line.split()[:2] == [arm, scheme])
        assert row.split()[2:] == [f"{m['qwk']['mean']:.3f}", "±", f"{m['qwk']['std']:.3f}",
                                   f"{m['worst_prompt_qwk']:.3f}", f"{m['tails']['low_adjacent']:.3f}",
                                   f"{m['tails']['high_adjacent']:.3f}", "1", "unmeasured"]
        assert headline[f"{key}.n_seeds"] == m["n_seeds"] == 1 and headline[f"{key}.seed_sd_mean_qwk"] is None
    assert "groupdro.prompt_holdout.mean_qwk" not in headline  # not run: no number
    assert summary[-2:] == ["Report: reports/evaluation_report.html",
                            "Decision record: docs/decisions/0001-transformer-track-gate.md"]


def test_report_escapes_strings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AES_PARAMS", raising=False)
    build_workspace(tmp_path, n_resamples=200)
    path = tmp_path / "metrics/data.json"
    path.write_text(path.read_text().replace('"Prompt 00"', '"<script>alert(1)</script>"'))
    for stage in (compare, decide, figures, report):
        stage.main()
    html = (tmp_path / "reports/evaluation_report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(built, tmp_path):
    url = (built / "reports/evaluation_report.html").resolve().as_uri()
    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    run = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,4000", url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    dom = subprocess.run([*common, "--enable-logging=stderr", "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section_id in SECTIONS:
        assert f'id="{section_id}"' in dom.stdout
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr
