#!/usr/bin/env bash
# Build the transformers reference fixtures for SmolLM2-135M-Instruct (Q4_1 GGUF):
#   tests/fixtures/smollm2-logits.json, tests/fixtures/smollm2-tokenizer.json
# Idempotent: the venv (.deps/refenv) is created once and pip runs only when requirements.txt changed.
# Usage: scripts/reference/make-fixtures.sh [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
gguf="${1:-/root/.cache/semantic/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
venv="$root/.deps/refenv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

if [[ ! -f "$gguf" ]]; then
  echo "make-fixtures: GGUF not found: $gguf" >&2
  exit 1
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "make-fixtures: creating venv $venv"
  mkdir -p "$root/.deps"
  "${PYTHON:-python3}" -m venv "$venv"
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [[ "$want" != "$have" ]] || ! "$venv/bin/python" -c 'import torch, transformers, gguf, accelerate' 2>/dev/null; then
  echo "make-fixtures: installing $req"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
  echo "$want" > "$stamp"
else
  echo "make-fixtures: requirements already installed"
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
exec "$venv/bin/python" "$here/transformers_fixtures.py" "$gguf"
