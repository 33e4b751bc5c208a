#!/bin/bash
# fasterquant at the real module sizes, side by side: Squint with LAPACK's dpotrf (SQUINT_NO_AVX512=1),
# Squint as shipped, and PyTorch running AutoGPTQ's algorithm (scripts/fixtures/gptq_scale_case.py),
# on 1 then 2 threads, each shape twice per process. Needs a release test build:
#   swift build -c release --build-tests -Xswiftc -enable-testing
# and torch 2.13 + safetensors for the PyTorch side. Figures: docs/PERFORMANCE.md.
cd "$(dirname "$0")/../.."
for T in 1 2; do
export OPENBLAS_NUM_THREADS=$T SQUINT_THREADS=$T OMP_NUM_THREADS=$T MKL_NUM_THREADS=$T SQUINT_BENCH_THREADS=$T
echo "== threads $T $(date -u +%H:%M)"
for shape in 4096x11008 12288x4096; do
  SQUINT_NO_AVX512=1 SQUINT_BENCH=1 SQUINT_BENCH_SHAPES=$shape,$shape swift test -c release -Xswiftc -enable-testing --skip-build --filter GPTQBenchmarkTests 2>&1 | grep "\[bench\] fasterquant" | sed 's/^/lapack  /'
  SQUINT_BENCH=1 SQUINT_BENCH_SHAPES=$shape,$shape swift test -c release -Xswiftc -enable-testing --skip-build --filter GPTQBenchmarkTests 2>&1 | grep "\[bench\] fasterquant" | sed 's/^/avx512  /'
  TORCH_THREADS=$T REPEAT=2 python3 scripts/fixtures/gptq_scale_case.py ${shape%x*} ${shape#*x} 2>&1 | grep -i "fasterquant" | sed "s/^/torch $shape /"
done
done
echo "== done $(date -u +%H:%M)"
