#!/usr/bin/env bash
# Issue 15.5's speed table (docs/PERFORMANCE.md): one model, Squint `run` on its SQ4 file (float32 x and
# --int8-activations) against llama-bench on its Q4_0 GGUF, at 1 and 2 threads, interleaved, ROUNDS
# rounds (default 2). Squint: the 536-token prompt of scripts/bench/common.sh, 128 greedy tokens, wall
# clock; llama.cpp as a user runs it (its OpenMP threads spin between steps, the default): pp512, and
# tg128 at depth 536 (-d: after as many cached tokens as Squint's prompt), -r 2. With
# OMP_WAIT_POLICY=passive, as earlier runs on busy machines used, llama.cpp's 2-thread decode falls
# below its 1-thread one (docs/PERFORMANCE.md). Release build; scripts/llamacpp.sh.
# On an AVX-512 CPU, LEVELS="native avx2" also runs Squint with its AVX-512 kernels off (SQUINT_NO_AVX512=1).
# Usage: [LEVELS="native avx2"] scripts/bench/sq4_vs_llamacpp.sh SQ4 Q4_0.gguf [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
SQ4=$1; GG=$2; ROUNDS=${3:-2}
source scripts/bench/common.sh
for round in $(seq "$ROUNDS"); do
  for t in 1 2; do
    for level in ${LEVELS:-native}; do
      for x in float32 int8; do
        log "squint run $(basename "$SQ4") $x x, $t thread(s), kernels $level, round $round"
        extra=(); [ $x = int8 ] && extra=(--int8-activations)
        off=""; [ "$level" = avx2 ] && off=1
        SQUINT_NO_AVX512=$off $S run "$SQ4" --prompt "$P" --greedy --max-new-tokens 128 --threads "$t" "${extra[@]}" --json > "$TMP/run.json" 2>/dev/null
        rate "$TMP/run.json"
      done
    done
    log "llama-bench $(basename "$GG"), $t thread(s), round $round"
    "$B/llama-bench" -m "$GG" -p 512 -n 0 -t "$t" -r 2 -o md 2>/dev/null | grep -E "pp512"
    "$B/llama-bench" -m "$GG" -p 0 -n 128 -d 536 -t "$t" -r 2 -o md 2>/dev/null | grep -E "tg128"
  done
done
log end
