#!/usr/bin/env bash
# The main job on a built-in default, with nothing to download:
#   1. synth:    a small Qwen-VL-Chat-shaped BF16 checkpoint (the reference's tiny config) with the
#                bit-exact synthetic weights, as sharded torch .bin files like the official release;
#   2. inspect:  what is inside it (layout checked against config.json);
#   3. convert:  GPTQ Int4 (bits 4, group 128, sym, damp 0.01, true-sequential), calibrated on the
#                8 real photos + captions of fixtures/calibration (from the scikit-image and
#                scikit-learn wheels), images through the ViT;
#   4. validate: BF16 vs Int4 on the same pairs, teacher-forced: KL, top-1/top-5 agreement,
#                perplexity, per-block drift, with an HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
SQUINT=${SQUINT:-.build/release/squint}
OUT=${1:-/tmp/squint-demo}
rm -rf "$OUT"; mkdir -p "$OUT"
echo "Note: the demo's weights are SYNTHETIC (random, docs/SYNTHETIC_WEIGHTS.md): the pipeline is real, but"
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
