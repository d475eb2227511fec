#!/usr/bin/env bash
# Install the project into .venv and start the service on the embedded default (SQLite + Chroma + offline model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec triage serve "$@"
