"""Stage `figures`: the arms side by side, from evaluate's outputs of every arm that has run (its plot data
and named tables; nothing is recomputed). Writes the combined plot data under `plots/figures/` (per-prompt
QWK, residual by score band) for `dvc plots`, and the same views as PNGs (plus predicted-vs-actual confusion
matrices). Independent of the gate thresholds; the per-prompt figure marks params `report.qwk_flag`."""

from __future__ import annotations

import pandas as pd

from stages.lib.core.atomic import write_csv
from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.paths import FIGURES_DIR, plot_data_path
from stages.lib.reporting.figures import confusion_figure, per_prompt_figure, residual_band_figure, save_png
from stages.lib.reporting.tables import read_arm_tables


def per_prompt_frame(arms: list[str], schemes: list[str], min_prompt_n: int) -> pd.DataFrame:
    """Per-prompt QWK of every arm and scheme present (evaluate's `per_prompt_qwk.csv`)."""
    frames = []
    for scheme in schemes:
        for arm in arms:
            path = plot_data_path(arm, scheme, "per_prompt_qwk")
            if path.is_file():
                frame = pd.read_csv(path)
                frames.append(frame.assign(arm=arm, scheme=scheme, series=f"{arm} · {scheme}",
                                           eligible=frame["n"] >= min_prompt_n))
    columns = ["scheme", "arm", "series", "prompt", "n", "scale", "eligible", "qwk"]
    return pd.concat(frames, ignore_index=True).reindex(columns=columns) if frames else pd.DataFrame(columns=columns)


def residual_band_frame(arms: list[str], schemes: list[str]) -> pd.DataFrame:
    """Residual by human score band for every arm and scheme present (evaluate's `residual_by_band` table)."""
    frames = []
    for scheme in schemes:
        for arm in arms:
            tables = read_arm_tables(arm, scheme, ("residual_by_band",))
            if tables is not None:
                frames.append(tables["residual_by_band"].assign(arm=arm, scheme=scheme, series=f"{arm} · {scheme}"))
    columns = ["series", "arm", "scheme", "score_band", "n", "mean_residual", "mae", "rmse_continuous"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def confusion_tables(arms: list[str], schemes: list[str]) -> dict[str, pd.DataFrame]:
    """Actual × predicted counts on the full grid (evaluate's `confusion_matrix` table), per arm and scheme."""
    matrices = {}
    for arm in arms:
        for scheme in schemes:
            tables = read_arm_tables(arm, scheme, ("confusion_matrix",))
            if tables is not None:
                matrices[f"{arm} · {scheme}"] = tables["confusion_matrix"].set_index("actual")
    return matrices


def main() -> None:
    params = load_params()
    qwk_flag, min_n = params.report.qwk_flag, params.evaluate.min_prompt_n
    reference = params.gate.reference
    arms = [reference, *params.gate.candidates]
    schemes = list(params.gate.schemes)
    prompts = per_prompt_frame(arms, schemes, min_n)
    bands = residual_band_frame(arms, schemes)
    write_csv(FIGURES_DIR / "per_prompt_qwk.csv", prompts)
    write_csv(FIGURES_DIR / "residual_by_band.csv", bands)
    for scheme in schemes:
        subset = prompts[(prompts["scheme"] == scheme) & prompts["eligible"]]
        save_png(per_prompt_figure(subset, reference, f"Per-prompt QWK, {scheme} (prompts with ≥ "
                                   f"{min_n} essays)", qwk_flag),
                 FIGURES_DIR / f"per_prompt_qwk_{scheme}.png")
    save_png(residual_band_figure(bands, "Mean residual by human score band"), FIGURES_DIR / "residual_by_band.png")
    save_png(confusion_figure(confusion_tables(arms, schemes), "Predicted vs actual (primary target)"),
             FIGURES_DIR / "confusion.png")
    present = sorted(set(prompts["series"]))
    print(f"figures: {len(present)} arm/scheme runs ({', '.join(present) or 'none'}) -> {FIGURES_DIR}")


if __name__ == "__main__":
    run_stage(main)
