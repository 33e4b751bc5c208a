#!/usr/bin/env bash
# Decode and prefill of the real GGUF originals, Squint against llama.cpp, interleaved (docs/PERFORMANCE.md,
# "Decode kernels and decoder decode"). Needs a release build and the cache that scripts/models.sh and
# scripts/llamacpp.sh fill. Prints: squint bench --only decode at 1 and 2 threads; squint run (536-token
# prompt, 128 greedy tokens) on the 0.5B and 1.5B at 1 and 2 threads; llama-bench pp512/tg128; two rounds;
# then CPU seconds per decoded token at 1 thread for both (a run of 129 tokens minus a run of 1, over 128),
# which time slices lost to other processes do not inflate.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/common.sh
for round in 1 2; do
  for t in 1 2; do log "squint bench decode t$t round $round"; $S bench --threads "$t" --only decode 2>&1; done
  for m in qwen2.5-coder-0.5b-instruct.gguf qwen2.5-coder-1.5b-instruct-q4_k_m.gguf; do
    for t in 1 2; do
      log "squint run $m t$t round $round"
      $S run "$M/$m" --prompt "$P" --greedy --max-new-tokens 128 --threads "$t" --json > "$TMP/run.json" 2>/dev/null
      rate "$TMP/run.json"
    done
  done
  log "llama-bench (OMP_WAIT_POLICY=passive) round $round"
  OMP_WAIT_POLICY=passive "$B/llama-bench" -m "$M/qwen2.5-coder-0.5b-instruct.gguf" -m "$M/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" \
    -p 512 -n 128 -t 1,2 -r 2 -o md 2>/dev/null
done
log "CPU time per decoded token, 0.5B, 1 thread"
for n in 1 129; do
  /usr/bin/time -f "squint n=$n cpu %U user %S sys %e wall" $S run "$M/qwen2.5-coder-0.5b-instruct.gguf" --prompt "$P" --greedy \
    --max-new-tokens $n --threads 1 --json 2>&1 >/dev/null | grep "^squint"
  /usr/bin/time -f "llama n=$n cpu %U user %S sys %e wall" "$B/llama-completion" -m "$M/qwen2.5-coder-0.5b-instruct.gguf" \
    -f "$TMP/prompt.txt" -n $n -t 1 -tb 1 --temp 0 --ignore-eos -no-cnv --no-warmup 2>&1 >/dev/null | grep "^llama n="
done
log end
