#!/usr/bin/env bash
# The full-size run (issue 12.4): the whole 19.3 GB Qwen-VL-Chat BF16 layout (synthetic weights, the
# official config, shard names and tensor-to-shard map) through synth -> inspect -> convert (killed
# with -9 once in the middle and resumed) -> inspect --verify -> validate -> run, each step under
# /usr/bin/time -v. Results (wall time, peak RSS, disk used, validate figures) go to
# docs/PERFORMANCE.md by hand; this script prints and logs them.
#
# Calibration: the first PAIRS (default 4, env SQUINT_FULLSIZE_PAIRS) of 16 pairs = the 8 photos of
# fixtures/calibration twice, the second time with all 8 captions joined as the caption (about 300
# and 550 tokens per pair). On a busy 2-core Zen 1 (2.0 GHz, AVX2 on 128-bit units) the run took
# 2 h 04 min with 4 pairs (docs/PERFORMANCE.md): ~90 s of ViT per image, ~2.5 min per block, most of
# it GPTQ's solves; more pairs add to the blocks' passes (linear in tokens).
#
# SQUINT_FULLSIZE_METHOD=rtn converts by round to nearest instead (no calibration, no kill: a quick way
# to re-measure the steps after convert, e.g. validate's memory, on a file of the same layout).
#
# Usage: scripts/fullsize.sh [WORKDIR] [KILL_AFTER_BLOCK]   (default /tmp/squint-fullsize, 12)
# Needs ~35 GB of free disk; WORKDIR is kept (delete it when done). A WORKDIR with bf16/ skips synth.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SQUINT=${SQUINT:-$REPO/.build/release/squint}
D=${1:-/tmp/squint-fullsize}
KILL_AFTER=${2:-12}
PAIRS=${SQUINT_FULLSIZE_PAIRS:-4}
METHOD=${SQUINT_FULLSIZE_METHOD:-gptq}
EVAL=${SQUINT_FULLSIZE_EVAL:-2}     # validate: the first EVAL photo-caption pairs
mkdir -p "$D/logs"
LOG=$D/logs
timed() { # name cmd...: runs cmd under /usr/bin/time -v, output to $LOG/name.{out,time}
    local name=$1; shift
    echo "== $name: $*"
    /usr/bin/time -v -o "$LOG/$name.time" "$@" > "$LOG/$name.out" 2>&1 || { echo "   exit $? (see $LOG/$name.out)"; return 1; }
    grep -E "Elapsed|Maximum resident" "$LOG/$name.time" | sed 's/^\s*/   /'
}

# 16 calibration pairs beside a link to the photos.
mkdir -p "$D/calib"
ln -sfn "$REPO/fixtures/calibration/images" "$D/calib/images"
python3 - "$REPO/fixtures/calibration/pairs.jsonl" "$D/calib/pairs16.jsonl" <<'EOF'
import json, sys
pairs = [json.loads(l) for l in open(sys.argv[1])]
joined = " ".join(p["caption"] for p in pairs)
with open(sys.argv[2], "w") as f:
    for p in pairs: f.write(json.dumps(p) + "\n")
    for p in pairs: f.write(json.dumps(dict(p, caption=joined)) + "\n")
EOF
head -"$EVAL" "$REPO/fixtures/calibration/pairs.jsonl" > "$D/calib/eval.jsonl"

[ -d "$D/bf16" ] || timed synth "$SQUINT" synth --config fixtures/qwen-vl/config-bf16.json --format bin \
    --vocab fixtures/tokenizer/qwen.tiktoken -o "$D/bf16"
du -sb "$D/bf16" | tee "$LOG/bf16.du"
timed inspect "$SQUINT" inspect "$D/bf16" --summary

# convert, killed with -9 once block KILL_AFTER is saved and 20 s into the next one.
OUT=$D/int4.sq4
WORK=$D/.int4.sq4.squint-convert
if [ ! -e "$OUT" ] && [ "$METHOD" = rtn ]; then
    timed convert-rtn "$SQUINT" convert "$D/bf16" --method rtn -o "$OUT" --json
elif [ ! -e "$OUT" ]; then
    if [ ! -e "$WORK/state.json" ]; then
        /usr/bin/time -v -o "$LOG/convert-1.time" "$SQUINT" convert "$D/bf16" --calib "$D/calib/pairs16.jsonl" \
            --max-samples "$PAIRS" -o "$OUT" > "$LOG/convert-1.out" 2>&1 &
        tpid=$!
        while kill -0 $tpid 2>/dev/null; do
            done_=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["blocksDone"])' "$WORK/state.json" 2>/dev/null || echo -1)
            [ "$done_" -ge "$KILL_AFTER" ] && break
            sleep 2
        done
        sleep 20
        du -sb "$WORK" | tee "$LOG/work-at-kill.du"
        pkill -9 -P $tpid || true
        wait $tpid || true
        echo "== convert killed with -9 at $(date -u +%H:%M:%S) after block $KILL_AFTER was saved"
        grep -E "Elapsed|Maximum resident" "$LOG/convert-1.time" | sed 's/^\s*/   /' || true
        [ -e "$OUT" ] && { echo "FAIL: output present after kill -9"; exit 1; }
        ls -la "$D" | tee "$LOG/after-kill.ls"
    fi
    timed convert-resume "$SQUINT" convert "$D/bf16" --calib "$D/calib/pairs16.jsonl" --max-samples "$PAIRS" -o "$OUT" --resume --json
fi
du -sb "$OUT" | tee "$LOG/int4.du"
timed verify "$SQUINT" inspect "$OUT" --verify --summary
# validate in two steps (docs/VALIDATING.md): the BF16 model alone records its side, then the Int4 model
# runs against that record, so the two models are never mapped together (one step peaked at 22.9 GiB).
timed validate-base "$SQUINT" validate "$D/bf16" --eval "$D/calib/eval.jsonl" --greedy-tokens 8 \
    --save-base "$D/bf16-base.safetensors" --force --json
timed validate "$SQUINT" validate "$D/bf16" "$OUT" --eval "$D/calib/eval.jsonl" --greedy-tokens 8 \
    --base "$D/bf16-base.safetensors" --report "$D/report" --json
timed run "$SQUINT" run "$OUT" --image fixtures/calibration/images/skimage_astronaut.png \
    --prompt "What is in this picture?" --greedy --max-new-tokens 8
df -B1 "$D" | tee "$LOG/df"
echo "logs: $LOG"
