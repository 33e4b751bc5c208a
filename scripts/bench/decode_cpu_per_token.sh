#!/usr/bin/env bash
# CPU seconds per decoded token at 1 thread (docs/PERFORMANCE.md): a run of 129 greedy tokens minus a
# run of 1, over 128, for Squint's SQ4 file with float32 x, with --int8-activations (Q4 x Q8 block
# linears, Q8 x Q8 lm_head), and llama.cpp's llama-completion on a Q4_0 file of the same model. CPU
# time is not inflated by time slices lost to other processes, so this compares on a busy machine.
# Usage: scripts/bench/decode_cpu_per_token.sh SQ4 Q4_0.gguf   (release build; scripts/llamacpp.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
SQ4=$1; GG=$2
C=${SQUINT_CACHE:-$HOME/.cache/squint}; B=$C/llama.cpp/bin; S=${S:-.build/release/squint}
P="Write a Python class for a binary search tree with insert, delete and search methods, and explain each method."
cpu() { /usr/bin/time -f "%U %S" "$@" 2>&1 >/dev/null | tail -1 | awk '{print $1 + $2}'; }
for round in 1 2; do
  for mode in float32 int8 llama; do
    for n in 1 129; do
      case $mode in
        float32) t[$n]=$(cpu $S run "$SQ4" --prompt "$P" --greedy --max-new-tokens $n --threads 1) ;;
        int8) t[$n]=$(cpu $S run "$SQ4" --prompt "$P" --greedy --max-new-tokens $n --threads 1 --int8-activations) ;;
        llama) t[$n]=$(OMP_WAIT_POLICY=passive cpu $B/llama-completion -m "$GG" -p "$P" -n $n -t 1 -tb 1 --temp 0 --ignore-eos -no-cnv --no-warmup) ;;
      esac
    done
    awk -v a="${t[1]}" -v b="${t[129]}" -v m=$mode -v r=$round 'BEGIN { printf "round %d %-8s %.2f ms CPU per token (%.1f tok/s of CPU); runs %.2f s / %.2f s\n", r, m, (b - a) / 128 * 1000, 128 / (b - a), a, b }'
  done
done
