#!/usr/bin/env bash
# Create .venv and install the project with its test tools (CPU-only torch, pinned).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install --quiet --upgrade pip
pip install --quiet -e '.[test]'
