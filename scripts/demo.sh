#!/usr/bin/env bash
# The main job: part A on a built-in SYNTHETIC default, with nothing to download; part B on a real
# model (downloaded once into the cache, sha256-verified; skipped with a message when offline).
# Part A:
#   1. synth:    a small Qwen-VL-Chat-shaped BF16 checkpoint (the reference's tiny config) with the
#                bit-exact synthetic weights, as sharded torch .bin files like the official release;
#   2. inspect:  what is inside it (layout checked against config.json);
#   3. convert:  GPTQ Int4 (bits 4, group 128, sym, damp 0.01, true-sequential), calibrated on the
#                8 real photos + captions of fixtures/calibration (from the scikit-image and
#                scikit-learn wheels), images through the ViT;
#   4. validate: BF16 vs Int4 on the same pairs, teacher-forced: KL, top-1/top-5 agreement,
#                perplexity, per-block drift, with an HTML report.
# Part B (issue 15.6; SQUINT_DEMO_REAL=0 skips it):
#   5. fetch:    Qwen2.5-Coder-0.5B-Instruct (GGUF) and the Canterbury texts (scripts/models.sh);
#   6. convert:  GPTQ to a Q4_0 GGUF llama.cpp runs (llama.cpp's grid, act-order with static groups,
#                the Hessian shrunk halfway to its diagonal: docs/QUALITY.md "Hessian shrinkage"),
#                calibrated on 4 windows of 256 tokens of lcet10.txt (about 6 minutes on a 2-core Zen 1);
#   7. perplexity of the original and of the Int4 file on held-out text (alice29.txt, 3 windows of 512);
#   8. run:      one short answer from the Int4 file.
set -euo pipefail
cd "$(dirname "$0")/.."
SQUINT=${SQUINT:-.build/release/squint}
OUT=${1:-/tmp/squint-demo}
rm -rf "$OUT"; mkdir -p "$OUT"
echo "== Part A (SYNTHETIC weights)"
echo "Note: part A's weights are SYNTHETIC (random, docs/SYNTHETIC_WEIGHTS.md): the pipeline is real, but"
echo "      the model's answers and perplexities are noise by design. Point the same commands at the real"
echo "      Qwen-VL-Chat folder for meaningful numbers (docs/QUANTIZING.md)."
echo; echo "== 1. synth: tiny Qwen-VL-Chat, seed 20240611 -> $OUT/bf16"
"$SQUINT" synth --config fixtures/qwen-vl-tiny/config.json --seed 20240611 --format bin \
  --shard-size 39747574 --vocab fixtures/tokenizer/qwen.tiktoken -o "$OUT/bf16"
echo; echo "== 2. inspect"
"$SQUINT" inspect "$OUT/bf16" --summary
echo; echo "== 3. convert: GPTQ Int4 calibrated on fixtures/calibration/pairs.jsonl -> $OUT/int4.sq4"
"$SQUINT" convert "$OUT/bf16" --calib fixtures/calibration/pairs.jsonl -o "$OUT/int4.sq4"
"$SQUINT" inspect "$OUT/int4.sq4" --summary
echo; echo "== 4. validate: drift of the Int4 model from BF16 (report: $OUT/report/index.html)"
"$SQUINT" validate "$OUT/bf16" "$OUT/int4.sq4" --eval fixtures/calibration/pairs.jsonl \
  --vocab fixtures/tokenizer/qwen.tiktoken --report "$OUT/report"

echo; echo "== Part B: a REAL model, Qwen2.5-Coder-0.5B-Instruct (GGUF), GPTQ to Int4 (Q4_0)"
if [ "${SQUINT_DEMO_REAL:-1}" = 0 ]; then echo "skipped (SQUINT_DEMO_REAL=0)"; exit 0; fi
CACHE="${SQUINT_CACHE:-$HOME/.cache/squint}"
echo "== 5. fetch (once; sha256-verified) into $CACHE"
if ! bash scripts/models.sh --only 0.5b --only texts; then
  echo "skipped part B: the real model could not be fetched (offline?). Part A above is complete."
  exit 0
fi
MODEL="$CACHE/models/qwen2.5-coder-0.5b-instruct.gguf"
TEXTS="$CACHE/texts"
echo; echo "== 6. convert: GPTQ, calibrated on lcet10.txt (4 x 256 tokens) -> $OUT/qwen0.5b-gptq-q4_0.gguf"
"$SQUINT" convert "$MODEL" --format gguf --method gptq --calib-text "$TEXTS/lcet10.txt" --samples 4 --sample-tokens 256 \
  --grid llama-q4_0 --desc-act --hessian-shrink 0.5 -o "$OUT/qwen0.5b-gptq-q4_0.gguf" | grep -v '^  blk\.'
ls -l "$MODEL" "$OUT/qwen0.5b-gptq-q4_0.gguf"
echo; echo "== 7. perplexity on held-out text (alice29.txt, 3 windows of 512 tokens; lower is better)"
echo "-- original (the shipped Q5_0/Q8_0 file, run as float32):"
"$SQUINT" perplexity "$MODEL" "$TEXTS/alice29.txt" --chunks 3 | grep -E "Final estimate|tokens/s"
echo "-- GPTQ Int4 (Q4_0):"
"$SQUINT" perplexity "$OUT/qwen0.5b-gptq-q4_0.gguf" "$TEXTS/alice29.txt" --chunks 3 | grep -E "Final estimate|tokens/s"
echo; echo "== 8. run: one answer from the Int4 model"
"$SQUINT" run "$OUT/qwen0.5b-gptq-q4_0.gguf" --greedy --max-new-tokens 48 \
  --prompt "Write a one-line Python expression that reverses a string s."
echo
