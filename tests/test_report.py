"""The figures and report stages on an invented workspace: every section a reader needs, each showing the values
of the stage outputs it displays; strings escaped, arms not run shown as such; and the page opens in headless
Chromium (skipped when it is absent)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
import yaml
from gate_synth import build_workspace, gpu_training

from stages import compare, decide, figures, report
from stages.lib.core.config import load_params
from stages.lib.core.paths import arm_table_path

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


# The sections a reader needs, in reading order: (id, heading).
EXPECTED_SECTIONS = [
    ("summary", "Summary"), ("data", "Data description"), ("agreement", "Agreement by arm"),
    ("per-prompt", "Per-prompt QWK"), ("subgroups", "Subgroup analysis"), ("residuals", "Residual diagnostics"),
    ("gate", "Gate: candidates against the reference"), ("verdict", "Verdict"), ("definitions", "Definitions"),
]
RUNS = [("xgb", "prompt_holdout"), ("lora", "prompt_holdout"), ("xgb", "stratified_text")]  # scheme-major
ARMS = ["xgb", "lora", "adversarial", "groupdro"]


def _sections(html: str) -> dict[str, str]:
    found = re.findall(r'<section id="([^"]+)"><h2>[^<]*</h2>(.*?)</section>', html, re.S)
    return dict(found)


def _text(body: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", body))


def _tables(body: str) -> list[tuple[list[str], list[list[str]], str]]:
    """(header, rows of cell texts, caption) of each table in a section."""
    def cells(row: str) -> list[str]:
        return [unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]

    found = re.findall(r'<table><thead><tr>(.*?)</tr></thead><tbody>(.*?)</tbody></table>'
                       r'(?:<p class="caption">(.*?)</p>)?', body)
    return [(cells(head), [cells(r) for r in re.findall(r"<tr>(.*?)</tr>", rows)], unescape(caption))
            for head, rows, caption in found]


def _f(value: float, signed: bool = False) -> str:
    return f"{value:+.3f}" if signed else f"{value:.3f}"


@pytest.fixture(scope="module")
def shown(built) -> dict[str, str]:
    return _sections((built / "reports/evaluation_report.html").read_text())


@pytest.fixture(scope="module")
def outputs(built) -> dict:
    """What the stages wrote and the report displays."""
    arm = {f"{a}_{s}": json.loads(path.read_text()) for a in ARMS for s in ("prompt_holdout", "stratified_text")
           if (path := built / f"metrics/arms/{a}_{s}.json").is_file()}

    def tables(name: str) -> dict[str, pd.DataFrame]:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(built)
            return {f"{a}_{s}": pd.read_csv(arm_table_path(a, s, name), dtype={"level": str, "score_band": str})
                    for a, s in RUNS}

    return {"arm": arm, "data": json.loads((built / "metrics/data.json").read_text()),
            "gate": json.loads((built / "metrics/gate.json").read_text()),
            "decision": json.loads((built / "metrics/decision.json").read_text()),
            "params": load_params(built / "params.yaml"),  # as the stages read them
            "per_prompt": pd.read_csv(built / "plots/figures/per_prompt_qwk.csv"),
            **{name: tables(name) for name in ("descriptives", "score_distribution", "subgroup_dsm",
                                                "residual_by_band")}}


def test_report_has_the_sections_a_reader_needs_and_no_external_resources(built):
    html = (built / "reports/evaluation_report.html").read_text()
    assert re.findall(r'<section id="([^"]+)"><h2>([^<]*)</h2>', html) == [(i, unescape(t)) for i, t in
                                                                           EXPECTED_SECTIONS]
    toc = re.search(r"<nav><ol>(.*?)</ol></nav>", html).group(1)
    assert re.findall(r'<li><a href="#([^"]+)">([^<]*)</a></li>', toc) == EXPECTED_SECTIONS
    assert not re.search(r'(src|href)="(https?:)?//', html)  # self-contained
    assert html.count("data:image/png;base64,") >= 5
    for figure in ("plots/figures/per_prompt_qwk_prompt_holdout.png", "plots/figures/confusion.png",
                   "plots/figures/residual_by_band.png", "plots/gate/deltas.png"):
        assert (built / figure).stat().st_size > 1000


def test_summary_section_shows_the_decision_and_the_runs_present(shown, outputs):
    text, decision, flags = _text(shown["summary"]), outputs["decision"], outputs["params"].report
    gate_valid = "yes" if decision["gate_valid"] else "no"
    assert f"Verdict: {decision['verdict'].upper()} (gate-valid evidence: {gate_valid})" in " ".join(text.split())
    present = [(a, s) for s in ("prompt_holdout", "stratified_text") for a in ARMS if f"{a}_{s}" in outputs["arm"]]
    assert present == RUNS
    assert "Runs present: " + ", ".join(f"{a} · {s}" for a, s in present) + "." in text
    assert (f"Flags: QWK < {flags.qwk_flag:.2f}; |SMD| > {flags.smd_flag:.2f}; "
            f"|DSM| > {flags.dsm_flag:.2f}.") in text


def test_data_section_shows_prepares_counts_and_the_reference_distribution(shown, outputs):
    data = outputs["data"]
    counts, per_prompt, distribution, composition = _tables(shown["data"])
    words = data["words"]
    assert counts[1] == [["essays in the raw corpus", str(data["rows_in"])],
                         *[[f"dropped: {k.replace('_', ' ')}", str(n)] for k, n in data["dropped"].items()],
                         ["essays kept", str(data["rows_out"])], ["prompts", str(data["n_prompts"])],
                         ["words per essay (min / median / max)",
                          f"{words['min']} / {words['median']} / {words['max']}"]]
    pairs = [(row[i], row[i + 1]) for row in per_prompt[1] for i in (0, 2, 4) if row[i]]
    assert dict(pairs) == {p: str(n) for p, n in data["essays_per_prompt"].items()}
    assert len(pairs) == data["n_prompts"]
    reference = outputs["score_distribution"]["xgb_prompt_holdout"]
    assert distribution[1] == [[f"{r.score:.1f}", str(r.human), f"{100 * r.human_share:.1f}%"]
                               for r in reference.itertuples()]
    d = outputs["descriptives"]["xgb_prompt_holdout"].iloc[0]
    assert f"Mean {_f(d.human_mean)}, SD {_f(d.human_sd)}, n = {int(d.n)}" in distribution[2]
    assert composition[1] == [[r.subgroup, r.level, str(r.n)]
                              for r in outputs["subgroup_dsm"]["xgb_prompt_holdout"].itertuples()]


def test_agreement_section_shows_each_runs_metrics(shown, outputs):
    [(_, rows, _)] = _tables(shown["agreement"])
    assert [row[:2] for row in rows] == [[a, s] for a in ARMS for s in ("prompt_holdout", "stratified_text")]
    for arm, scheme, *cells in rows:
        m = outputs["arm"].get(f"{arm}_{scheme}")
        if m is None:
            assert cells == ["not run"]
            continue
        d, a, q = outputs["descriptives"][f"{arm}_{scheme}"].iloc[0], m["agreement"], m["qwk"]
        assert cells == [str(m["n_essays"]), "1", "unmeasured", _f(d.human_mean), _f(d.human_sd), _f(d.system_mean),
                         _f(d.system_sd), _f(a["exact"]), _f(a["adjacent"]), _f(q["mean"]), _f(q["std"]),
                         _f(q["pooled"]), _f(a["pearson_r"]), _f(m["smd"]["overall"], True),
                         _f(a["rmse_continuous"]), _f(m["continuous"]["qwk"]["mean"])], (arm, scheme)


def test_per_prompt_section_shows_each_prompts_qwk_and_the_worst_prompt_figure(shown, outputs):
    tables = _tables(shown["per-prompt"])
    assert len(tables) == 2  # one per scheme
    for (header, rows, caption), scheme in zip(tables, ("prompt_holdout", "stratified_text"), strict=True):
        arms = [a for a, s in RUNS if s == scheme]
        assert header == ["prompt", "essays", *arms]
        figures = outputs["per_prompt"][outputs["per_prompt"]["scheme"] == scheme].set_index(["arm", "prompt"])
        assert {row[0] for row in rows} == set(figures.loc[arms[0]].index)
        for prompt, n, *qwk in rows:
            assert n == str(figures.at[(arms[0], prompt), "n"])
            assert qwk == [_f(figures.at[(arm, prompt), "qwk"]) for arm in arms], prompt
        assert [float(row[2]) for row in rows] == sorted(float(row[2]) for row in rows)  # sorted by the reference
        worst = "; ".join(f"{a}: {_f(outputs['arm'][f'{a}_{scheme}']['worst_prompt_qwk'])}" for a in arms)
        assert f"Worst-prompt QWK (mean of the bottom 5): {worst}." in caption


def test_subgroup_section_shows_evaluates_smd_and_dsm(shown, outputs):
    tables = _tables(shown["subgroups"])[0::2]  # each scheme's SMD/DSM table, then its fairness table
    for (header, rows, _), scheme in zip(tables, ("prompt_holdout", "stratified_text"), strict=True):
        arms = [a for a, s in RUNS if s == scheme]
        assert header == ["subgroup", "level", "essays", *[f"{a} {k}" for a in arms for k in ("SMD", "DSM")]]
        dsm = {a: outputs["subgroup_dsm"][f"{a}_{scheme}"] for a in arms}
        recorded = {a: t[t["recorded"]].set_index(["subgroup", "level"]) for a, t in dsm.items()}
        assert [tuple(row[:2]) for row in rows] == list(recorded[arms[0]].index)
        for subgroup, level, n, *cells in rows:
            assert n == str(recorded[arms[0]].at[(subgroup, level), "n"])
            assert cells == [_f(recorded[a].at[(subgroup, level), k], True) for a in arms for k in ("smd", "dsm")]


def test_subgroup_section_shows_evaluates_fairness_analyses(shown, outputs):
    tables = _tables(shown["subgroups"])[1::2]
    names = ["overall score accuracy", "overall score difference", "conditional score difference"]
    for (header, rows, _), scheme in zip(tables, ("prompt_holdout", "stratified_text"), strict=True):
        arms = [a for a, s in RUNS if s == scheme]
        assert header == ["subgroup", "analysis",
                          *[f"{a} {k}" for a in arms for k in ("R² grid", "p", "R² cont.", "p")]]
        subgroups = outputs["params"].dataset.subgroups
        assert [tuple(row[:2]) for row in rows] == [(c, name) for c in subgroups for name in names]
        for subgroup, name, *cells in rows:
            key = ("osa", "osd", "csd")[names.index(name)]
            expected = []
            for arm in arms:
                block = outputs["arm"][f"{arm}_{scheme}"]["subgroups"][subgroup]
                for kind in ("on_grid", "continuous"):
                    fit = block[kind][key]
                    expected += [f"{fit['r2_adj']:.4f}", "< 0.001" if fit["p"] < 0.001 else _f(fit["p"])]
            assert cells == expected, (subgroup, name)


def test_residual_section_shows_the_band_tables_and_tails(shown, outputs):
    by_band, _, tails = _tables(shown["residuals"])
    series = [f"{a} · {s}" for a, s in RUNS]
    assert by_band[0] == ["score band", *[f"{k} mean" for k in series], *[f"{k} MAE" for k in series]]
    bands = {f"{a}_{s}": outputs["residual_by_band"][f"{a}_{s}"].set_index("score_band") for a, s in RUNS}
    assert [row[0] for row in by_band[1]] == list(bands["xgb_prompt_holdout"].index)
    for band, *cells in by_band[1]:
        assert cells == [*[_f(t.at[band, "mean_residual"], True) for t in bands.values()],
                         *[_f(t.at[band, "mae"]) for t in bands.values()]], band
    assert tails[1] == [[a, s, _f(t["low_adjacent"]), str(t["low_n"]), _f(t["high_adjacent"]), str(t["high_n"])]
                        for a, s in RUNS for t in [outputs["arm"][f"{a}_{s}"]["tails"]]]


def test_gate_section_shows_each_criterion_of_the_gate_record(shown, outputs):
    (_, rows, _), (_, overall, _) = _tables(shown["gate"])
    gate, criteria = outputs["gate"], outputs["params"].gate.criteria
    expected = [(arm, scheme, metric) for arm in ("lora", "adversarial", "groupdro") for scheme, by_metric in
                criteria.items() for metric in by_metric]
    assert [tuple(row[:3]) for row in rows] == expected
    evaluated = 0
    for arm, scheme, metric, *cells in rows:
        key = f"{arm}.{scheme}.{metric}"
        threshold = f"≥ {criteria[scheme][metric]:+.3f}"
        if not gate.get(f"{key}.evaluated"):
            assert cells == ["not run", threshold, "not evaluated"], key
            continue
        evaluated += 1
        result = ("pass" if gate[f"{key}.robust_pass"] else "pass (inside the noise)" if gate[f"{key}.pass"]
                  else "fail")
        assert cells == [_f(gate[f"{key}.candidate_value"]), _f(gate[f"{key}.reference_value"]),
                         _f(gate[f"{key}.delta"], True), _f(gate[f"{key}.ci_low"], True),
                         _f(gate[f"{key}.ci_high"], True), "unmeasured", "1 / 1", threshold, result], key
    assert evaluated == 4  # lora under prompt_holdout only
    assert overall == [[a, "yes" if gate[f"{a}.evaluated"] else "no",
                        f"{gate[f'{a}.n_pass']}/{gate[f'{a}.n_criteria']}", "pass" if gate[f"{a}.pass"] else "no"]
                       for a in ("lora", "adversarial", "groupdro")]


def test_verdict_section_shows_decides_checklist_and_reasons(shown, outputs):
    decision, body = outputs["decision"], shown["verdict"]
    assert decision["verdict"] == "defer" and decision["gate_valid"] == 0  # lora ran on the CPU budget only
    assert _text(body).split("Review checklist")[0].split() == ["Verdict:", f"{decision['verdict']}.", "Evidence",
                                                                "gate-valid:", "no."]
    checklist, reasons = (re.findall(r"<li>(.*?)</li>", ul) for ul in re.findall(r"<ul>(.*?)</ul>", body))
    assert [unescape(item)[:6] for item in checklist] == [
        f"[{'x' if decision[f'checklist.{i}'] else ' '}] {i}." for i in range(1, 5)]
    assert [unescape(r) for r in reasons] == decision["reasons"]


def test_definitions_section_states_the_settings_used(shown, outputs):
    text, evaluate, grid = _text(shown["definitions"]), outputs["params"].evaluate, outputs["params"].dataset
    assert f"grid {grid.grid.min}–{grid.grid.max} in steps of {grid.grid.step}" in text
    assert (f"at least {evaluate.min_prompt_n} essays; worst-prompt QWK is the mean of the "
            f"{evaluate.bottom_k} lowest") in text
    assert f"human score ≤ {evaluate.low_tail} (low) and ≥ {evaluate.high_tail} (high)" in text


def test_report_shows_not_run_and_the_decided_verdict(built):
    html = (built / "reports/evaluation_report.html").read_text()
    assert '<span class="badge defer">DEFER</span>' in html and "(gate-valid evidence: no)" in html
    assert "Not run: adversarial · prompt_holdout, groupdro · prompt_holdout, lora · stratified_text" in html


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
    for section_id, _ in EXPECTED_SECTIONS:
        assert f'<section id="{section_id}">' in dom.stdout
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr
