#!/usr/bin/env bash
# Prints the study's table for one model from the logs in the cache (docs/QUALITY.md), as markdown:
# llama-perplexity's PPL, PPL ratio, KL mean and p99, same top-1, bits per weight over all tensors
# (`squint inspect --json`: gguf.bits_per_weight) and the conversion wall time (Squint: OUT.log.json;
# llama.cpp: the log's `real`; machine shared, so compare CPU time in the logs when it matters).
# Usage: scripts/quality/table.sh [--tsv] MODEL_KEY [VARIANT ...]   (default: every variant run)
#   --tsv: tab-separated `variant bits_per_weight kl_mean kl_err ppl_ratio top1 kl_p99` rows (plot.py, valtable.py)
set -euo pipefail
. "$(dirname "$0")/common.sh"
TSV=0; [ "${1:-}" = --tsv ] && { TSV=1; shift; }
M=$1; shift
cd "$Q"
variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then   # every variant with a log, in this order
  for v in llama-q4_0 llama-q4_0-imatrix llama-q4_1 llama-q4_k_m rtn-q4_0 rtn-q4_0-llamagrid gptq-q4_0-g32 \
           gptq-q4_0-g32-llamagrid gptq-q4_0-g32-llamagrid-act rtn-q4_1 gptq-q4_1-g32 gptq-q4_1-g32-act \
           gptq-q4_0-g32-llamagrid-act+imat-down012 imat+gptq-down012 gptq-q4_0-g32-llamagrid-act-32w \
           llama-q4_0-imatrix32 gptq-q4_0-g32-llamagrid-act-shrink0.5 gptq-q4_0-g32-llamagrid-act-ss-shrink0.5 \
           gptq-q4_0-g32-llamagrid-act-ssimat-shrink0.5 gptq-q4_0-g32-llamagrid-act-damp1-ssimat-shrink0.5; do
    [ -f "ppl-$M-$v.log" ] && variants+=("$v")
  done
fi
val() { grep -m1 "$1" "$2" | awk -F: '{print $2}' | xargs; }
[ $TSV = 1 ] || echo "| variant | PPL ± err | PPL / PPL(F16) | KL mean ± err | KL p99 | same top-1 | bits/weight | conversion |"
[ $TSV = 1 ] || echo "|---|---|---|---|---|---|---|---|"
base=$(grep -m1 "Final estimate" "$M-base.log" | sed 's/.*PPL = //')
[ $TSV = 1 ] || echo "| F16 original | $base | 1 | 0 | 0 | 100 % | 16 | |"
for v in "${variants[@]}"; do
  f=ppl-$M-$v.log
  grep -q '^step: ok' "$f" 2>/dev/null || { [ $TSV = 1 ] || echo "| $v | (not run) |||||||"; continue; }
  ppl=$(val "Mean PPL(Q)  " "$f"); ratio=$(val "Mean PPL(Q)/PPL(base)" "$f")
  kl=$(val "Mean    KLD" "$f"); p99=$(val "99.0%   KLD" "$f"); top=$(val "^Same top p" "$f")
  bpw=$("$SQUINT" inspect "$M-$v.gguf" --json 2>/dev/null \
        | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["gguf"]["bits_per_weight"])' 2>/dev/null || echo "?")
  if [ $TSV = 1 ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$v" "$bpw" "${kl%% ±*}" "${kl##*± }" "${ratio%% ±*}" "${top%% ±*}" "$p99"; continue
  fi
  if [ -f "$M-$v.gguf.log.json" ]; then
    conv=$(python3 -c 'import json,sys; print("%.0f s" % json.load(open(sys.argv[1]))["seconds"])' "$M-$v.gguf.log.json")
  else
    case $v in llama-q4_0) l=$M-q4_0.log ;; llama-q4_1) l=$M-q4_1.log ;; llama-q4_k_m) l=$M-q4_k_m.log ;;
               llama-q4_0-imatrix) l=$M-q4_0_imat.log ;; llama-q4_0-imatrix32) l=$M-q4_0_imat32.log ;; *) l= ;; esac
    conv=$( [ -n "$l" ] && grep -m1 '^real' "$l" | awk '{print $2}' || echo "")
    [ "$v" = llama-q4_0-imatrix ] && conv="$conv (+ imatrix $(grep -m1 '^real' "$M-imatrix.log" | awk '{print $2}'))"
    [ "$v" = llama-q4_0-imatrix32 ] && conv="$conv (+ imatrix $(grep -m1 '^real' "$M-imatrix32.log" | awk '{print $2}'))"
  fi
  echo "| $v | $ppl | $ratio | $kl | $p99 | $top | $bpw | $conv |"
done
