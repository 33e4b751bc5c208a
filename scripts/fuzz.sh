#!/usr/bin/env bash
# Fuzzes every reader (issue 12.2): builds the libFuzzer harnesses of Fuzz/ with
# -sanitize=fuzzer,address and runs each for SECONDS (default 60) on one job, starting from its
# committed seeds (fixtures/fuzz/<harness>/, read-only) plus a scratch corpus in
# Fuzz/.build-fuzz/corpus/<harness>/ that libFuzzer grows. Crashes land in
# Fuzz/.build-fuzz/findings/<harness>/ (not artifacts/, a folder SwiftPM owns in its scratch path: most of its
# subfolders vanished during a rebuild on 2026-12-06); copy each to fixtures/fuzz/<harness>/regressions/ once fixed.
#
#   scripts/fuzz.sh [SECONDS] [HARNESS...]     e.g. scripts/fuzz.sh 30 png jpeg
#   scripts/fuzz.sh --runs N [HARNESS...]      each harness until N executions (e.g. 10000000)
#   SQUINT_FUZZ_BIN=FILE scripts/fuzz.sh ...   no build: runs FILE, a squint-fuzz binary built (and copied
#                                               out of Fuzz/.build-fuzz) before, so long runs survive edits
#
# Limits: -timeout=1 (an input taking > 1 s is a hang), -rss_limit_mb=2048, -malloc_limit_mb=2048, and
# the per-harness allocation bound of FuzzHarness.allocationFactor (1 MiB + 16 x the input's size for
# every non-image reader). Prints one line per harness: executions, exec/s, cov, ft, corpus, crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=()
if [ "${1:-}" = --runs ]; then RUNS=(-runs="$2"); SECONDS_EACH=$((7 * 86400)); shift 2
else SECONDS_EACH=${1:-60}; shift || true; fi
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(safetensors shard-index torch-zip torch-legacy sq4 autogptq config json tiktoken calibration png jpeg gguf tokenizer-json kld)

if [ -n "${SQUINT_FUZZ_BIN:-}" ]; then
BIN=$SQUINT_FUZZ_BIN
[ -x "$BIN" ] || { echo "SQUINT_FUZZ_BIN=$BIN is not an executable" >&2; exit 1; }
else
echo "building Fuzz/ (release, -sanitize=fuzzer,address; the first build takes ~5 minutes)..."
build() {
    (cd Fuzz && swift build -c release -j 2 --scratch-path .build-fuzz \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
        -Xcc -fsanitize=fuzzer-no-link,address 2>&1 | grep -Ev '^\[|Cannot export local symbol')
}
# A build plan made before a source file was added to the main package can miss it (seen with
# SwiftPM 6.3: "cannot find 'X' in scope"); planning again fixes it.
if build | grep -q 'error:'; then
    rm -f Fuzz/.build-fuzz/release/description.json Fuzz/.build-fuzz/release.yaml
    build || true
fi
BIN=$ROOT/Fuzz/.build-fuzz/release/squint-fuzz
[ -x "$BIN" ] || { echo "build failed: $BIN missing" >&2; exit 1; }

fi
export SQUINT_FUZZ_FIXTURES=$ROOT/fixtures
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0}
STATUS=0
printf '%-13s %12s %8s %7s %7s %7s %s\n' harness executions exec/s cov ft corpus crashes
for h in "${HARNESSES[@]}"; do
    seeds=$ROOT/fixtures/fuzz/$h
    work=$ROOT/Fuzz/.build-fuzz/corpus/$h
    art=$ROOT/Fuzz/.build-fuzz/findings/$h
    log=$ROOT/Fuzz/.build-fuzz/logs/$h.log
    mkdir -p "$work" "$art" "$(dirname "$log")"
    dirs=("$work" "$seeds")
    [ -d "$seeds/regressions" ] && dirs+=("$seeds/regressions")
    start=$(mktemp) && touch "$start"        # findings of this run only: artifacts newer than this
    set +e
    SQUINT_FUZZ_HARNESS=$h timeout $((SECONDS_EACH + 120)) "$BIN" -max_total_time="$SECONDS_EACH" "${RUNS[@]}" -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$art/" "${dirs[@]}" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    last=$(grep -E '#[0-9]+.*cov:' "$log" | tail -1 || true)     # none when the first input is a finding
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo "?")
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo "?")
    corp=$(echo "$last" | grep -o 'corp: [0-9]*' | grep -o '[0-9]*' || echo "?")
    mkdir -p "$art"
    # libFuzzer's -timeout is wall time: a run starved of CPU (another job on the cores) reports
    # inputs that take milliseconds as hangs. Each timeout is replayed alone; one that finishes within
    # the limit is set aside in unconfirmed/ and not counted (seen 2026-12-06: six such, 1-42 ms alone).
    for t in $(find "$art" -maxdepth 1 -type f -name 'timeout-*' -newer "$start" 2>/dev/null); do
        if SQUINT_FUZZ_HARNESS=$h timeout 30 "$BIN" -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 "$t" >/dev/null 2>&1; then
            mkdir -p "$art/unconfirmed" && mv "$t" "$art/unconfirmed/"
            echo "  $h: $(basename "$t") timed out in the run but not alone (a starved run?): set aside in $art/unconfirmed/"
        fi
    done
    crashes=$(find "$art" -maxdepth 1 -type f -newer "$start" 2>/dev/null | wc -l); rm -f "$start"
    printf '%-13s %12s %8s %7s %7s %7s %s\n' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes"
    if [ "$crashes" -gt 0 ] || { [ $rc -ne 0 ] && ! grep -q 'ERROR: libFuzzer: timeout' "$log"; }; then
        STATUS=1; echo "  finding: see $log and $art/"
    fi
done
exit $STATUS
