#!/usr/bin/env bash
# Loads an AutoGPTQ folder that `squint convert MODEL --format autogptq` wrote for a text model with
# transformers' GPTQ loader (GPTQModel's torch kernel, on the CPU) and compares its perplexity with
# `squint perplexity` on the same windows (docs/QUANTIZING.md, "Text models to SQ4 or AutoGPTQ").
# Python, torch and transformers are needed for this check only, never by Squint.
#
# Usage: scripts/check/transformers_gptq.sh FOLDER TEXT [WINDOWS]     (default 2 windows of 512 tokens)
# The virtual environment is made once in $SQUINT_TRANSFORMERS_VENV (default ~/.cache/squint/venv-transformers).
set -euo pipefail
cd "$(dirname "$0")/../.."
FOLDER=$1 TEXT=$2 N=${3:-2}
SQUINT=${SQUINT:-$PWD/.build/release/squint}
V=${SQUINT_TRANSFORMERS_VENV:-${SQUINT_CACHE:-$HOME/.cache/squint}/venv-transformers}
if [ ! -x "$V/bin/python" ]; then
  python3 -m venv "$V"
  # CPU torch first, so that nothing later pulls a CUDA build; gptqmodel without its dependencies (it
  # asks for a newer torch than the CPU build here; its own code needs none of that) and then the
  # pure-Python packages it imports.
  "$V/bin/pip" install torch==2.13.0+cpu || "$V/bin/pip" install torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu
  "$V/bin/pip" install transformers==5.25.0 optimum==2.3.0 accelerate==1.16.0 safetensors numpy
  "$V/bin/pip" install --no-deps gptqmodel==7.7.0
  "$V/bin/pip" install threadpoolctl device-smi protobuf pypcre tokenicer logbar dill defuser requests pillow
fi
ours=$("$SQUINT" perplexity "$FOLDER" "$TEXT" --ctx 512 --chunks "$N" --json)
theirs=$("$V/bin/python" scripts/check/transformers_ppl.py "$FOLDER" "$TEXT" "$N" | tail -1)   # (GPTQModel logs to stdout)
python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours = json.loads(sys.argv[1])["result"]; theirs = json.loads(sys.argv[2])
print(f"loading: missing {theirs['missing']}, unexpected {theirs['unexpected']}, mismatched {theirs['mismatched']}; q_proj kernel {theirs['kernel']}")
print(f"tokens: squint {ours['textTokens']}, transformers {theirs['textTokens']}")
for k, (a, b) in enumerate(zip(ours["perWindow"], theirs["running"]), 1):
    print(f"after window {k}: squint {a:.5f}  transformers {b:.5f}  relative difference {abs(a - b) / a:.1e}")
ok = not (theirs["missing"] or theirs["unexpected"] or theirs["mismatched"]) and ours["textTokens"] == theirs["textTokens"] \
    and abs(ours["perplexity"] - theirs["running"][-1]) <= 1e-3 * ours["perplexity"]
print("agree" if ok else "DISAGREE")
sys.exit(0 if ok else 1)
PY
