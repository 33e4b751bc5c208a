#!/usr/bin/env bash
# Faults during long jobs (issue 12.3): N random kill -9 points during `squint convert` (SQ4 and
# --format autogptq) and `squint synth` on the tiny model, each followed by the same command with
# --resume (convert) or again (synth). Passes when, for every trial:
#   - right after the kill, the output path holds nothing, or the complete output (the kill came after
#     the final rename), never a partial file;
#   - the rerun succeeds and its output is byte-identical (sha256 of every file) to an uninterrupted
#     run's; convert's logs (*.log.json, convert_log.json) hold timings and are left out;
#   - nothing is left beside the output afterwards (no temporary file, work or staging folder).
# Then the other faults: a read-only output folder and SIGINT (a one-line error naming the path,
# exit 1, nothing at the output path).
#
#   scripts/faults.sh [N] [SEED]      (default N=12; SEED for $RANDOM, printed so a run can be repeated)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-12}
SEED=${2:-$(date +%s)}
RANDOM=$SEED
SQUINT=${SQUINT:-$ROOT/.build/release/squint}
OUT=${FAULTS_DIR:-/tmp/squint-faults-$$}
if [ ! -x "$SQUINT" ]; then echo "building squint (release)..."; swift build -c release -j 2 --product squint >/dev/null || exit 1; fi
rm -rf "$OUT"; mkdir -p "$OUT"
echo "faults: N=$N seed=$SEED squint=$SQUINT work=$OUT"

CALIB=$OUT/calib/pairs.jsonl
mkdir -p "$OUT/calib"
head -n 2 fixtures/calibration/pairs.jsonl >"$CALIB"      # 2 pairs keep a convert to seconds
cp -r fixtures/calibration/images "$OUT/calib/"

# run_job JOB OUT [EXTRA...]: replaces the calling (sub)shell with squint, so that `run_job ... &` gives
# squint's own pid to kill; in the foreground call it inside ( ).
run_job() {
    local job=$1 out=$2; shift 2
    case $job in
        synth) exec "$SQUINT" synth --config fixtures/qwen-vl-tiny/config.json --seed 20240611 --format bin \
                   --shard-size 39747574 --vocab fixtures/tokenizer/qwen.tiktoken -o "$out" ;;
        sq4) exec "$SQUINT" convert "$OUT/bf16" --calib "$CALIB" --format squint -o "$out" "$@" ;;
        autogptq) exec "$SQUINT" convert "$OUT/bf16" --calib "$CALIB" --format autogptq -o "$out" "$@" ;;
    esac
}
rerun_args() { [ "$1" = synth ] || echo --resume; }

# sha256 of a file, or of every file of a folder (names included), logs left out.
digest() {
    if [ -d "$1" ]; then (cd "$1" && find . -type f ! -name 'convert_log.json' | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16
    elif [ -f "$1" ]; then sha256sum "$1" | cut -c1-16
    else echo none; fi
}
# Names beside an output other than the output itself and its log.
leftovers() { (cd "$(dirname "$1")" && ls -A | grep -v -x -e "$(basename "$1")" -e "$(basename "$1").log.json" || true); }

(run_job synth "$OUT/bf16") >/dev/null 2>&1 || { echo "synth failed"; exit 1; }
declare -A REF DUR
mkdir -p "$OUT/ref"
for job in synth sq4 autogptq; do
    s=$(date +%s.%N)
    (run_job $job "$OUT/ref/$job") >/dev/null 2>&1 || { echo "reference $job failed"; exit 1; }
    DUR[$job]=$(echo "$(date +%s.%N) - $s" | bc)
    REF[$job]=$(digest "$OUT/ref/$job")
    printf 'reference %-9s %6.2f s  %s\n' "$job" "${DUR[$job]}" "${REF[$job]}"
done

pass=0; fail=0
jobs=(sq4 autogptq synth)
for i in $(seq 1 "$N"); do
    job=${jobs[$(( (i - 1) % 3 ))]}
    dir=$OUT/t$i; mkdir -p "$dir/out"; out=$dir/out/$job
    # A kill point uniformly in [0, 1.1 x the uninterrupted run's time), in milliseconds.
    ms=$(echo "${DUR[$job]} * 1100 * $RANDOM / 32768" | bc)
    run_job $job "$out" >"$dir/run1.log" 2>&1 &
    pid=$!
    sleep "$(echo "scale=3; $ms / 1000" | bc)"
    kill -9 "$pid" 2>/dev/null && killed=yes || killed=no
    wait "$pid" 2>/dev/null
    after=$(digest "$out")
    problems=""
    if [ "$after" != none ] && [ "$after" != "${REF[$job]}" ]; then problems+=" partial-output-after-kill"; fi
    if [ "$after" = none ]; then
        (run_job $job "$out" $(rerun_args $job)) >"$dir/run2.log" 2>&1 || problems+=" rerun-failed($(tail -n 1 "$dir/run2.log"))"
    fi
    final=$(digest "$out")
    [ "$final" = "${REF[$job]}" ] || problems+=" output-differs($final)"
    left=$(leftovers "$out" | tr '\n' ' ')
    [ -z "$left" ] || problems+=" leftovers($left)"
    resumed=$(grep -o 'resumed at block [0-9]*' "$dir/run2.log" 2>/dev/null || true)
    if [ -z "$problems" ]; then pass=$((pass + 1)); verdict=ok; else fail=$((fail + 1)); verdict="FAIL$problems"; fi
    printf 'trial %2d %-9s kill at %5d ms (killed=%s, output after kill: %s) %-20s %s\n' "$i" "$job" "$ms" "$killed" \
        "$([ "$after" = none ] && echo nothing || echo complete)" "${resumed:-}" "$verdict"
done
echo "kill -9: $pass of $N trials passed"

# Read-only output folder (a read-only tmpfs when running as root, which ignores folder permissions):
# one line naming the path, exit 1, nothing written.
other=0
mkdir -p "$OUT/ro"
if [ "$(id -u)" = 0 ]; then mount -t tmpfs -o ro,size=1m squint-faults-ro "$OUT/ro" || echo "cannot mount a tmpfs"; else chmod 555 "$OUT/ro"; fi
for job in sq4 autogptq synth; do
    (run_job $job "$OUT/ro/out") >"$OUT/ro.log" 2>&1
    rc=$?; lines=$(grep -c . "$OUT/ro.log")
    if [ $rc = 1 ] && [ "$lines" = 1 ] && grep -q "$OUT/ro" "$OUT/ro.log" && [ -z "$(ls -A "$OUT/ro")" ]; then
        echo "read-only folder ($job): ok: $(cat "$OUT/ro.log")"
    else other=1; echo "read-only folder ($job): FAIL (exit $rc, $lines lines): $(cat "$OUT/ro.log")"; fi
done
if [ "$(id -u)" = 0 ]; then umount "$OUT/ro"; else chmod 755 "$OUT/ro"; fi

# Disk full (root only: a 4 MiB tmpfs holds the work folder and the output): exit 1 with an error
# naming a path on it, nothing at the output path; after growing the tmpfs, --resume gives the
# reference bytes.
if [ "$(id -u)" = 0 ]; then
    for job in sq4 autogptq; do
        mkdir -p "$OUT/full-$job"; mount -t tmpfs -o size=4m squint-faults-full "$OUT/full-$job"
        out=$OUT/full-$job/out
        (run_job $job "$out") >"$OUT/full.log" 2>&1; rc=$?
        after=$(digest "$out")
        mount -o remount,size=256m "$OUT/full-$job"
        (run_job $job "$out" --resume) >"$OUT/full2.log" 2>&1
        if [ $rc = 1 ] && grep -q "$OUT/full-$job" "$OUT/full.log" && [ "$after" = none ] && [ "$(digest "$out")" = "${REF[$job]}" ]; then
            echo "disk full ($job): ok: $(grep error "$OUT/full.log" | head -n 1)"
        else other=1; echo "disk full ($job): FAIL (exit $rc, output after: $after): $(cat "$OUT/full.log" | tr '\r' '\n' | grep -v '^convert' | tail -n 3) / resume: $(tail -n 2 "$OUT/full2.log")"; fi
        umount "$OUT/full-$job"
    done
fi

# SIGINT in the middle of each job: one line naming the output, exit 1, nothing at the output path;
# then the rerun (--resume for convert) still gives the reference bytes.
for job in sq4 autogptq synth; do
    out=$OUT/int/$job; mkdir -p "$OUT/int"
    run_job $job "$out" >"$OUT/int-$job.log" 2>&1 &
    pid=$!
    # Mid-run: once convert's first block is saved, or synth's staging folder exists.
    if [ $job = synth ]; then mark="$OUT/int/.synth.partial-$pid"; else mark="$OUT/int/.$job.squint-convert/block-0.safetensors"; fi
    for _ in $(seq 1 3000); do [ -e "$mark" ] || ! kill -0 "$pid" 2>/dev/null && break; sleep 0.01; done
    kill -INT "$pid"; wait "$pid"; rc=$?
    err=$(grep -v '^\s*$' "$OUT/int-$job.log" | grep -v 'convert \[\|synth \[' | tr '\r' '\n' | grep -c 'error')
    after=$(digest "$out")
    (run_job $job "$out" $(rerun_args $job)) >/dev/null 2>&1
    if [ $rc = 1 ] && [ "$err" = 1 ] && grep -q "$out" "$OUT/int-$job.log" && [ "$after" = none ] && [ "$(digest "$out")" = "${REF[$job]}" ]; then
        echo "SIGINT ($job): ok: $(grep error "$OUT/int-$job.log" | tr '\r' '\n' | grep error | tail -n 1)"
    else other=1; echo "SIGINT ($job): FAIL (exit $rc): $(tail -c 300 "$OUT/int-$job.log")"; fi
done

[ "${KEEP:-0}" = 1 ] || rm -rf "$OUT"
[ $fail = 0 ] && [ $other = 0 ]
