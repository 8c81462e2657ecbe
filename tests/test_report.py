"""The figures and report stages on an invented workspace: every section present, strings escaped,
arms not run shown as such; and the page opens in headless Chromium (skipped when it is absent)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from gate_synth import build_workspace, gpu_training

from stages import compare, decide, figures, report
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


def test_report_shows_flags_not_run_and_verdict(built):
    html = (built / "reports/evaluation_report.html").read_text()
    assert "not run" in html  # adversarial and groupdro
    assert "groupdro · prompt_holdout" in html
    assert 'class="badge defer"' in html
    assert "Difference of standardized means" in html or "difference of standardized means" in html
    assert "pass (inside the noise)" in html or "fail" in html


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
