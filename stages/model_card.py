"""Stage `model_card`: the default final model's card (markdown), generated from the evidence it rests on —
the artifact's manifest, the data report, the arm's CV metrics per scheme, the gate and the decision record —
written as `reports/model_card.md` (committed) and beside the artifacts in `data/models/`."""

from __future__ import annotations

from stages.lib.artifacts.files import MANIFEST
from stages.lib.core.atomic import write_text
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.hashing import file_digest
from stages.lib.core.params import SCHEMES
from stages.lib.core.paths import (
    DATA_METRICS,
    DECISION,
    GATE,
    MODEL_CARD,
    MODEL_CARD_BESIDE,
    MODELS_DIR,
    metrics_path,
    model_dir,
)
from stages.lib.gate.evidence import read_json
from stages.lib.reporting.model_card import CardInputs, render
from stages.lib.serving.provenance import dvc_dir_md5, select_model


def main() -> None:
    params = load_params()
    artifact, selection = select_model(None, MODELS_DIR, DECISION)
    manifest = read_json(artifact / MANIFEST)
    arm = manifest["arm"]
    schemes = list(SCHEMES)  # every scheme the arm was judged under (a scheme not run shows as such)
    metric_files = {scheme: metrics_path(arm, scheme) for scheme in schemes}
    read = [DATA_METRICS, GATE, DECISION, *metric_files.values()]
    inputs = CardInputs(
        artifact=artifact, artifact_md5=dvc_dir_md5(artifact), manifest=manifest, data=read_json(DATA_METRICS),
        arm_metrics={s: read_json(p) for s, p in metric_files.items()},
        gate=read_json(GATE), decision=read_json(DECISION), params=params, selection=selection["by"],
        evidence_md5={p.as_posix(): file_digest(p, "md5") for p in read if p.is_file()},
    )
    baseline = params.gate.baseline_arm
    if baseline != arm and (model_dir(baseline) / MANIFEST).is_file():
        inputs.others.append((model_dir(baseline), dvc_dir_md5(model_dir(baseline)),
                              read_json(model_dir(baseline) / MANIFEST)))
    text = render(inputs)
    write_text(MODEL_CARD, text)
    write_text(MODEL_CARD_BESIDE, text)
    print(f"model_card: {arm} ({selection['by']}) -> {MODEL_CARD}, {MODEL_CARD_BESIDE}")


if __name__ == "__main__":
    run_stage(main)
