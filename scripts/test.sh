#!/usr/bin/env bash
# The test suite, as CI runs it (README command 2 -> .ci/run -> here).
#
# 1. The whole suite, as a user's machine runs it (AVX-512 paths on where the CPU has them).
# 2. On a CPU with AVX-512, the suites whose code dispatches on it again with SQUINT_NO_AVX512=1,
#    so the AVX2 path that Zen 3 machines take is tested here too (docs/RELIABILITY.md).
# Extra arguments go to `swift test` in pass 1 (e.g. --filter ConvertTests).
set -euo pipefail
cd "$(dirname "$0")/.."
swift test "$@"
if [ $# -eq 0 ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  echo "== second pass: AVX-512 paths off (SQUINT_NO_AVX512=1), as on an AVX2-only CPU"
  SQUINT_NO_AVX512=1 swift test --skip-build \
    --filter 'CholeskyAVX512Tests|Int8LinearTests|GPTQReferenceTests|GPTQOddSizeTests|KernelTests|QuantKernelTests|Int4ParityTests|GGUF|BLASPinTests|ConvertTests.testCodesAgreeWithAutoGPTQ'
fi
