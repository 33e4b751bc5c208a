#!/usr/bin/env bash
# The AVX-512 code paths on a CPU without AVX-512: builds the package with -DSQUINT_EMULATE_AVX512
# (Sources/CSquintKernels/isa.h: the 512-bit intrinsics from SIMDe, Debian's libsimde-dev, over native
# AVX2/FMA; the CPU check reports AVX-512F/VL/VNNI) into its own build folder, then runs the suites
# whose code dispatches on AVX-512 (scripts/avx512-suites). Those suites then take the AVX-512 levels:
# the Int4 decode kernels, the int8 VNNI products and the AVX-512 Cholesky are compared bit for bit
# with their scalar twins, the AVX2 levels and LAPACK. scripts/test.sh runs this on AVX2-only CPUs.
# `--all` runs the whole suite so built (13 min on a quiet Zen 3); other arguments go to `swift test`
# (e.g. --filter QuantKernelTests instead of the list).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo \
  || { echo "test-avx512-emulated.sh: this CPU lacks AVX2/FMA/F16C, which the emulation builds on" >&2; exit 1; }
[ -f /usr/include/simde/x86/avx512.h ] \
  || { echo "test-avx512-emulated.sh: /usr/include/simde missing: run scripts/setup-debian.sh (libsimde-dev)" >&2; exit 1; }
emu=(--build-path .build-avx512emu -Xcc -DSQUINT_EMULATE_AVX512 -Xcc -mavx2 -Xcc -mfma -Xcc -mf16c)
swift build --build-tests "${emu[@]}"
args=("$@")
if [ ${#args[@]} -eq 0 ]; then args=(--filter "$(cat scripts/avx512-suites)")
elif [ "${args[0]}" = --all ]; then args=("${args[@]:1}"); fi
# QuantKernelTests.testTheSecondPassRunsTheLevelsItIsMeantTo fails unless the AVX-512 levels are really in use.
SQUINT_EXPECT_AVX512=1 swift test --skip-build "${emu[@]}" "${args[@]}"
