#!/usr/bin/env bash
# Rewrite requirements.lock from the working environment (.venv): run after changing pyproject.toml's
# dependencies, installing them, and re-running `dvc repro` and the tests with them.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
{
  sed -n '1,/^# Regenerate/p' requirements.lock
  pip freeze --exclude-editable
  pip freeze --all | grep -E '^setuptools=='
} > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "requirements.lock: $(grep -vc '^#' requirements.lock) packages pinned"
