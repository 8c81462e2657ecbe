#!/usr/bin/env bash
# The main job: set up the environment and regenerate every stage output with `dvc repro`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
dvc repro "$@"
cat reports/summary.txt  # the first screen (report stage): verdict, one row per arm × scheme, the report's path
