#!/usr/bin/env python3
"""Why GPTQ loses on the 1.5B's ffn_down (docs/QUALITY.md): a per-layer look, outside Squint.

Runs the original model (an F16 GGUF, loaded dequantised by transformers) over the calibration windows
(the first N windows of --calib, as `squint convert --calib-text` cuts them) and over the evaluation
windows (the first M windows of --eval, as llama-perplexity -c 512 cuts them), and collects for the
chosen blocks the Hessians X X^T of ffn_down's input: with and without each window's first token.
Then it quantizes each chosen ffn_down on llama.cpp's Q4_0 grid (d = signed max / -8, group 32) by
round-to-nearest and by GPTQ variants (act-order with static groups, as Squint's
`--grid llama-q4_0 --desc-act`) and prints each one's output error on the evaluation tokens,
tr(dW H_eval dW^T) / tokens, next to its error on the calibration tokens.

A study tool (needs torch, transformers, gguf; never used by Squint). The GPTQ here is a plain
re-statement of the algorithm for this experiment, not Squint's code; it only ranks the variants.
Usage: downstudy.py MODEL.gguf --calib lcet10.txt --eval alice29.txt [--blocks 2,13,27] [--cache DIR]
"""
import argparse
import os
import sys
import time

import torch


def windows(ids, n, length):
    k = min(n, len(ids) // length)
    return [ids[i * length:(i + 1) * length] for i in range(k)]


def llama_q4_0_params(w):
    """Per row of w [rows, 32]: d = (value of largest magnitude) / -8, as ggml's quantize_row_q4_0."""
    idx = w.abs().argmax(dim=1, keepdim=True)
    mx = torch.gather(w, 1, idx)
    d = mx / -8.0
    return d


def quant_col(wcol, d):
    inv = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    q = torch.clamp(torch.floor(wcol * inv + 8.5), 0, 15)   # ggml: (int8)(x * id + 8.5), min 15
    return (q - 8) * d


def rtn(W, gs=32):
    Q = torch.empty_like(W)
    for g in range(0, W.shape[1], gs):
        d = llama_q4_0_params(W[:, g:g + gs])
        Q[:, g:g + gs] = quant_col(W[:, g:g + gs], d)
    return Q


def gptq(W, H, damp=0.01, gs=32, bs=128):
    """GPTQ with act-order and static groups on the llama Q4_0 grid (float32, as AutoGPTQ)."""
    W = W.clone().float()
    H = H.clone().float()
    n = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    params = [llama_q4_0_params(W[:, g:g + gs]) for g in range(0, n, gs)]
    perm = torch.argsort(torch.diag(H), descending=True)
    W = W[:, perm]
    H = H[perm][:, perm]
    H += damp * torch.mean(torch.diag(H)) * torch.eye(n, dtype=H.dtype)
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    Hinv = torch.linalg.cholesky(Hinv, upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, n, bs):
        i2 = min(i1 + bs, n)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        E1 = torch.zeros_like(W1)
        H1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i:i + 1]
            d = params[int(perm[i1 + i]) // gs]
            q = quant_col(w, d)
            Q1[:, i:i + 1] = q
            e = (w - q) / H1[i, i]
            W1[:, i:] -= e @ H1[i:i + 1, i:]
            E1[:, i:i + 1] = e
        Q[:, i1:i2] = Q1
        W[:, i2:] -= E1 @ Hinv[i1:i2, i2:]
    out = torch.empty_like(Q)
    out[:, perm] = Q
    return out.float()


def err(dW, H, tokens):
    return float(torch.sum((dW.float() @ H.float()) * dW.float())) / tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--eval-chunks", type=int, default=10)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--blocks", default="2,13,20,27")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/squint/quality/downstudy"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d, f = os.path.split(os.path.abspath(a.model))
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    print(f"loaded in {time.time() - t0:.0f} s", file=sys.stderr)
    blocks = [int(b) for b in a.blocks.split(",")]
    cal = windows(tok(open(a.calib, encoding="utf-8").read(), add_special_tokens=False)["input_ids"], a.samples, a.ctx)
    ev = windows(tok(open(a.eval, encoding="utf-8").read(), add_special_tokens=False)["input_ids"], a.eval_chunks, a.ctx)
    # The Hessians are kept in --cache (about 1.3 GB per block): a second look needs no forward pass.
    os.makedirs(a.cache, exist_ok=True)
    tag = f"{os.path.basename(a.calib)}-{len(cal)}-{os.path.basename(a.eval)}-{len(ev)}-{a.ctx}"
    path = lambda b: os.path.join(a.cache, f"{f}-{tag}-blk{b}.pt")
    acc = {}     # (block, set, part) -> H ; part: first | rest
    norms = {}   # (block, set) -> per-position squared norms of the first window
    todo = [b for b in blocks if not os.path.exists(path(b))]
    state = {"set": None}

    def hook(b):
        def f(mod, inp):
            x = inp[0][0].float()                          # [T, in]
            s = state["set"]
            for part, xs in (("first", x[:1]), ("rest", x[1:])):
                k = (b, s, part)
                h = xs.T @ xs
                acc[k] = acc[k] + h if k in acc else h
            if (b, s) not in norms:
                norms[(b, s)] = (x * x).sum(dim=1)
        return f
    if todo:
        hs = [model.model.layers[b].mlp.down_proj.register_forward_pre_hook(hook(b)) for b in todo]
        with torch.no_grad():
            for name, ws in (("cal", cal), ("eval", ev)):
                state["set"] = name
                for i, w in enumerate(ws):
                    model(torch.tensor([w]))
                    print(f"{name} window {i + 1}/{len(ws)} ({time.time() - t0:.0f} s)", file=sys.stderr)
        for h in hs:
            h.remove()
        for b in todo:
            torch.save({"acc": {k[1:]: v for k, v in acc.items() if k[0] == b},
                        "norms": {k[1]: v for k, v in norms.items() if k[0] == b}}, path(b))
        acc.clear(); norms.clear()
    nc, ne = len(cal) * a.ctx, len(ev) * a.ctx
    print(f"calibration: {len(cal)} x {a.ctx} tokens of {a.calib}; evaluation: {len(ev)} x {a.ctx} of {a.eval}")
    print("error = tr(dW H dW^T) / tokens on ffn_down's output; eval = positions 1.. of the evaluation windows")
    for b in blocks:
        saved = torch.load(path(b))
        for k, v in saved["acc"].items():
            acc[(b,) + k] = v
        for k, v in saved["norms"].items():
            norms[(b, k)] = v
        W = model.model.layers[b].mlp.down_proj.weight.detach().float()
        Hc = acc[(b, "cal", "first")] + acc[(b, "cal", "rest")]
        Hc_rest = acc[(b, "cal", "rest")]
        He = acc[(b, "eval", "rest")]
        He_all = He + acc[(b, "eval", "first")]
        n0 = norms[(b, "cal")]
        share = float(torch.trace(acc[(b, "cal", "first")]) / torch.trace(Hc))
        print(f"\nblock {b}: ffn_down {tuple(W.shape)}; first tokens' share of tr(H_cal) {share:.3f} "
              f"({len(cal)} of {nc} tokens); |x|^2 at position 0 / median {float(n0[0] / n0.median()):.0f}")
        base = None
        for name, H, dmp in (("rtn", None, 0),
                             ("gptq (as Squint: all tokens, damp 0.01)", Hc, 0.01),
                             ("gptq, first tokens left out", Hc_rest, 0.01),
                             ("gptq, damp 0.1", Hc, 0.1),
                             ("gptq, first tokens out, damp 0.1", Hc_rest, 0.1),
                             ("gptq, damp 1.0", Hc, 1.0),
                             ("gptq on the evaluation H (oracle)", He_all, 0.01)):
            dW = (rtn(W) if H is None else gptq(W, H, damp=dmp)) - W
            e_ev, e_cal = err(dW, He, ne - len(ev)), err(dW, Hc_rest, nc - len(cal))
            base = base or e_ev
            print(f"  {name:42s} eval {e_ev:10.4f} ({e_ev / base:5.3f} x rtn)   calib(rest) {e_cal:10.4f}"
                  f"   eval incl. first {err(dW, He_all, ne):10.4f}", flush=True)
        acc.clear(); norms.clear()


if __name__ == "__main__":
    main()
