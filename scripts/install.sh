#!/usr/bin/env bash
# Create .venv and install the project into it. Usage: bash scripts/install.sh [EXTRAS], e.g. "dev".
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch lies on this disk; installing it first keeps pip from pulling a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
if [ -n "${1:-}" ]; then python -m pip install -q -e ".[$1]"; else python -m pip install -q -e .; fi
