#!/usr/bin/env bash
# Why-analysis (docs/QUALITY.md): score files on held-out text from the CALIBRATION text's own domain,
# lcet10.txt from byte 300,000 on (calibration used only its first 32 windows of 512 tokens, about the
# first 70 KB), against the F16 logits on that text. Usage: scripts/quality/domain.sh MODEL_KEY VARIANT...
set -euo pipefail
. "$(dirname "$0")/common.sh"
M=$1; shift
[ -f "$Q/lcet10-tail.txt" ] || tail -c +300001 "$CALIB" > "$Q/lcet10-tail.txt"
step "$M-base-lcet10tail.log" "$B/llama-perplexity" -m "$M-f16.gguf" -f lcet10-tail.txt -c 512 --chunks "$CHUNKS" -t 2 \
  --kl-divergence-base "$M-f16-lcet10tail-c512-$CHUNKS.kld"
for V in "$@"; do
  step "ppl-lcet10tail-$M-$V.log" "$B/llama-perplexity" -m "$M-$V.gguf" -f lcet10-tail.txt -c 512 --chunks "$CHUNKS" -t 2 \
    --kl-divergence-base "$M-f16-lcet10tail-c512-$CHUNKS.kld" --kl-divergence
done
