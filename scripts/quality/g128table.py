#!/usr/bin/env python3
"""Group 128 in-sample and held out (docs/QUALITY.md "Why: GPTQ's margin at group 128 is tied to the
calibration text"): for one model,
the loss (perplexity ratio - 1 against the original, same tokens) of RTN on both grids and of the
recipe, on the calibration windows themselves and on held-out texts, from the `squint perplexity
--json` logs of `study.sh g128` and `study.sh g128dom` in the cache. The error of a fraction is the
standard error over windows of the paired per-window differences, carried through the ratio (windows
are 512 tokens; per-window NLLs are `windowNLL`, or recovered from the running perplexities in logs
written before `perplexity --json` had that field). Standard library only.

Usage: python3 scripts/quality/g128table.py MODEL_KEY WINDOWS [IN] [CAL]   (e.g. q05 16: the recipe's
calibration windows; IN: calibration windows scored, default WINDOWS; CAL: lcet10 (default), code or mix,
as `study.sh g128dom`)
"""
import json
import math
import os
import statistics
import sys

Q = os.path.join(os.environ.get("SQUINT_CACHE", os.path.expanduser("~/.cache/squint")), "quality")


def windows_nll(log):
    """Mean NLL per window from a sppl log (None when the log is missing or unfinished)."""
    path = os.path.join(Q, log)
    if not os.path.exists(path):
        return None
    text = open(path).read()
    if "step: ok" not in text:
        return None
    start = text.index("\n{\n") + 1
    end = text.index("\n}\n", start) + 2
    result = json.loads(text[start:end])["result"]
    if "windowNLL" in result:
        return result["windowNLL"]
    cum = [k * math.log(p) for k, p in enumerate(result["perWindow"], 1)]   # running: equal tokens per window
    return [c - (cum[i - 1] if i else 0.0) for i, c in enumerate(cum)]


def main():
    model, n = sys.argv[1], sys.argv[2]
    scored = sys.argv[3] if len(sys.argv) > 3 else n
    cal = sys.argv[4] if len(sys.argv) > 4 else "lcet10"
    other = cal != "lcet10"   # calibrated on another text than the study's
    gptq = f"g128-ssimat-shrink0.5-{cal}-{n}w" if other else f"g128-ssimat-shrink0.5-{n}w"
    what = {"lcet10": "lcet10.txt", "code": "difflib.py + textwrap.py", "mix": "lcet10.txt's start, then that code"}[cal]
    calib = (f"calibration windows ({what} 1-{scored})", f"sppl-calib{cal if other else ''}{scored}-{model}-{{}}.log")
    texts = [calib,
             ("lcet10.txt after byte 260,000 (held out, same text)", f"sppl-lcet10-tail-{model}-{{}}.log"),
             ("alice29.txt (held out: the study's evaluation text)", f"sppl-{model}-{{}}.log"),
             ("argparse.py (held out: code)", f"sppl-code-{model}-{{}}.log")]
    print(f"| text | PPL original | loss RTN (AutoGPTQ grid) | loss RTN (signed-max grid) | loss GPTQ recipe "
          f"| GPTQ / RTN same grid | GPTQ / RTN AutoGPTQ grid |")
    print("|---|---|---|---|---|---|---|")
    for name, pattern in texts:
        orig = windows_nll(pattern.format("orig"))
        runs = {v: windows_nll(pattern.format(v)) for v in ("rtn-g128", "rtn-g128-llamagrid", gptq)}
        if runs[gptq] is None and n == "16" and not other:   # `study.sh g128 q05 16` wrote its log without the suffix
            runs[gptq] = windows_nll(pattern.format("g128-ssimat-shrink0.5"))
        if orig is None or any(v is None for v in runs.values()):
            print(f"| {name} | (not measured) |||||| ")
            continue
        k = len(orig)
        loss = {v: math.exp(statistics.fmean(w) - statistics.fmean(orig)) - 1 for v, w in runs.items()}

        def frac(a, b):
            # loss a / loss b; its error from the per-window paired NLL differences (delta method on
            # the ratio of their means, which the losses' ratio follows to first order)
            da = [x - y for x, y in zip(runs[a], orig)]
            db = [x - y for x, y in zip(runs[b], orig)]
            mb = statistics.fmean(db)
            f = statistics.fmean(da) / mb
            se = statistics.stdev([(x - f * y) / mb for x, y in zip(da, db)]) / math.sqrt(k)
            return f"{100 * loss[a] / loss[b]:.0f} ± {100 * se:.0f} %"
        print(f"| {name} | {math.exp(statistics.fmean(orig)):.3f} | {loss['rtn-g128']:.3f} | "
              f"{loss['rtn-g128-llamagrid']:.3f} | {loss[gptq]:.3f} | {frac(gptq, 'rtn-g128-llamagrid')} | "
              f"{frac(gptq, 'rtn-g128')} |")


if __name__ == "__main__":
    main()
