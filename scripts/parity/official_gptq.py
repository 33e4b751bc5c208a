"""Parity investigation for `squint convert` (docs/QUANTIZING.md, "Agreement with AutoGPTQ").

A float32 PyTorch transcription of the official qwen-vl-tiny graph (modeling_qwen.py QWenBlock,
visual.py ViT + Resampler, as SHARED/qwen-vl/SPEC.md describes them) and of AutoGPTQ's
GPTQ.add_batch / fasterquant / Quantizer (SPEC §5), used to find where Squint's end-to-end codes
part from the official Int4 reference and to measure how sensitive the official code itself is.
Investigation only: torch 2.13.0+cpu, Pillow, safetensors; Squint never needs Python.

  python3 scripts/parity/official_gptq.py MODEL_DIR BLOCK0_DIR MODE [SEED]

MODEL_DIR: the tiny model (`squint synth --config fixtures/qwen-vl-tiny/config.json`).
BLOCK0_DIR: Squint's block-0 calibration inputs, raw float32 `block0_sample<i>.f32`, written by
  `SQUINT_DEBUG_DUMP=DIR squint convert MODEL_DIR --calib fixtures/calibration/pairs.jsonl ...`.
MODE: `ours` (GPTQ from Squint's inputs), `torchvit` (image rows replaced by this transcription's
  ViT), `torchvit-ulpK` (those, each value moved by a random -K..K ulps), `fixture OUT` (write
  Squint's inputs and the codes this official-code transcription computes from them as
  OUT.safetensors, for ConvertTests).
The reference run used ATEN_CPU_CAPABILITY=avx2 kernels on one thread: set that variable (and leave
TH unset) to reproduce its rounding; TH=2 or the AVX-512 kernels show the official code's own spread. CODES_OUT=FILE saves the codes
[out, in] of any mode as safetensors (e.g. to compare them with a Squint AutoGPTQ output).
"""
import json, math, os, sys
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from autogptq_ref import fasterquant  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CALIB = os.path.join(ROOT, "fixtures/calibration")
torch.set_num_threads(int(os.environ.get("TH", "1")))
torch.set_grad_enabled(False)
M = {k: v.float() for k, v in load_file(os.path.join(sys.argv[1], "model.safetensors")).items()}
REF = load_file(os.path.join(ROOT, "fixtures/qwen-vl-tiny/int4/quantized_modules.safetensors"))
PAIRS = [json.loads(l) for l in open(os.path.join(CALIB, "pairs.jsonl"))]
IMG0 = 20   # <img> is token 19 in every calibration sequence; its 256 feature rows follow

Hd, NH, HD = 128, 4, 32
MIN = torch.finfo(torch.float32).min

def rms(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).type_as(x) * w

def rot_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)

def rope_cache(n):
    inv = 1.0 / (10000.0 ** (torch.arange(0, HD, 2).float() / HD))
    seq = torch.arange(max(2 * n, 16)).type_as(inv)
    f = torch.outer(seq, inv)
    emb = torch.cat((f, f), -1)[None, :, None, :]
    return emb.cos(), emb.sin()

def rope(t, cos, sin):
    tf = t.float()
    return ((tf * cos) + (rot_half(tf) * sin)).type_as(t)

class Lin:
    def __init__(s, w, b=None): s.w, s.b, s.hook = w, b, None
    def __call__(s, x):
        if s.hook: s.hook(x)
        return F.linear(x, s.w, s.b)

def block_forward(L, x):  # x [1,S,H]
    S = x.shape[1]
    a = rms(x, L["ln_1"])
    qkv = L["c_attn"](a)
    q, k, v = qkv.split(Hd, dim=2)
    q, k, v = (t.view(1, S, NH, HD) for t in (q, k, v))
    cos, sin = rope_cache(S)
    cos, sin = cos[:, :S], sin[:, :S]
    q, k = rope(q, cos, sin), rope(k, cos, sin)
    q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
    w = torch.matmul(q, k.transpose(-1, -2))
    w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
    mask = torch.full((S, S), MIN).triu(1)[None, None]
    amask = (1.0 - torch.ones(1, 1, 1, S)) * MIN
    w = w + (mask + amask)
    w = F.softmax(w, dim=-1).type(v.dtype)
    o = torch.matmul(w, v).transpose(1, 2).contiguous().view(1, S, Hd)
    h1 = L["c_proj"](o) + x
    m = rms(h1, L["ln_2"])
    y = L["w1"](m) * F.silu(L["w2"](m))
    return h1 + L["mlp.c_proj"](y)

def ref_codes(name):
    qw = REF[name + ".qweight"].numpy().view(np.uint32)  # [in/8, out]
    c = np.stack([(qw >> (4 * j)) & 0xF for j in range(8)], axis=1)  # [in/8, 8, out]
    return torch.from_numpy(c.reshape(-1, qw.shape[1]).T.astype(np.float32))  # [out, in]

GROUPS = [["attn.c_attn"], ["attn.c_proj"], ["mlp.w1", "mlp.w2"], ["mlp.c_proj"]]

def run(start_block, xs):
    tot_same = tot = 0
    all_codes = {}
    for l in range(start_block, 2):
        p = f"transformer.h.{l}."
        L = {"ln_1": M[p + "ln_1.weight"], "ln_2": M[p + "ln_2.weight"],
             "c_attn": Lin(M[p + "attn.c_attn.weight"], M[p + "attn.c_attn.bias"]),
             "c_proj": Lin(M[p + "attn.c_proj.weight"]), "w1": Lin(M[p + "mlp.w1.weight"]),
             "w2": Lin(M[p + "mlp.w2.weight"]), "mlp.c_proj": Lin(M[p + "mlp.c_proj.weight"])}
        for g in GROUPS:
            Hs = {}
            for name in g:
                key = name.split(".")[-1] if name != "mlp.c_proj" else "mlp.c_proj"
                lin = L[key]; cols = lin.w.shape[1]
                st = {"H": torch.zeros(cols, cols), "n": 0}
                def hook(x, st=st):
                    inp = x.reshape(-1, x.shape[-1]).t().float()
                    st["H"] *= st["n"] / (st["n"] + 1); st["n"] += 1
                    inp = math.sqrt(2 / st["n"]) * inp
                    st["H"] += inp.matmul(inp.t())
                lin.hook = hook; Hs[name] = (lin, st)
            for x in xs: block_forward(L, x)
            for name in g:
                lin, st = Hs[name]; lin.hook = None
                Q, codes, loss = fasterquant(lin.w, st["H"])
                all_codes[p + name + ".codes"] = codes.to(torch.uint8).contiguous()
                rc = ref_codes(p + name)
                same = (codes == rc).sum().item(); tot_same += same; tot += rc.numel()
                print(f"{p+name}: {100*same/rc.numel():.4f}% identical codes, avg loss {loss/len(xs):.6f}", flush=True)
                lin.w = Q
        xs = [block_forward(L, x) for x in xs]
    print(f"total {100*tot_same/tot:.4f}% identical codes ({tot_same}/{tot}) over blocks {start_block}..1")
    return all_codes


P = "transformer.visual."
W_, HEADS = 64, 4

def pixels(path):
    img = Image.open(path).convert("RGB").resize((448, 448), Image.BICUBIC)
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)); std = torch.tensor((0.26862954, 0.26130258, 0.27577711))
    return t.sub_(mean[:, None, None]).div_(std[:, None, None])

def abs_pos(p, tgt):
    s = int(math.sqrt(p.size(0))); t = int(math.sqrt(tgt))
    return F.interpolate(p.float().reshape(1, s, s, -1).permute(0, 3, 1, 2), size=(t, t), mode="bicubic",
                         align_corners=False).permute(0, 2, 3, 1).flatten(0, 2).to(p.dtype)

def ln(x, n, eps=1e-6):
    return F.layer_norm(x, (x.shape[-1],), M[n + ".weight"], M[n + ".bias"], eps)

def lin(x, n, bias=True):
    return F.linear(x, M[n + ".weight"], M[n + ".bias"] if bias else None)

def vattn(x, n):
    sq, b, _ = x.size(); hn = W_ // HEADS
    m = lin(x, n + ".in_proj").view(sq, b, HEADS, 3 * hn)
    q, k, v = m.split(hn, dim=-1)
    q = q.reshape(sq, b * HEADS, hn).transpose(0, 1)
    k = k.reshape(sq, b * HEADS, hn).transpose(0, 1)
    p = torch.bmm(q / math.sqrt(hn), k.transpose(-2, -1)).softmax(dim=-1)
    v = v.reshape(sq, b * HEADS, hn).transpose(0, 1)
    c = torch.bmm(p, v).view(b, HEADS, sq, hn).permute(2, 0, 1, 3).contiguous().view(sq, b, W_)
    return lin(c, n + ".out_proj")

mha = nn.MultiheadAttention(128, 1)
mha.in_proj_weight.data = M[P + "attn_pool.attn.in_proj_weight"]; mha.in_proj_bias.data = M[P + "attn_pool.attn.in_proj_bias"]
mha.out_proj.weight.data = M[P + "attn_pool.attn.out_proj.weight"]; mha.out_proj.bias.data = M[P + "attn_pool.attn.out_proj.bias"]
mha.eval()

def vit(px, stages=None):
    x = F.conv2d(px, M[P + "conv1.weight"], stride=14)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = x + abs_pos(M[P + "positional_embedding"], x.size(1))
    x = ln(x, P + "ln_pre")
    if stages is not None: stages["vit_embed"] = x
    x = x.permute(1, 0, 2)
    for l in range(2):
        n = P + f"transformer.resblocks.{l}."
        x = x + vattn(ln(x, n + "ln_1"), n + "attn")
        x = x + lin(F.gelu(lin(ln(x, n + "ln_2"), n + "mlp.c_fc")), n + "mlp.c_proj")
        if stages is not None: stages[f"vit_block_out.{l}"] = x.permute(1, 0, 2)
    x = x.permute(1, 0, 2)
    pos = abs_pos(M[P + "attn_pool.pos_embed"], x.size(1))
    x = F.linear(x, M[P + "attn_pool.kv_proj.weight"])
    x = ln(x, P + "attn_pool.ln_kv").permute(1, 0, 2)
    N = x.shape[1]
    q = ln(M[P + "attn_pool.query"], P + "attn_pool.ln_q")
    out = mha(q.unsqueeze(1).repeat(1, N, 1) + M[P + "attn_pool.pos_embed"].unsqueeze(1), x + pos.unsqueeze(1), x)[0]
    x = out.permute(1, 0, 2)
    if stages is not None: stages["resampler_out"] = x
    x = ln(x, P + "ln_post")
    return x @ M[P + "proj"]



if __name__ == "__main__":
    dump, mode = sys.argv[2], sys.argv[3]
    seed = int(sys.argv[4]) if len(sys.argv) > 4 and not mode == "fixture" else 0
    ours = []
    for i in range(len(PAIRS)):
        a = np.fromfile(os.path.join(dump, f"block0_sample{i}.f32"), dtype=np.float32)
        ours.append(torch.from_numpy(a.reshape(1, -1, Hd)))
    g = torch.Generator().manual_seed(seed)
    xs = []
    for i, p in enumerate(PAIRS):
        x = ours[i].clone()
        if mode not in ("ours", "fixture"):
            f = vit(pixels(CALIB + "/" + p["image"])[None])[0]
            if mode.startswith("torchvit-ulp"):
                k = int(mode[len("torchvit-ulp"):])
                f = (f.view(torch.int32) + torch.randint(-k, k + 1, f.shape, generator=g, dtype=torch.int32)).view(torch.float32)
            x[0, IMG0:IMG0 + 256] = f
        xs.append(x)
    codes = run(0, xs)
    if os.environ.get("CODES_OUT"):   # every mode: the codes [out, in] this run computed
        save_file(codes, os.environ["CODES_OUT"], metadata={
            "what": f"4-bit codes [out, in] of the official AutoGPTQ code (torch transcription, "
                    f"scripts/parity/official_gptq.py, mode {mode}) on the qwen-vl-tiny calibration run",
            "torch": torch.__version__, "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "default"),
            "threads": str(torch.get_num_threads())})
    if mode == "fixture":
        tensors = {f"sample.{i}": x[0].contiguous() for i, x in enumerate(xs)}
        tensors.update(codes)
        save_file(tensors, sys.argv[4], metadata={
            "what": "qwen-vl-tiny block-0 calibration inputs (Squint's) and the 4-bit codes [out, in] the official "
                    "AutoGPTQ code (torch transcription, scripts/parity/official_gptq.py) computes from them",
            "torch": torch.__version__, "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "default"),
            "threads": str(torch.get_num_threads())})
