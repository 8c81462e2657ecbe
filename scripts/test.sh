#!/usr/bin/env bash
# The test command: set up the environment, lint, and run the whole test suite (unit tests and a
# small end-to-end `dvc repro` on a sample of the corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Headless Chromium for the HTML report check (Debian package); the test skips, saying why, without it.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 &&
    apt-get install -y -qq chromium >/dev/null 2>&1; }) || echo "chromium not installed: the report screenshot test will skip"
fi
. .venv/bin/activate
ruff check stages tests tools
python -m pytest -q
