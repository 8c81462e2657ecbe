#!/usr/bin/env bash
# Create .venv with a supported Python (3.11 or 3.12) and install exactly the pinned environment
# (requirements.lock: every package at the version the committed evidence was made with, torch's CPU build),
# then the project itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
if [ -z "$PYTHON" ] || ! "$PYTHON" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
  echo "error: aes-gate needs Python 3.11 or 3.12 (found: ${PYTHON:-none}$([ -n "$PYTHON" ] && "$PYTHON" -c 'import sys; print(f" {sys.version.split()[0]}")')); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
  echo "error: .venv was made with an unsupported Python; remove it (rm -r .venv) and run this again" >&2
  exit 2
fi
"$PYTHON" -m venv .venv
. .venv/bin/activate
pip install --quiet --upgrade "pip>=24"
if ! pip install --quiet -r requirements.lock; then
  echo "error: could not install requirements.lock; if torch==2.13.0+cpu was not found, point pip at PyTorch's CPU" \
       "index: PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu ./scripts/setup.sh" >&2
  exit 1
fi
pip install --quiet --no-deps -e .
