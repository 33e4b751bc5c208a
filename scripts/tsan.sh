#!/usr/bin/env bash
# Squint's own parallel code under ThreadSanitizer: builds the package with -sanitize=thread into its
# own build folder (.build-tsan) and runs, on 2 threads, the suites that go through it
# (scripts/tsan-suites): the thread pool (pool.c, parallelFor), the parallel row splits of the Int4,
# int8 and float32 products, prefill and decode of the models, GPTQ, `inspect --stats` on both cores,
# synth's writers and the Ctrl-C handler thread. Any report fails the run. scripts/test.sh runs this
# as its last pass; extra arguments go to `swift test` instead of the list.
set -euo pipefail
cd "$(dirname "$0")/.."
tsan=(--sanitize=thread --build-path .build-tsan)
swift build --build-tests "${tsan[@]}"
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--filter "$(cat scripts/tsan-suites)")
# halt_on_error: the first report ends the process with an error, so no report can pass unnoticed.
SQUINT_THREADS=2 TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" swift test --skip-build "${tsan[@]}" "${args[@]}"
