#!/usr/bin/env bash
# llama.cpp's side of the quality study for one model (docs/QUALITY.md): the F16 original (the shipped
# file dequantised by llama-quantize), llama.cpp's Q4_0, Q4_1, Q4_K_M, the importance matrix from the
# calibration text and Q4_0 with it, and the F16 logits on the evaluation text that every KL is
# measured against. Steps already done are skipped.
# Usage: scripts/quality/llama.sh q05|q15|sm [IMATRIX_CHUNKS (default 32)]
set -euo pipefail
. "$(dirname "$0")/common.sh"
M=$1; IC=${2:-32}
SRC=$(source_of "$M")
mkdir -p "$Q"
step "$M-f16.log"   "$B/llama-quantize" --allow-requantize "$SRC" "$M-f16.gguf" F16 2
step "$M-base.log"  "$B/llama-perplexity" -m "$M-f16.gguf" -f "$EVAL" -c 512 --chunks "$CHUNKS" -t 2 \
  --kl-divergence-base "$M-f16-alice-c512-$CHUNKS.kld"
step "$M-q4_0.log"  "$B/llama-quantize" "$M-f16.gguf" "$M-llama-q4_0.gguf" Q4_0 2
step "$M-q4_1.log"  "$B/llama-quantize" "$M-f16.gguf" "$M-llama-q4_1.gguf" Q4_1 2
step "$M-q4_k_m.log" "$B/llama-quantize" "$M-f16.gguf" "$M-llama-q4_k_m.gguf" Q4_K_M 2
step "$M-imatrix.log" "$B/llama-imatrix" -m "$M-f16.gguf" -f "$CALIB" -c 512 --chunks "$IC" -t 2 \
  -o "$M-imatrix-lcet10-${IC}x512.gguf"
step "$M-q4_0_imat.log" "$B/llama-quantize" --imatrix "$M-imatrix-lcet10-${IC}x512.gguf" \
  "$M-f16.gguf" "$M-llama-q4_0-imatrix.gguf" Q4_0 2
