#!/usr/bin/env bash
# The test suite, as CI runs it (README command 2 -> .ci/run -> here).
#
# 1. The whole suite, as a user's machine runs it (AVX-512 paths on where the CPU has them).
# 2. The suites whose code dispatches on AVX-512 (scripts/avx512-suites) on the other path:
#    - on a CPU with AVX-512, again with SQUINT_NO_AVX512=1, the AVX2 path that Zen 3 machines take;
#    - on an AVX2-only CPU, built with the AVX-512 code emulated (scripts/test-avx512-emulated.sh),
#      the path that Zen 4/5 machines take.
#    So CI covers both dispatch paths on every machine (docs/RELIABILITY.md).
# 3. Squint's own parallel code under ThreadSanitizer (scripts/tsan.sh).
# 4. The SIMD kernels as the compiler built them for AVX-512, executed by AVX-512 CPUs emulated
#    instruction by instruction (Bochs booting Linux with the kernel check as init: scripts/avx512-bochs.sh),
#    so the AVX-512 machine code and the CPU check run on every machine, whatever its own CPU.
# Extra arguments go to `swift test` in pass 1 (e.g. --filter ConvertTests), and passes 2 and 3 are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
swift test "$@"
[ $# -eq 0 ] || exit 0
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  echo "== second pass: AVX-512 paths off (SQUINT_NO_AVX512=1), as on an AVX2-only CPU"
  SQUINT_NO_AVX512=1 SQUINT_EXPECT_AVX512=0 swift test --skip-build --filter "$(cat scripts/avx512-suites)"
elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  echo "== second pass: AVX-512 paths emulated (SIMDe over AVX2), as on an AVX-512 CPU"
  bash scripts/test-avx512-emulated.sh
else
  echo "== no second pass: this CPU has neither AVX-512 nor the AVX2 the emulation builds on"
fi
echo "== third pass: the parallel code under ThreadSanitizer"
bash scripts/tsan.sh
echo "== fourth pass: the SIMD kernels on emulated AVX-512 CPUs (Bochs)"
bash scripts/avx512-bochs.sh
