"""AutoGPTQ's Quantizer.find_params / quantize and GPTQ.fasterquant (sym, 4 bits, per-channel, no
act-order), transcribed op for op from SPEC §5.3 in torch float32: the shared reference of
scripts/parity/official_gptq.py and scripts/fixtures/gptq_scale_case.py. Investigation only."""
import torch


def find_params(x, maxq=15):
    tmp = torch.zeros(x.shape[0])
    xmin = torch.minimum(x.min(1)[0], tmp); xmax = torch.maximum(x.max(1)[0], tmp)
    xmax = torch.maximum(torch.abs(xmin), xmax)
    t = xmin < 0
    if torch.any(t): xmin[t] = -xmax[t]
    t = (xmin == 0) & (xmax == 0); xmin[t] = -1; xmax[t] = 1
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2)
    return scale.reshape(-1, 1), zero.reshape(-1, 1)


def quantize(x, scale, zero, maxq=15):
    """AutoGPTQ's quantize (the fake-quantized value) and the integer code it rounds to."""
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero), q


def fasterquant(W, H, gs=128, bs=128, percdamp=0.01):
    """Like AutoGPTQ: W is cloned, H is damped and factored in place. Returns Q, codes, loss sum."""
    W = W.clone().float(); cols = W.shape[1]
    dead = torch.diag(H) == 0; H[dead, dead] = 1; W[:, dead] = 0
    Losses = torch.zeros_like(W); Q = torch.zeros_like(W); codes = torch.zeros_like(W)
    damp = percdamp * torch.mean(torch.diag(H)); d = torch.arange(cols); H[d, d] += damp
    H = torch.linalg.cholesky(H); H = torch.cholesky_inverse(H); H = torch.linalg.cholesky(H, upper=True)
    Hinv = H; scale = zero = None
    for i1 in range(0, cols, bs):
        i2 = min(i1 + bs, cols); count = i2 - i1
        W1 = W[:, i1:i2].clone(); Q1 = torch.zeros_like(W1); Err1 = torch.zeros_like(W1); L1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]; dd = Hinv1[i, i]
            if (i1 + i) % gs == 0:
                scale, zero = find_params(W[:, (i1 + i):(i1 + i + gs)])
            q, c = quantize(w.unsqueeze(1), scale, zero)
            q = q.flatten(); codes[:, i1 + i] = c.flatten()
            Q1[:, i] = q; L1[:, i] = (w - q) ** 2 / dd ** 2
            err1 = (w - q) / dd
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1; Losses[:, i1:i2] = L1 / 2
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return Q, codes, torch.sum(Losses).item()
