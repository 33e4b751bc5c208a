#!/usr/bin/env python3
"""AutoGPTQ's Hessian accumulation (GPTQ.add_batch, SPEC §5.2) on PyTorch, timed the way a conversion
calls it: one add_batch per calibration sample of TOKENS tokens, SAMPLES samples, width N. The Squint
side is `HessianBenchmarkTests` (same shapes, same seeded normal inputs); docs/PERFORMANCE.md.

  TORCH_THREADS=1 python3 scripts/bench/hessian_side_by_side.py 4096 16 512
"""
import os, sys, time, math
import torch

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
n, samples, tokens = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
g = torch.Generator().manual_seed(0)
xs = [torch.randn(1, tokens, n, generator=g) for _ in range(samples)]
for rep in range(2):
    H = torch.zeros(n, n)
    nsamples = 0
    t0 = time.time()
    for x in xs:                                   # add_batch, as AutoGPTQ's gptq.py writes it
        inp = x
        tmp = inp.shape[0]
        inp = inp.reshape((-1, inp.shape[-1])).t()
        H *= nsamples / (nsamples + tmp)
        nsamples += tmp
        inp = math.sqrt(2 / nsamples) * inp.float()
        H += inp.matmul(inp.t())
    dt = time.time() - t0
    flops = 2.0 * n * n * tokens * samples
    print(f"torch add_batch width {n}, {samples} x {tokens} tokens: {dt:.2f} s ({flops / dt / 1e9:.1f} GFLOP/s of x@x.T)", flush=True)
