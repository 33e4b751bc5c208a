"""transformers' side of scripts/check/transformers_gptq.sh: loads FOLDER (a GPTQ folder) in float32 on
the CPU and prints JSON with the loading report and the running perplexity after each of the first N
windows of 512 tokens of TEXT, computed as llama-perplexity (and `squint perplexity`) does: the text
tokenized whole without added special tokens, non-overlapping windows, the second half of each scored."""
import json
import math
import sys
import warnings

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging

warnings.filterwarnings("ignore")
logging.set_verbosity_error()
folder, text_path, windows = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(folder)
text = open(text_path, encoding="utf-8", newline="").read()      # keep CRLF, as Squint reads the bytes
ids = tok(text, add_special_tokens=False)["input_ids"]
model, info = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu", dtype=torch.float32, output_loading_info=True)
model.eval()
n, total, count, running = 512, 0.0, 0, []
for w in range(windows):
    x = torch.tensor([ids[w * n:(w + 1) * n]])
    with torch.no_grad():
        logp = torch.log_softmax(model(x).logits.double()[0], -1)
    nll = -logp[n // 2:n - 1].gather(1, x[0, n // 2 + 1:n, None]).squeeze(1)
    total += nll.sum().item(); count += nll.numel()
    running.append(math.exp(total / count))
print(json.dumps({"textTokens": len(ids), "running": running, "missing": sorted(info["missing_keys"]),
                  "unexpected": sorted(info["unexpected_keys"]), "mismatched": sorted(str(m) for m in info["mismatched_keys"]),
                  "kernel": type(model.model.layers[0].self_attn.q_proj).__name__}))
