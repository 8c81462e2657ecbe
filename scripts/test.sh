#!/usr/bin/env bash
# The test command: set up the pinned environment and the system tools the tests use (zip, headless Chromium),
# lint, and run the whole test suite (unit tests and one end-to-end `dvc repro` on a corpus sample).
# Under CI=true a test that would skip because the corpus, a tool or the browser is missing fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
missing=()
command -v zip >/dev/null 2>&1 || missing+=(zip)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing ${missing[*]} (apt-get)"
    apt-get install -y -qq "${missing[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } ||
      echo "warning: could not install ${missing[*]}; the tests that need them skip (and fail under CI=true)" >&2
  else
    echo "warning: ${missing[*]} not installed and no root apt-get here; the tests that need them skip" \
         "(and fail under CI=true)" >&2
  fi
fi
. .venv/bin/activate
ruff check stages tests tools
python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder "$@"  # side by side, a module (and its shared build)
# on one worker, the slowest modules handed out first (tests/conftest.py SLOWEST_FIRST)
