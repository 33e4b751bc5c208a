#!/usr/bin/env python3
"""Builds a Hugging Face folder (model.safetensors with transformers' names, config.json without
quantization_config, tokenizer files) from a float32 safetensors file with llama.cpp's names
(`squint export MODEL.gguf --tensors . -o FILE`) and the companion files of a Squint AutoGPTQ folder
of the same GGUF (`squint convert MODEL.gguf --method rtn --format autogptq`). Standard library only:
the tensor bytes are copied unchanged, only the header's names change. Qwen2 only (llama.cpp's llama
files hold q/k rows permuted, which this script does not undo).
Usage: hf_folder.py EXPORTED.safetensors AUTOGPTQ_FOLDER OUT_FOLDER"""
import json, os, re, shutil, struct, sys

src, companions, out = sys.argv[1:4]
fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
         "output.weight": "lm_head.weight"}
parts = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
         "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}

def hf_name(n):
    if n in fixed:
        return fixed[n]
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", n)
    if not m or m.group(2) not in parts:
        sys.exit(f"hf_folder.py: no transformers name for {n}")
    return f"model.layers.{m.group(1)}.{parts[m.group(2)]}.{m.group(3)}"

os.makedirs(out, exist_ok=False)
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    meta = header.pop("__metadata__", None)
    renamed = {hf_name(k): v for k, v in header.items()}
    if meta is not None:
        renamed["__metadata__"] = {"source": "llama.cpp GGUF via squint export, renamed by hf_folder.py"}
    h = json.dumps(renamed, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as g:
        g.write(struct.pack("<Q", len(h)))
        g.write(h)
        shutil.copyfileobj(f, g, 16 << 20)
cfg = json.load(open(os.path.join(companions, "config.json")))
cfg.pop("quantization_config", None)
cfg["torch_dtype"] = "float32"
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
    if os.path.exists(os.path.join(companions, name)):
        shutil.copy(os.path.join(companions, name), os.path.join(out, name))
