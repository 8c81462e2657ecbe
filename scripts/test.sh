#!/usr/bin/env bash
# The test command: set up the environment, lint, and run the whole test suite (unit tests and a
# small end-to-end `dvc repro` on a sample of the corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
ruff check stages tests
python -m pytest -q
