#!/usr/bin/env python3
"""KL divergence (mean, vs the F16 original) against bits per weight for every file of the quality
study, one panel per model (files of the same size spread sideways by a few pixels), as an SVG (docs/img/quality-kl-bpw.svg). Standard library only; the
numbers come from scripts/quality/table.sh --tsv (the llama-perplexity logs in the cache).

Usage: python3 scripts/quality/plot.py [OUT.svg]
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = [("sm", "SmolLM2-135M-Instruct"), ("q05", "Qwen2.5-Coder-0.5B-Instruct"), ("q15", "Qwen2.5-Coder-1.5B-Instruct")]
# variant -> (label, colour, marker: circle for llama.cpp, square for Squint RTN, diamond for Squint GPTQ)
STYLE = {
    "llama-q4_0": ("llama.cpp Q4_0", "#888888", "o"),
    "llama-q4_0-imatrix": ("llama.cpp Q4_0 + imatrix", "#d62728", "o"),
    "llama-q4_1": ("llama.cpp Q4_1", "#9467bd", "o"),
    "llama-q4_k_m": ("llama.cpp Q4_K_M", "#ff7f0e", "o"),
    "rtn-q4_0": ("Squint RTN Q4_0 (AutoGPTQ grid)", "#aec7e8", "s"),
    "rtn-q4_0-llamagrid": ("Squint RTN Q4_0", "#1f77b4", "s"),
    "rtn-q4_1": ("Squint RTN Q4_1", "#c5b0d5", "s"),
    "gptq-q4_0-g32": ("Squint GPTQ Q4_0 (AutoGPTQ grid)", "#98df8a", "d"),
    "gptq-q4_0-g32-llamagrid": ("Squint GPTQ Q4_0", "#2ca02c", "d"),
    "gptq-q4_0-g32-llamagrid-act": ("Squint GPTQ Q4_0 act-order", "#006400", "d"),
    "gptq-q4_1-g32": ("Squint GPTQ Q4_1", "#e377c2", "d"),
    "gptq-q4_1-g32-act": ("Squint GPTQ Q4_1 act-order", "#8c0060", "d"),
    "gptq-q4_0-g32-llamagrid-act-shrink0.5": ("Squint GPTQ Q4_0 act-order, --hessian-shrink 0.5", "#17becf", "d"),
    "gptq-q4_0-g32-llamagrid-act-ss-shrink0.5": ("... and --scale-search", "#000000", "d"),
    "gptq-q4_0-g32-llamagrid-act-ssimat-shrink0.5": ("... --scale-search --scale-weights imatrix", "#b8860b", "d"),
}


def rows(model):
    out = subprocess.run(["bash", os.path.join(HERE, "table.sh"), "--tsv", model], check=False,
                         capture_output=True, text=True).stdout
    result = []
    for line in out.splitlines():
        f = line.split("\t")
        try:
            if f[0] in STYLE:  # the why-analysis splices are left out
                result.append((f[0], float(f[1]), float(f[2]), float(f[3])))
        except (ValueError, IndexError):
            continue
    return result


def marker(x, y, kind, colour):
    if kind == "o":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>'
    if kind == "s":
        return f'<rect x="{x - 4.5:.1f}" y="{y - 4.5:.1f}" width="9" height="9" fill="{colour}"/>'
    return f'<path d="M{x:.1f},{y - 6:.1f} L{x + 6:.1f},{y:.1f} L{x:.1f},{y + 6:.1f} L{x - 6:.1f},{y:.1f} Z" fill="{colour}"/>'


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "docs", "img", "quality-kl-bpw.svg")
    data = [(key, name, rows(key)) for key, name in MODELS]
    data = [d for d in data if d[2]]
    pw, ph, ml, mt, mb = 300, 260, 60, 40, 50
    legend_h = 20 * ((len(STYLE) + 1) // 2) + 10
    width = ml + len(data) * (pw + 30)
    height = mt + ph + mb + legend_h
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for i, (key, name, rs) in enumerate(data):
        x0 = ml + i * (pw + 30)
        bpws = [r[1] for r in rs]
        kls = [r[2] + r[3] for r in rs]
        xlo, xhi = min(bpws) - 0.05, max(bpws) + 0.05
        yhi = max(kls) * 1.1
        sx = lambda v: x0 + (v - xlo) / (xhi - xlo) * pw
        sy = lambda v: mt + ph - v / yhi * ph
        svg.append(f'<text x="{x0 + pw / 2}" y="{mt - 12}" text-anchor="middle" font-size="13" font-weight="bold">{name}</text>')
        svg.append(f'<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="black"/>')
        for k in range(6):
            v = yhi * k / 5
            svg.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eeeeee"/>')
            svg.append(f'<text x="{x0 - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        step = 0.1 if xhi - xlo < 1.5 else 0.25
        t = round(xlo / step + 0.4999) * step
        while t <= xhi:
            svg.append(f'<text x="{sx(t):.1f}" y="{mt + ph + 15}" text-anchor="middle">{t:.2f}</text>')
            t += step
        svg.append(f'<text x="{x0 + pw / 2}" y="{mt + ph + 32}" text-anchor="middle">bits per weight (whole file)</text>')
        if i == 0:
            svg.append(f'<text transform="translate({x0 - 42},{mt + ph / 2}) rotate(-90)" text-anchor="middle">'
                       'mean KL divergence vs F16 (lower is better)</text>')
        # Files of the same size (all Q4_0 variants) are spread sideways by a few pixels to stay legible.
        same = {}
        for v, b, kl, err in rs:
            same.setdefault(round(b, 1), []).append(v)
        for v, b, kl, err in rs:
            label, colour, kind = STYLE[v]
            group = same[round(b, 1)]
            x, y = sx(b) + 9 * (group.index(v) - (len(group) - 1) / 2), sy(kl)
            svg.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{sy(kl - err):.1f}" y2="{sy(kl + err):.1f}" stroke="{colour}"/>')
            svg.append(marker(x, y, kind, colour))
    ly = mt + ph + mb + 10
    for j, (v, (label, colour, kind)) in enumerate(STYLE.items()):
        lx = ml + (j % 2) * 330
        yy = ly + (j // 2) * 20
        svg.append(marker(lx, yy, kind, colour))
        svg.append(f'<text x="{lx + 12}" y="{yy + 4}">{label}</text>')
    svg.append("</svg>")
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        f.write("\n".join(svg) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
