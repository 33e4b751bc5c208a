#!/usr/bin/env bash
# Scores one file of the study with Squint's own runtime (`squint validate`, the second judge): the same
# evaluation windows as ppl.sh, KL against the model's F16 GGUF computed by Squint in float32.
# Usage: scripts/quality/val.sh MODEL_KEY VARIANT
#   reads $Q/MODEL_KEY-f16.gguf and $Q/MODEL_KEY-VARIANT.gguf, writes $Q/val-MODEL_KEY-VARIANT.json
#   (validate's --json, docs/VALIDATE_JSON.md) and its log val-MODEL_KEY-VARIANT.log (skipped when done).
set -euo pipefail
. "$(dirname "$0")/common.sh"
M=$1; V=$2
step "val-$M-$V.log" bash -c "'$SQUINT' validate '$M-f16.gguf' '$M-$V.gguf' --text '$EVAL' --chunks $CHUNKS \
  --json > 'val-$M-$V.json.part' && mv 'val-$M-$V.json.part' 'val-$M-$V.json'"
