#!/usr/bin/env bash
# Scores one file of the study with llama-perplexity on the evaluation text, KL against the model's F16
# logits (written by llama.sh). Usage: scripts/quality/ppl.sh MODEL_KEY VARIANT
#   reads $Q/MODEL_KEY-VARIANT.gguf, writes $Q/ppl-MODEL_KEY-VARIANT.log (skipped when done).
set -euo pipefail
. "$(dirname "$0")/common.sh"
M=$1; V=$2
step "ppl-$M-$V.log" "$B/llama-perplexity" -m "$M-$V.gguf" -f "$EVAL" -c 512 --chunks "$CHUNKS" -t 2 \
  --kl-divergence-base "$M-f16-alice-c512-$CHUNKS.kld" --kl-divergence
