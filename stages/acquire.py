"""Stage `acquire`: copy the corpus CSV into `data/raw/` from a directory, a (password-protected) zip or a URL
to download the zip from, verifying sha256 on the way (`stages.lib.data.corpus_source`)."""

from __future__ import annotations

from stages.lib.core.config import load_params
from stages.lib.core.errors import run_stage
from stages.lib.core.paths import RAW_CORPUS
from stages.lib.data.corpus_source import acquire


def main() -> None:
    params = load_params()
    origin = acquire(params.corpus)
    print(f"acquired {RAW_CORPUS} from {origin}")


if __name__ == "__main__":
    run_stage(main)
