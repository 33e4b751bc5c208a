#!/usr/bin/env python3
"""The two judges side by side for one model of the quality study (docs/QUALITY.md "The same measurement
by `squint validate`"): for every file with a `squint validate --json` result (val.sh) in the cache,
beside llama-perplexity's figures for it (ppl.sh's logs, read through `table.sh --tsv`): KL mean ±
standard error, KL p99, same top-1 and the perplexity ratio to the F16 original, as "Squint /
llama.cpp", plus the largest gaps between the judges and the pairs of files they order differently.
Standard library only.

Usage: python3 scripts/quality/valtable.py MODEL_KEY   (sm, q05, q15)
"""
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
Q = os.path.join(os.environ.get("SQUINT_CACHE", os.path.expanduser("~/.cache/squint")), "quality")


def llama(model):
    """variant -> llama-perplexity's KL mean and error, p99, same top-1 (fraction) and PPL ratio, from
    `table.sh --tsv MODEL` (the one reader of those logs)."""
    out = subprocess.run(["bash", os.path.join(HERE, "table.sh"), "--tsv", model], check=True,
                         capture_output=True, text=True).stdout
    scores = {}
    for line in out.splitlines():
        v, _bpw, kl, kl_se, ratio, top, p99 = line.split("\t")
        scores[v] = {"kl": float(kl), "kl_se": float(kl_se), "p99": float(p99), "top1": float(top) / 100, "ratio": float(ratio)}
    return scores


def main(model):
    rows = []
    judged = llama(model)
    for path in sorted(glob.glob(os.path.join(Q, f"val-{model}-*.json"))):
        variant = os.path.basename(path)[len(f"val-{model}-"):-len(".json")]
        theirs = judged.get(variant)
        d = json.load(open(path))
        ours = {"kl": d["kl_mean"], "kl_se": d["kl_mean_se"], "p99": d["kl_p99"], "top1": d["top1_agreement"],
                "ratio": d["ppl_ratio"]}
        rows.append((variant, ours, theirs))
    if not rows:
        sys.exit(f"valtable.py: no val-{model}-*.json in {Q} (run scripts/quality/study.sh validate {model})")
    rows.sort(key=lambda r: r[1]["kl"])
    print("| variant | KL mean ± err (Squint / llama.cpp) | KL p99 | same top-1 | PPL ratio |")
    print("|---|---|---|---|---|")
    gaps = []
    for v, o, t in rows:
        if t is None:
            print(f"| {v} | {o['kl']:.4g} ± {o['kl_se']:.2g} / - | {o['p99']:.3g} / - | "
                  f"{100 * o['top1']:.2f} / - % | {o['ratio']:.4f} / - |")
            continue
        print(f"| {v} | {o['kl']:.4g} ± {o['kl_se']:.2g} / {t['kl']:.4g} ± {t['kl_se']:.2g} | "
              f"{o['p99']:.3g} / {t['p99']:.3g} | {100 * o['top1']:.2f} / {100 * t['top1']:.2f} % | "
              f"{o['ratio']:.4f} / {t['ratio']:.4f} |")
        gaps.append((v, o["kl"] / t["kl"] - 1, 100 * (o["top1"] - t["top1"]), o["ratio"] - t["ratio"], t["kl"]))
    if gaps:
        # relative KL gaps only where llama.cpp's KL is well above its own arithmetic floor (8-bit
        # activations: ~0.003 on a file that decodes to the original exactly, SmolLM2's Q4_1 rows)
        kl = max((g for g in gaps if g[4] > 0.01), key=lambda g: abs(g[1]), default=gaps[0])
        top = max(gaps, key=lambda g: abs(g[2]))
        ratio = max(gaps, key=lambda g: abs(g[3]))
        print(f"\nlargest gaps (Squint - llama.cpp): KL {100 * kl[1]:+.1f} % ({kl[0]}; files with KL > 0.01), "
              f"top-1 {top[2]:+.2f} points ({top[0]}), PPL ratio {ratio[3]:+.4f} ({ratio[0]})")
        # Same ranking? Every pair of files the judges order differently, with both KL differences.
        both = [r for r in rows if r[2]]
        swaps = [(a, b) for k, a in enumerate(both) for b in both[k + 1:]
                 if (a[1]["kl"] - b[1]["kl"]) * (a[2]["kl"] - b[2]["kl"]) < 0]
        if not swaps:
            print("KL ranking: the same under both judges")
        for a, b in swaps:
            print(f"KL ranking differs: {a[0]} vs {b[0]}: Squint {a[1]['kl'] - b[1]['kl']:+.2g}, "
                  f"llama.cpp {a[2]['kl'] - b[2]['kl']:+.2g} (standard errors ~{max(a[2]['kl_se'], b[2]['kl_se']):.2g})")

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
