# Shared settings of the quality study (docs/QUALITY.md); sourced by the other scripts here.
# Everything lives in the cache, never in the repository.
CACHE="${SQUINT_CACHE:-$HOME/.cache/squint}"
Q="$CACHE/quality"                 # every file of the study
B="$CACHE/llama.cpp/bin"           # scripts/llamacpp.sh
T="$CACHE/texts"                   # scripts/models.sh
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SQUINT="${SQUINT:-$REPO/.build/release/squint}"
CALIB="$T/lcet10.txt"              # calibration text (imatrix and GPTQ)
EVAL="$T/alice29.txt"              # held-out evaluation text
CHUNKS="${CHUNKS:-10}"             # windows of 512 tokens scored by llama-perplexity
NICE="nice -n 5"
# llama.cpp's OpenMP threads spin while waiting; on a shared, oversubscribed machine that collapses
# their speed (docs/REAL_MODELS.md), so they wait passively here.
export OMP_WAIT_POLICY=passive

# model key -> shipped file (scripts/models.sh)
source_of() {
  case "$1" in
    q05) echo "$CACHE/models/qwen2.5-coder-0.5b-instruct.gguf" ;;
    q15) echo "$CACHE/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" ;;
    sm)  echo "$CACHE/models/smollm2-135m-instruct-q4_1.gguf" ;;
    *) echo "unknown model key $1 (q05, q15, sm)" >&2; return 1 ;;
  esac
}

# step LOG CMD...: runs CMD (niced) with `time`, its output in $Q/LOG, unless LOG already records a
# success ("step: ok"; a finished step is never rerun: delete the log and the output to redo one).
step() {
  local log="$Q/$1"; shift
  if [ -f "$log" ] && grep -q '^step: ok' "$log"; then echo "skip (done): $log"; return 0; fi
  echo "== $(date -u +%H:%M:%S) $*"
  { echo "date: $(date -u)"; echo "command: $*"; } > "$log"
  if ( cd "$Q" && { time $NICE "$@" ; } ) >> "$log" 2>&1; then echo "step: ok" >> "$log"
  else echo "step: FAILED" >> "$log"; echo "failed: $* (log: $log)" >&2; return 1; fi
}
