"""PyTorch baseline for docs/PERFORMANCE.md: the same float32 computation Squint does for one real-size
Qwen-VL-Chat LLM block (prefill 512 tokens; decode 1 token with 512 cached) and one ViT block (1024
tokens), weights rounded to bf16 and held in float32 as the official fp32 path computes.
Usage: python3 scripts/bench/torch_blocks.py [threads ...]   (torch 2.13.0+cpu; never needed by Squint)
"""
import math, sys, time
import torch
import torch.nn.functional as F

def w(*shape):
    return (torch.rand(*shape) * 2 - 1).mul_(math.sqrt(3.0 / shape[-1])).to(torch.bfloat16).float()

def rms(x, g, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

def rope(t, pos):
    d = t.shape[-1]
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    f = torch.outer(pos.float(), inv)
    emb = torch.cat([f, f], -1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    t1, t2 = t[..., : d // 2], t[..., d // 2:]
    return t * cos + torch.cat([-t2, t1], -1) * sin

H, NH, HD, FF = 4096, 32, 128, 11008
P = dict(ln1=torch.ones(H), attn_w=w(3 * H, H), attn_b=torch.zeros(3 * H), proj=w(H, H), ln2=torch.ones(H),
         w1=w(FF, H), w2=w(FF, H), cproj=w(H, FF))

def llm_block(x, past=None, start=0):
    S = x.shape[0]
    a = rms(x, P["ln1"])
    qkv = F.linear(a, P["attn_w"], P["attn_b"])
    q, k, v = qkv.split(H, -1)
    pos = torch.arange(start, start + S)
    q, k, v = rope(q.view(S, NH, HD), pos), rope(k.view(S, NH, HD), pos), v.view(S, NH, HD)
    if past is not None:
        k, v = torch.cat([past[0], k]), torch.cat([past[1], v])
    s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(HD)
    if S > 1:
        s = s + torch.triu(torch.full((S, k.shape[0]), float("-inf")), 1)
    o = torch.einsum("hqk,khd->qhd", s.softmax(-1), v).reshape(S, H)
    x = x + F.linear(o, P["proj"])
    m = rms(x, P["ln2"])
    return x + F.linear(F.linear(m, P["w1"]) * F.silu(F.linear(m, P["w2"])), P["cproj"]), (k, v)

W, VH, VM = 1664, 16, 8192
V = dict(ln1w=torch.ones(W), ln1b=torch.zeros(W), inw=w(3 * W, W), inb=torch.zeros(3 * W), outw=w(W, W),
         outb=torch.zeros(W), ln2w=torch.ones(W), ln2b=torch.zeros(W), fcw=w(VM, W), fcb=torch.zeros(VM),
         pw=w(W, VM), pb=torch.zeros(W))

def vit_block(x):
    T = x.shape[0]
    a = F.layer_norm(x, (W,), V["ln1w"], V["ln1b"], 1e-6)
    m = F.linear(a, V["inw"], V["inb"]).view(T, VH, 3 * (W // VH))
    q, k, v = m.split(W // VH, -1)
    p = (torch.einsum("qhd,khd->hqk", q / math.sqrt(W // VH), k)).softmax(-1)
    x = x + F.linear(torch.einsum("hqk,khd->qhd", p, v).reshape(T, W), V["outw"], V["outb"])
    a = F.layer_norm(x, (W,), V["ln2w"], V["ln2b"], 1e-6)
    return x + F.linear(F.gelu(F.linear(a, V["fcw"], V["fcb"])), V["pw"], V["pb"])

def best(fn, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return min(ts), sorted(ts)[len(ts) // 2]

with torch.inference_mode():
    for th in [int(a) for a in sys.argv[1:]] or [1, 2]:
        torch.set_num_threads(th)
        x = torch.randn(512, H)
        pf = best(lambda: llm_block(x), 3)
        _, kv = llm_block(x)
        dc = best(lambda: llm_block(torch.randn(1, H), kv, 512), 8)
        vt = best(lambda: vit_block(torch.randn(1024, W)), 3)
        print(f"torch {torch.__version__} threads={th}: llm prefill 512 {pf[0]:.3f} s (median {pf[1]:.3f}); "
              f"decode KV512 {dc[0]*1e3:.1f} ms (median {dc[1]*1e3:.1f}); vit block 1024 {vt[0]:.3f} s (median {vt[1]:.3f})",
              flush=True)
