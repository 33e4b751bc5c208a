#!/usr/bin/env bash
# The whole quality study (docs/QUALITY.md) in priority order, one job at a time, every step skipped
# when its log says it finished: llama.cpp's files (llama.sh), Squint's conversions (squint.sh), then
# llama-perplexity on each (ppl.sh). Then `table.sh` prints the tables and `plot.py` draws the figure.
# Usage: scripts/quality/study.sh [sm] [q15] [q05]   (default: all three, in that order)
set -euo pipefail
D="$(dirname "$0")"
. "$D/common.sh"
GPTQ=(--method gptq --calib-text "$CALIB" --samples 16 --sample-tokens 512)
run() { "$@" || echo "study.sh: FAILED (continuing): $*" >&2; }
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(sm q15 q05)
for M in "${models[@]}"; do
  IC=32; [ "$M" = q15 ] && IC=16      # the 1.5B: imatrix on the same 16 windows GPTQ uses (time)
  run bash "$D/llama.sh" "$M" "$IC"
  # The goal rows first (issue 15.4: GPTQ Q4_0 vs imatrix Q4_0), then the rest.
  run bash "$D/squint.sh" "$M" gptq-q4_0-g32-llamagrid-act "${GPTQ[@]}" --grid llama-q4_0 --desc-act
  for v in llama-q4_0 llama-q4_0-imatrix gptq-q4_0-g32-llamagrid-act; do run bash "$D/ppl.sh" "$M" "$v"; done
  run bash "$D/squint.sh" "$M" rtn-q4_0-llamagrid --method rtn --grid llama-q4_0
  run bash "$D/squint.sh" "$M" gptq-q4_1-g32-act "${GPTQ[@]}" --gguf-type q4_1 --desc-act
  run bash "$D/squint.sh" "$M" rtn-q4_1 --method rtn --gguf-type q4_1
  for v in llama-q4_k_m llama-q4_1 rtn-q4_0-llamagrid gptq-q4_1-g32-act rtn-q4_1; do run bash "$D/ppl.sh" "$M" "$v"; done
  [ "$M" = q15 ] && continue          # the 1.5B: the rows above only (time)
  run bash "$D/squint.sh" "$M" gptq-q4_0-g32-llamagrid "${GPTQ[@]}" --grid llama-q4_0
  run bash "$D/squint.sh" "$M" gptq-q4_0-g32 "${GPTQ[@]}"
  run bash "$D/squint.sh" "$M" rtn-q4_0 --method rtn
  run bash "$D/squint.sh" "$M" gptq-q4_1-g32 "${GPTQ[@]}" --gguf-type q4_1
  for v in gptq-q4_0-g32-llamagrid gptq-q4_0-g32 rtn-q4_0 gptq-q4_1-g32; do run bash "$D/ppl.sh" "$M" "$v"; done
done
