"""`aes-gate score INPUT --out scores.csv`: score new essays with a final model (also
`python -m stages.lib.serving.cli score …`).

INPUT is a CSV or parquet file with the schema's text column (`dataset.text`, e.g. `full_text`); an id
column (default `id`) and a prompt column (default `dataset.prompt`) are used when present. The model is
`--model ARM` (an artifact under `--models-dir`) or an artifact directory; by default the decision record's
chosen arm, or the reference arm (xgb) when the verdict is defer. Per essay the output holds each target's
on-grid score (`<target>`) and continuous score (`<target>_continuous`), and flags (`flags`,
`flag_details`, one `flag_<name>` 0/1 column each; rules in `stages.lib.serving.flags`). Essays are read,
scored and written `--batch-size` at a time; the output (CSV, or parquet for a `.parquet` name) appears
atomically, with `<out>.provenance.json` beside it. A file that cannot be used fails with one line naming the
file and line (exit status 2) and writes nothing.

Both files are written to locked temp siblings first; then the previous scores are set aside, the sidecar (which
records the scores' sha256) is renamed in, then the scores: a kill leaves scores only beside the sidecar that
describes them (at worst a sidecar with no scores), and the next run sweeps the dead run's temps from the `--out`
folder."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow
import pyarrow.parquet as pq
from tqdm import tqdm

from stages.lib.core.atomic import json_text, set_aside, sweep_stale_temps, temp_sibling
from stages.lib.core.errors import InputError, run_stage
from stages.lib.core.hashing import file_digest
from stages.lib.core.paths import DECISION, MODELS_DIR
from stages.lib.serving.flags import FLAGS
from stages.lib.serving.models import load_artifact, make_scorer
from stages.lib.serving.provenance import select_model, sidecar
from stages.lib.serving.reader import Columns, inspect_input, iter_batches
from stages.lib.serving.scorer import CONTINUOUS_SUFFIX, BatchScorer

DEFAULT_BATCH = 64
PROVENANCE_SUFFIX = ".provenance.json"


def provenance_path(out: Path) -> Path:
    return out.with_name(out.name + PROVENANCE_SUFFIX)


class ScoresWriter:
    """Batches appended to a locked temp sibling of `out` (CSV, or parquet for a .parquet name); `finish` closes
    it, `publish` puts the scores and their provenance sidecar in place (the order is in the module docstring).
    Leaving the block removes whatever was not published."""

    def __init__(self, out: Path, columns: list[str], targets: tuple[str, ...]):
        self.out, self.columns, self.rows, self.scored = out, columns, 0, 0
        self.flag_counts = dict.fromkeys(FLAGS, 0)
        self.parquet = out.suffix.lower() in (".parquet", ".pq")
        floats = {c for t in targets for c in (t, f"{t}{CONTINUOUS_SUFFIX}")}
        ints = {"line", "n_words", "scored", *(f"flag_{f}" for f in FLAGS)}
        self.schema = pyarrow.schema([(c, pyarrow.float64() if c in floats else pyarrow.int64() if c in ints
                                       else pyarrow.string()) for c in columns])
        self.sha256: str | None = None

    def __enter__(self) -> ScoresWriter:
        if self.out.is_dir():
            raise InputError(f"{self.out}: is a directory, not a scores file")
        with contextlib.ExitStack() as temps:
            self.tmp = temps.enter_context(temp_sibling(self.out))
            self.sidecar_tmp = temps.enter_context(temp_sibling(provenance_path(self.out)))
            self._writer = (pq.ParquetWriter(self.tmp, self.schema) if self.parquet
                            else self.tmp.open("w", encoding="utf-8", newline=""))
            self._open = True
            self._temps = temps.pop_all()
        return self

    def write(self, table: pd.DataFrame) -> None:
        if self.parquet:
            self._writer.write_table(pyarrow.Table.from_pandas(table, schema=self.schema, preserve_index=False))
        else:
            table.to_csv(self._writer, header=self.rows == 0, index=False, lineterminator="\n")
        self.rows += len(table)
        self.scored += int(table["scored"].sum())
        for name in FLAGS:
            self.flag_counts[name] += int(table[f"flag_{name}"].sum())

    def finish(self) -> str:
        """Close the scores temp; return (and keep as `sha256`) its sha256."""
        self._close()
        self.sha256 = file_digest(self.tmp)
        return self.sha256

    def publish(self, record: dict[str, Any]) -> None:
        """Write `record` as the sidecar; set the previous scores aside, rename the sidecar in, then the scores."""
        self.sidecar_tmp.write_text(json_text(record), encoding="utf-8")
        with set_aside(self.out):
            os.replace(self.sidecar_tmp, provenance_path(self.out))
            os.replace(self.tmp, self.out)

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()

    def __exit__(self, kind, value, traceback) -> bool:
        try:
            self._close()
        finally:
            self._temps.close()
        return False


def score_file(input_path: Path, out: Path, *, model: str | None = None, text_column: str | None = None,
               id_column: str | None = None, prompt_column: str | None = None, batch_size: int = DEFAULT_BATCH,
               models_dir: Path = MODELS_DIR, decision: Path = DECISION, progress: bool | None = None,
               scorer: BatchScorer | None = None) -> dict[str, Any]:
    """Score `input_path` into `out` and its provenance sidecar; return the sidecar. `scorer` reuses an
    already loaded model (the benchmark's warm runs)."""
    input_path, out = Path(input_path), Path(out)
    sweep_stale_temps([out.parent], recursive=False)  # temps a killed run left beside its output
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    if out.resolve() == input_path.resolve():
        raise InputError(f"{out}: the output would overwrite the input")
    artifact_path, selection = select_model(model, models_dir, decision)
    artifact = scorer.artifact if scorer is not None else load_artifact(artifact_path)
    schema = artifact.schema
    explicit = {role for role, name in (("id", id_column), ("prompt", prompt_column)) if name is not None}
    source = inspect_input(input_path, Columns(text_column or schema.text, id_column or "id",
                                               prompt_column or schema.prompt), explicit)
    scorer = scorer or make_scorer(artifact)
    show = source.n_rows > batch_size if progress is None else progress
    with ScoresWriter(out, scorer.columns, schema.targets) as writer:
        with tqdm(total=source.n_rows, unit="essay", desc=f"scoring {input_path.name}", disable=not show) as bar:
            for batch in iter_batches(source, batch_size):
                writer.write(scorer.score_batch(batch))
                bar.update(len(batch))
        record = sidecar(scores=out, scores_sha256=writer.finish(), n_rows=writer.rows, n_scored=writer.scored,
                         flag_counts=writer.flag_counts, input_file=source, artifact_path=artifact_path,
                         manifest=artifact.manifest, selection=selection,
                         options={"batch_size": batch_size, "output_format": "parquet" if writer.parquet else "csv",
                                  "feature_range_flags": bool(scorer.handcrafted)},
                         score_columns={"on_grid": list(schema.targets),
                                        "continuous": [f"{t}{CONTINUOUS_SUFFIX}" for t in schema.targets]})
        writer.publish(record)
    return record


def summary(record: dict[str, Any]) -> str:
    flagged = {k: v for k, v in record["scores"]["flags"].items() if v}
    model = record["model"]
    smoke = ", a CPU smoke artifact: not gate-valid" if model.get("smoke") else ""
    return (f"scored {record['scores']['scored']} of {record['scores']['rows']} essays with {model['arm']} "
            f"({model['artifact']}, md5 {model['md5'] or model['md5_on_disk']}{smoke}); flags {flagged or 'none'} -> "
            f"{record['scores']['file']} (+{PROVENANCE_SUFFIX})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aes-gate", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score new essays with a final model",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    score.add_argument("input", type=Path, help="CSV or parquet file of essays")
    score.add_argument("--out", type=Path, required=True, help="scores file (.csv, or .parquet)")
    score.add_argument("--model", help="arm name (artifact under --models-dir) or an artifact directory; default: "
                       "the decision record's chosen arm, or the reference (xgb) when the verdict is defer")
    score.add_argument("--text-column", help="column holding the essay text (default: the schema's)")
    score.add_argument("--id-column", help="column holding essay ids (default: `id` when present)")
    score.add_argument("--prompt-column", help="column holding the prompt (default: the schema's, when present)")
    score.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="essays read and scored at a time")
    score.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where the arms' artifacts live")
    score.add_argument("--decision", type=Path, default=DECISION, help="the decision record (metrics JSON)")
    score.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar (default: when the input has more than one batch)")
    return parser


def run(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    record = score_file(args.input, args.out, model=args.model, text_column=args.text_column,
                        id_column=args.id_column, prompt_column=args.prompt_column, batch_size=args.batch_size,
                        models_dir=args.models_dir, decision=args.decision, progress=args.progress)
    print(summary(record))


def main(argv: Sequence[str] | None = None) -> None:
    run_stage(lambda: run(argv))


if __name__ == "__main__":
    main()
