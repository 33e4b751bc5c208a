#!/usr/bin/env bash
# The main job on a built-in default, with nothing to download: write a small Qwen-VL-Chat-shaped
# checkpoint with the bit-exact synthetic weights (the reference's tiny config, seed 20240611) as
# sharded torch .bin files, then inspect it (layout check against config.json, per-tensor stats)
# and diff it against the same model written as safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
SQUINT=${SQUINT:-.build/release/squint}
OUT=${1:-/tmp/squint-demo}
rm -rf "$OUT"; mkdir -p "$OUT"
echo "== synth: tiny Qwen-VL-Chat (fixtures/qwen-vl-tiny/config.json), seed 20240611 -> $OUT/bf16-bin"
"$SQUINT" synth --config fixtures/qwen-vl-tiny/config.json --seed 20240611 --format bin \
  --shard-size 39747574 -o "$OUT/bf16-bin"
echo "== synth: the same model as one safetensors file -> $OUT/bf16-st"
"$SQUINT" synth --config fixtures/qwen-vl-tiny/config.json --seed 20240611 --format safetensors -o "$OUT/bf16-st"
echo "== inspect (summary, stats of the first LLM block)"
"$SQUINT" inspect "$OUT/bf16-bin" --summary
"$SQUINT" inspect "$OUT/bf16-bin" --stats --filter '^transformer\.h\.0\.'
echo "== inspect --diff: .bin shards vs safetensors (same names, shapes, dtypes expected)"
"$SQUINT" inspect "$OUT/bf16-bin" --diff "$OUT/bf16-st/model.safetensors"
