#!/bin/bash
# Hessian accumulation side by side (Squint HessianBenchmarkTests vs AutoGPTQ add_batch on PyTorch),
# widths 4096 and 11008, 16 samples x 512 tokens, on 1 then 2 threads. Needs a release test build:
#   swift build -c release --build-tests -Xswiftc -enable-testing
cd "$(dirname "$0")/../.."
for T in 1 2; do
  export OPENBLAS_NUM_THREADS=$T SQUINT_THREADS=$T OMP_NUM_THREADS=$T MKL_NUM_THREADS=$T
  echo "== threads $T $(date -u +%H:%M)"
  for n in 4096 11008; do
    SQUINT_BENCH=1 SQUINT_BENCH_HESSIAN=$n,16,512 swift test -c release -Xswiftc -enable-testing --skip-build \
      --filter HessianBenchmarkTests 2>&1 | grep "\[bench\]"
    TORCH_THREADS=$T python3 scripts/bench/hessian_side_by_side.py $n 16 512
  done
done
echo "== done $(date -u +%H:%M)"
