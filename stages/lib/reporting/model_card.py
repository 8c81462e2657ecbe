"""The model card of the default final model (markdown), generated from the evidence it rests on: the
artifact's manifest, `metrics/data.json`, the arm's CV metrics per scheme (top-level keys: the seed mean when
runs have several seeds), the gate and the decision record. Nothing in it is typed by hand, and it carries
no wall-clock time, so the same evidence gives the same card."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from stages.lib.artifacts.files import MANIFEST
from stages.lib.core.formatting import md_table, num, p_value
from stages.lib.core.params import Params, validate_section
from stages.lib.data.schema import DatasetSchema
from stages.lib.serving.flags import RULES


def _flag(text: str, flagged: bool) -> str:
    return f"**{text}** ⚑" if flagged else text


class CardInputs:
    """Everything the card reads, by role (paths are given so the stage names them once, in paths.py)."""

    def __init__(self, *, artifact: Path, artifact_md5: str, manifest: dict[str, Any], data: dict[str, Any] | None,
                 arm_metrics: dict[str, dict[str, Any] | None],
                 gate: dict[str, Any] | None, decision: dict[str, Any] | None, params: Params,
                 selection: str, evidence_md5: dict[str, str], others: list[tuple[Path, str, dict]] = ()):
        self.artifact, self.artifact_md5, self.manifest = artifact, artifact_md5, manifest
        self.data, self.arm_metrics = data, arm_metrics
        self.gate, self.decision, self.params, self.selection = gate, decision, params, selection
        self.evidence_md5 = evidence_md5
        self.others = list(others)  # other final artifacts: (path, DVC md5, manifest)


def _transformer_model_section(c: CardInputs) -> list[str]:
    m = c.manifest
    budget = m["params"]["finetune"]["budgets"][m["budget"]]
    schema = artifact_schema(c)
    smoke = " — **CPU smoke artifact, not gate-valid**" if m.get("smoke") else ""
    lora = budget["lora"]
    return [
        "## Model", "",
        f"- **Arm:** `{m['arm']}` ({m['kind']}, budget {m['budget']}){smoke}; artifact `{c.artifact.as_posix()}`, "
        f"DVC md5 `{c.artifact_md5}`.",
        f"- **Why it is the default model:** {c.selection}.",
        f"- **What it is:** `{m['backbone']}` with LoRA adapters (r {lora['r']}, alpha {lora['alpha']}, modules "
        f"{', '.join(lora['target_modules'])}) and a linear head over essays mean-pooled across "
        f"{budget['max_length']}-token windows (overlap {budget['stride']}), {budget['epochs']} epoch(s).",
        f"- **Scores:** {', '.join(schema.targets)} on {schema.grid.low:g}–{schema.grid.high:g} in steps of "
        f"{schema.grid.step:g}{scales_note(schema)}; cutpoints ({m['calibration']['kind']}) fitted on "
        f"{m['calibration']['fitted_on']}.",
        f"- **Trained on:** {m['trained_on']['essays']:,} essays (+{m['trained_on']['holdout']} held out) of "
        f"{m['trained_on']['prepared']:,}, seed {m['seed']} (the first of the arm's training seeds).",
    ]


def artifact_schema(c: CardInputs) -> DatasetSchema:
    """The dataset schema the artifact's manifest records."""
    where = f"{c.artifact.as_posix()}/{MANIFEST} params"
    return DatasetSchema.from_dataset(validate_section("dataset", c.manifest["params"]["dataset"], where))


def scales_note(schema: DatasetSchema) -> str:
    """Where prompts have scales of their own: which, and that the grid above is the common scale."""
    if schema.single_scale:
        return ""
    own = ", ".join(f"{p} {g.label()}" for p, g in sorted(schema.prompt_grids.items()))
    return (f" (the common scale; prompts with their own scales — {own} — are mapped onto it min–max to learn "
            "and scored on their own grids)")


def _model_section(c: CardInputs) -> list[str]:
    if c.manifest["kind"] != "reference":
        return _transformer_model_section(c)
    m, p = c.manifest, c.manifest["params"]
    xgb, emb, feats = p["xgb"], p["embeddings"], p["features"]
    schema = artifact_schema(c)
    smoke = " — **CPU smoke artifact, not gate-valid**" if m.get("smoke") else ""
    return [
        "## Model", "",
        f"- **Arm:** `{m['arm']}` ({m['kind']}){smoke}; artifact `{c.artifact.as_posix()}`, DVC md5 "
        f"`{c.artifact_md5}`.",
        f"- **Why it is the default model:** {c.selection}.",
        f"- **What it is:** multi-target XGBoost ({xgb['n_estimators']} trees, depth {xgb['max_depth']}, learning "
        f"rate {xgb['learning_rate']}, subsample {xgb['subsample']}, column sample {xgb['colsample_bytree']}) on the "
        f"feature store: the handcrafted linguistic features (spaCy `{feats['spacy_model']}`, textstat, symspellpy, "
        f"lexicalrichness) and frozen `{emb['backbone']}` embeddings mean-pooled over {emb['max_length']}-token "
        f"windows (overlap {emb['stride']}, no truncation), reduced by PCA to {xgb['embedding_pca']} components. "
        f"Sample weights: {xgb['sample_weighting']} (power {xgb['weight_power']}).",
        f"- **Scores:** {', '.join(schema.targets)} (primary {schema.primary}) on {schema.grid.low:g}–"
        f"{schema.grid.high:g} in steps of {schema.grid.step:g}{scales_note(schema)}; each target's continuous "
        "prediction is mapped to "
        f"the grid by {m['calibration']['kind']} fitted on out-of-fold predictions of the training essays "
        f"({m['calibration']['inner_splits']} inner folds, {m['calibration']['inner_scheme']}: prompts held out, "
        "as for new prompts).",
        f"- **Trained on:** {m['trained_on']['essays']:,} essays over {m['trained_on']['prompts']} prompts, seed "
        f"{m['seed']} (the first of `seeds.xgb`); scikit-learn {m['packages'].get('scikit-learn', '?')}, xgboost "
        f"{m['packages'].get('xgboost', m['packages'].get('xgboost-cpu', '?'))}.",
    ]


def _data_section(c: CardInputs) -> list[str]:
    d, prep = c.data, c.manifest["params"]["prepare"]
    lines = ["", "## Training data", ""]
    if d is None:
        return [*lines, "No data report (`metrics/data.json`) was found."]
    dropped = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in d["dropped"].items() if v) or "none"
    means = ", ".join(f"{k} {v:.2f}" for k, v in d["score_mean"].items())
    excluded = ", ".join(prep.get("exclude_prompts") or []) or "none"
    return [*lines,
            "ELLIPSE (English Language Learner Insight, Proficiency and Skills Evaluation) corpus: argumentative "
            "essays by English learners in grades 8–12, scored holistically and on six analytic traits. Licensed "
            "CC BY-NC-SA 4.0: the model is derived from it (non-commercial use, share alike).", "",
            f"- {d['rows_out']:,} of {d['rows_in']:,} essays kept ({dropped} dropped), {d['n_prompts']} prompts; "
            f"excluded prompts: {excluded}.",
            f"- Word window {prep['min_words']}–{prep['max_words']} words; kept essays {d['words']['min']}–"
            f"{d['words']['max']} words (median {d['words']['median']:g}).",
            f"- Mean human scores: {means}."]


def _evidence_section(c: CardInputs) -> list[str]:
    ev, rep = c.params.evaluate, c.params.report
    arm = c.manifest["arm"]
    lines = ["", "## Cross-validated evidence", "",
             "The final model is refitted on all essays; what to expect of it is the cross-validation of the same "
             "arm below (fold models, never the final one). **prompt_holdout** scores essays to prompts the "
             "model never saw — the case `score` meets; stratified_text mixes prompts.", ""]
    for scheme, s in c.arm_metrics.items():
        if s is not None and s.get("n_seeds", 1) > 1:
            sd = s["seed_sd"]
            lines += [f"- {scheme}: every figure is the mean over {s['n_seeds']} training seeds; SD over seeds "
                      f"(training noise) {sd['qwk']['mean']:.3f} for mean QWK, {sd['worst_prompt_qwk']:.3f} for "
                      f"worst-prompt QWK. The final model is fitted with the first, seed {c.manifest['seed']}."]
    lines += [""] if lines[-1] != "" else []
    rows = []
    for scheme, s in c.arm_metrics.items():
        if s is None:
            rows.append([scheme, "not run", "—", "—", "—", "—", "—"])
            continue
        rows.append([scheme, f"{s['qwk']['mean']:.3f} ± {s['qwk']['std']:.3f}", num(s["qwk"].get("pooled")),
                     num(s["worst_prompt_qwk"]), f"{num(s['tails']['low_adjacent'])} / "
                     f"{num(s['tails']['high_adjacent'])}", num(s["agreement"]["exact"]), num(s["mcrmse"])])
    lines += md_table(["scheme", f"mean QWK ± SD ({arm}, {c.params.dataset.primary})", "pooled QWK",
                     f"worst-prompt QWK (bottom {ev.bottom_k}, n ≥ {ev.min_prompt_n})",
                     "low / high tail adjacent", "exact agreement", "MCRMSE"], rows)
    done = {k: v for k, v in c.arm_metrics.items() if v is not None}
    if done:
        targets = list(next(iter(done.values()))["qwk_by_trait"])
        lines += ["", f"### QWK per trait (mean over folds; ⚑ below {rep.qwk_flag:.2f})", ""]
        trait_rows = [[t, *(_flag(num(s["qwk_by_trait"][t]["mean"]), s["qwk_by_trait"][t]["mean"] < rep.qwk_flag)
                            for s in done.values())] for t in targets]
        lines += md_table(["trait", *done], trait_rows)
        first_scheme, first = next(iter(done.items()))
        worst = ", ".join(f"{p} ({first['per_prompt_qwk'].get(p, float('nan')):.2f})"
                          for p in first.get("worst_prompts", []))
        lines += ["", f"Worst prompts ({first_scheme}): {worst}."]
        lines += _subgroups(c, first_scheme, first)
    return lines


def _subgroups(c: CardInputs, scheme: str, s: dict[str, Any]) -> list[str]:
    rep = c.params.report
    smd = s.get("smd") or {}
    overall = smd.get("overall")
    lines = ["", f"### Subgroups ({scheme}; ⚑ |SMD| > {rep.smd_flag:.2f}, |DSM| > {rep.dsm_flag:.2f})", "",
             f"Overall SMD (mean prediction − mean human score, in human SDs): "
             f"{_flag(num(overall, signed=True), overall is not None and abs(overall) > rep.smd_flag)}.", ""]
    fairness = s.get("subgroups") or {}

    def dsm_cell(value: Any) -> str:
        flagged = value is not None and math.isfinite(value) and abs(value) > rep.dsm_flag
        return _flag(num(value, signed=True), flagged)

    rows = []
    for column, levels in (smd.get("by_subgroup") or {}).items():
        for level, entry in levels.items():
            value = entry.get("smd")
            dsm = ((fairness.get(column) or {}).get("levels") or {}).get(str(level)) or {}
            small = " (small n)" if entry["n"] < c.params.evaluate.min_prompt_n else ""
            rows.append([column, f"{level}{small}", f"{entry['n']:,}",
                         _flag(num(value, signed=True), value is not None and abs(value) > rep.smd_flag),
                         dsm_cell(dsm.get("dsm")), dsm_cell(dsm.get("dsm_continuous"))])
    lines += md_table(["subgroup", "level", "essays", "SMD", "DSM", "DSM (continuous)"], rows)
    lines += ["", f"A level with fewer than {c.params.evaluate.min_prompt_n} essays is marked small n: its "
              "statistics move a lot with a few essays. DSM is RSMTool's difference of standardized means; every "
              "figure is the mean over the arm's training seeds."]
    fits = [[column, label, *(cell for key in ("osa", "osd", "csd")
                              for cell in (num(block[kind][key]["r2_adj"], 4), p_value(block[kind][key]["p"])))]
            for column, block in fairness.items() for kind, label in (("on_grid", "on-grid"),
                                                                      ("continuous", "continuous"))]
    if fits:
        lines += ["", f"### Fairness analyses ({scheme})", "",
                  *md_table(["subgroup", "score", "accuracy R²", "p", "difference R²", "p", "conditional R²", "p"],
                            fits),
                  "", "Loukina, Madnani & Zechner (2019), as RSMTool computes them: the share of variance (adjusted "
                  "R²) in the squared error (overall score accuracy), in the error (overall score difference) and in "
                  "the error given the human score (conditional score difference) that the subgroup explains, with "
                  "the F test's p value."]
    return lines


def _which_score(c: CardInputs) -> list[str]:
    """Which of the two scores `score` writes suits which use, with the cross-validated figures of each."""
    s = c.arm_metrics.get("prompt_holdout") or next((v for v in c.arm_metrics.values() if v), None)
    if s is None or "continuous" not in s:
        return []
    primary, a, cont = c.params.dataset.primary, s["agreement"], s["continuous"]
    rows = [["QWK (mean over folds)", num(s["qwk"]["mean"]), num(cont["qwk"]["mean"])],
            ["RMSE", num(a["rmse"]), num(cont["rmse"])],
            ["SMD", num(s["smd"]["overall"], signed=True), num(cont["smd"], signed=True)]]
    lower = "continuous" if cont["rmse"] < a["rmse"] else "on-grid"
    return ["", "## Which score to use", "",
            f"`score` writes two scores per target: `{primary}` on the rubric's grid and `{primary}_continuous` "
            "(the model's estimate, clipped to the scale). The on-grid score comes from cutpoints fitted so that "
            "predictions spread like the human scores, which is what agreement statistics reward; the continuous "
            "score keeps the model's own estimate, without that spreading. Cross-validated figures of this arm "
            f"({primary}, out-of-fold):", "",
            *md_table(["", "on-grid", "continuous"], rows), "",
            "- Reporting a score on the rubric, or comparing with a human rater: the on-grid score (it is what QWK "
            "and exact/adjacent agreement judge).",
            f"- Ranking essays, averaging over essays or groups, or studying score distributions: the continuous "
            f"score. It has no rounding steps, and here the {lower} score has the lower RMSE."]


def _gate_section(c: CardInputs) -> list[str]:
    lines = ["", "## Gate verdict", ""]
    d, g = c.decision, c.gate
    if d is None:
        return [*lines, "No decision record (`metrics/decision.json`) was found: the reference arm is the default."]
    valid = "gate-valid" if d.get("gate_valid") else "**not gate-valid** (transformer evidence from the CPU budget)"
    lines += [f"- **Verdict: {d['verdict']}** ({valid}); chosen arm: {d.get('chosen_arm') or 'none'}; evidence "
              f"of {d.get('evidence_utc', '?')}.", ""]
    if g is not None:
        rows = []
        for key in (k.removesuffix(".threshold") for k in g if k.endswith(".threshold")):
            cand, scheme, crit = key.split(".", 2)
            threshold = g[f"{key}.threshold"]
            if not g.get(f"{key}.evaluated"):
                rows.append([cand, scheme, crit, "not evaluated", f"{threshold:+.3f}", "—"])
                continue
            ci = f"[{num(g.get(f'{key}.ci_low'), signed=True)}, {num(g.get(f'{key}.ci_high'), signed=True)}]"
            rows.append([cand, scheme, crit, f"{num(g.get(f'{key}.delta'), signed=True)} {ci}", f"{threshold:+.3f}",
                         "pass" if g.get(f"{key}.pass") else "fail"])
        lines += md_table(["candidate", "scheme", "criterion", f"delta vs {g.get('reference', 'reference')} [CI]",
                         "threshold", "result"], rows)
    reasons = d.get("reasons") or []
    if reasons:
        lines += ["", "Reasons recorded by the decision:", "", *(f"- {r}" for r in reasons)]
    return lines


def _others_section(c: CardInputs) -> list[str]:
    if not c.others:
        return []
    lines = ["", "## Other final artifacts", ""]
    for path, md5, m in c.others:
        status = ("**CPU smoke artifact, not gate-valid**: a pipeline proof, never evidence"
                  if m.get("smoke") else "gate-valid budget")
        t = m.get("trained_on", {})
        lines.append(f"- `{m['arm']}` ({m['kind']}, budget {m.get('budget', '—')}, backbone "
                     f"`{m.get('backbone', '—')}`): `{path.as_posix()}`, DVC md5 `{md5}`; trained on "
                     f"{t.get('essays', '?')} essays "
                     f"({t.get('holdout', 0)} more held out for its cutpoints); {status}. Score with it only "
                     f"explicitly: `aes-gate score … --model {m['arm']}`.")
    return lines


def _agreement(c: CardInputs) -> str:
    """How the unseen-prompt agreement compares with the QWK flag (empty when there is no evidence)."""
    s, flag = c.arm_metrics.get("prompt_holdout"), c.params.report.qwk_flag
    if s is None:
        return ""
    mean = s["qwk"]["mean"]
    relation = "below" if mean < flag else "at or above"
    return (f": its mean QWK with human raters on prompts it has not seen ({mean:.3f}) is {relation} the "
            f"{flag:.2f} flag of educational-measurement practice")


def _use_section(c: CardInputs) -> list[str]:
    prep = c.manifest["params"]["prepare"]
    schema = artifact_schema(c)
    gate_valid = bool((c.decision or {}).get("gate_valid"))
    transformer = ("The transformer arms were run on a budget that is not gate-valid: their evidence and any artifact "
                   "trained on it are a pipeline proof (a smoke artifact), never the default model."
                   if not gate_valid else "Transformer arms are the default only when the gate accepts them.")
    return [
        "", "## Intended use", "",
        "- Scoring English learners' argumentative essays (grades 8–12, prompts like ELLIPSE's) on the ELLIPSE "
        f"rubric ({', '.join(schema.targets)}), as a second rater, for research, or to triage essays for human "
        "review — with a human reading every flagged essay.",
        f"- Not for consequential decisions about a student on the machine score alone{_agreement(c)}.",
        "", "## Known limits", "",
        "- Performance on a new prompt is the prompt_holdout estimate above; the worst prompts score markedly "
        "lower, and a prompt far from ELLIPSE's topics may fare worse still.",
        f"- Essays outside {prep['min_words']}–{prep['max_words']} words were never trained on; `score` flags them "
        "and other inputs the training data does not cover (rules below).",
        "- English only; subgroup estimates rest on the recorded demographic fields and are unstable for small "
        "levels.",
        f"- {transformer}",
        "", "## Flags `aes-gate score` writes", "",
        *(f"- `{name}`: {rule}" for name, rule in RULES.items()),
        "", "## How to score", "",
        "```bash",
        "aes-gate score essays.csv --out scores.csv   # or: python -m stages.lib.serving.cli score …",
        "```",
        "",
        f"Input: a CSV or parquet file with a `{schema.text}` column (an `id` and a `{schema.prompt}` column are used "
        "when present). A provenance sidecar `scores.csv.provenance.json` names this artifact's md5 from "
        "`dvc.lock`, its params, package versions and the decision record.",
    ]


def render(c: CardInputs) -> str:
    lines = [f"# Model card: `{c.manifest['arm']}` final model", "",
             "Generated by the `model_card` stage (`dvc repro`) from tracked evidence; do not edit by hand."]
    lines += ["", *_model_section(c), *_data_section(c), *_evidence_section(c), *_which_score(c), *_gate_section(c),
              *_others_section(c), *_use_section(c)]
    lines += ["", "## Evidence files", "", *md_table(["file", "md5"], [[f"`{k}`", f"`{v}`"]
                                                                   for k, v in c.evidence_md5.items()])]
    return "\n".join(lines) + "\n"
