"""Stage `prepare`: validate the corpus against the declared schema, normalise and de-duplicate the
text, apply the word window and prompt exclusions (`stages.lib.data.preparation`), write the prepared essays and
their texts apart (`data/prepared/`) and `metrics/data.json`."""

from __future__ import annotations

from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.data.preparation import prepare_corpus


def main() -> None:
    report = prepare_corpus(load_params())
    print(f"prepared {report['rows_out']} of {report['rows_in']} essays over {report['n_prompts']} prompts; "
          f"dropped {report['dropped']}")


if __name__ == "__main__":
    run_stage(main)
