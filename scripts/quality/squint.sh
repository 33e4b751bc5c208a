#!/usr/bin/env bash
# One Squint conversion of the quality study: `squint convert` (release build) of the model's F16
# original (written by llama.sh) to GGUF. Skipped when done.
# Usage: scripts/quality/squint.sh MODEL_KEY VARIANT [convert options...]
#   writes $Q/MODEL_KEY-VARIANT.gguf (+ .log.json) and the log $Q/conv-MODEL_KEY-VARIANT.log
set -euo pipefail
. "$(dirname "$0")/common.sh"
M=$1; V=$2; shift 2
[ -x "$SQUINT" ] || { echo "squint.sh: no release build at $SQUINT (swift build -c release)" >&2; exit 1; }
if [ -f "$Q/$M-$V.gguf.log.json" ] && [ -f "$Q/$M-$V.gguf" ]; then echo "skip (done): $Q/$M-$V.gguf"; exit 0; fi
step "conv-$M-$V.log" "$SQUINT" convert "$M-f16.gguf" --format gguf "$@" -o "$M-$V.gguf"
