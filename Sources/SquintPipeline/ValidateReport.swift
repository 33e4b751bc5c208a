import Foundation
import SquintFormats

/// Human-readable forms of a `ValidationReport`: the terminal table and the self-contained HTML page.
public enum ValidateText {
    static func f(_ x: Double, _ digits: Int = 4) -> String {
        x.isFinite ? String(format: "%.\(digits)g", x) : "\(x)"
    }

    /// "x ± se" (the standard error; omitted when unknown).
    static func pm(_ x: Double, _ se: Double) -> String { se.isFinite ? "\(f(x)) ± \(f(se, 2))" : f(x) }
    /// A proportion as "p ± se %".
    static func pct(_ p: Double, _ se: Double) -> String {
        se.isFinite ? String(format: "%.2f ± %.2f %%", p * 100, se * 100) : String(format: "%.2f %%", p * 100)
    }

    /// Control characters and newlines shown escaped, so a token cannot break the table.
    static func visible(_ s: String) -> String {
        var o = ""
        for u in s.unicodeScalars {
            switch u {
            case "\n": o += "\\n"
            case "\t": o += "\\t"
            case "\r": o += "\\r"
            default: if u.value < 0x20 || u.value == 0x7F { o += String(format: "\\x%02x", u.value) } else { o.unicodeScalars.append(u) }
            }
        }
        return o
    }

    /// What was scored, in words: "8 samples, 200 scored caption positions", "10 windows of 512 tokens, 2550 scored positions".
    static func scope(_ r: ValidationReport) -> String {
        if r.mode == "image-caption" { return "\(r.samples) samples, \(r.positions) scored caption positions" }
        return "\(r.samples) windows of \(r.context.map(String.init) ?? "?") tokens, \(r.positions) scored positions (second halves)"
    }

    /// What a newcomer must know about a model written by `squint synth`.
    public static let syntheticNote = "synthetic weights (squint synth): the drift figures measure the conversion, "
        + "but perplexities and generated texts are noise by design"

    public static func table(_ r: ValidationReport) -> String {
        let A = r.referenceLabel, B = r.candidateLabel
        var s = "squint validate: \(r.bf16Model) (\(A)) vs \(r.int4Model) (\(B))\n"
        s += "  \(scope(r))\n"
        if r.synthetic { s += "  note: \(syntheticNote)\n" }
        s += "\n"
        s += "  KL(\(A) || \(B))   mean \(pm(r.klMean, r.klMeanSE))   max \(f(r.klMax))  (nats)\n"
        s += "    percentiles      99.9% \(f(r.klP999))   99% \(f(r.klP99))   90% \(f(r.klP90))   50% \(f(r.klMedian))   10% \(f(r.klP10))\n"
        s += "  same top-1         \(pct(r.top1Agreement, r.top1AgreementSE))     top-5 agreement "
            + String(format: "%.2f %%", r.top5Agreement * 100) + "  (\(A) top-1 within \(B) top-5)\n"
        s += "  perplexity         \(A) \(f(r.pplBF16))   \(B) \(f(r.pplInt4))   ratio \(B)/\(A) \(pm(r.pplRatio, r.pplRatioSE))"
            + "   (mean ln ratio \(pm(r.lnPplRatio, r.lnPplRatioSE)))\n"
        if r.greedyTokens > 0 {
            s += String(format: "  greedy (%d tokens)  same token %.1f %%   shared prefix %.1f %%\n", r.greedyTokens,
                        r.greedyAgreement * 100, r.greedyPrefixAgreement * 100)
        }
        var stages = r.perBlock
        if let im = r.imageFeatures { stages.insert(im, at: 0) }
        if !stages.isEmpty {
            s += "\n  where drift enters (hidden state after each block, all positions)\n"
            s += "    stage                     rel. error      cosine\n"
        }
        for d in stages {
            s += "    " + d.name.padding(toLength: 24, withPad: " ", startingAt: 0)
                + "  " + f(d.relativeError).padding(toLength: 14, withPad: " ", startingAt: 0) + "  " + String(format: "%.6f", d.cosine) + "\n"
        }
        if !r.worst.isEmpty {
            s += "\n  worst positions\n    KL          pos   target          \(A) top        \(B) top        sample\n"
            func cell(_ t: String, _ n: Int) -> String {
                let q = "'\(visible(t))'"
                return q.count >= n ? q + " " : q.padding(toLength: n, withPad: " ", startingAt: 0)
            }
            for w in r.worst {
                s += "    " + f(w.kl).padding(toLength: 10, withPad: " ", startingAt: 0) + "  "
                    + String(w.position).padding(toLength: 5, withPad: " ", startingAt: 0) + " "
                    + cell(w.token, 15) + " " + cell(w.bf16Top, 15) + " " + cell(w.int4Top, 15) + " " + w.sample + "\n"
            }
        }
        if let g = r.greedy.first {
            s += "\n  greedy continuation of \(g.sample) (\(g.matchedPrefix)/\(r.greedyTokens) tokens shared)\n"
            s += "    \(A): \(visible(g.bf16Text))\n    \(B): \(visible(g.int4Text))\n"
        }
        s += String(format: "\n  %.1f s (forward passes %.1f s)\n", r.seconds, r.forwardSeconds)
        if r.gate.maxKL != nil || r.gate.minTop1 != nil {
            s += r.gate.passed ? "  gate: PASSED\n" : "  gate: FAILED: " + r.gate.failures.joined(separator: "; ") + "\n"
        }
        return s
    }

    static func esc(_ s: String) -> String {
        var o = ""
        for c in visible(s) {
            switch c {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            case "'": o += "&#39;"
            default: o.append(c)
            }
        }
        return o
    }

    /// An `<svg>` that scales to its box (viewBox, width 100%) and keeps its aspect ratio.
    static func svgOpen(_ w: Double, _ h: Double, label: String) -> String {
        // Inline in HTML5 an <svg> needs no xmlns (the parser assigns it), so the page holds no URL.
        "<svg viewBox=\"0 0 \(Int(w)) \(Int(h))\" width=\"100%\" preserveAspectRatio=\"xMidYMid meet\" role=\"img\" aria-label=\"\(esc(label))\">"
            + "<rect width=\"\(Int(w))\" height=\"\(Int(h))\" fill=\"#fff\"/>"
    }

    static func n(_ x: Double) -> String { String(format: "%.1f", x) }

    /// Per-block relative error (log scale) as an inline SVG line chart. An error of exactly zero
    /// cannot sit on a log axis: it is drawn on its own "0" line below the lowest decade.
    static func driftSVG(_ stages: [ValidationReport.Drift], labels: (String, String) = ("BF16", "Int4")) -> String {
        let (A, B) = labels
        // Room on the right and below for the last stage name, drawn at 45 degrees.
        let w = 720.0, h = 300.0, left = 64.0, right = 100.0, top = 20.0, bottom = 90.0
        let count = max(stages.count, 1)
        let nonzero = stages.map(\.relativeError).filter { $0 > 0 && $0.isFinite }
        let hasZero = stages.contains { $0.relativeError == 0 }
        let lo = floor(log10(nonzero.min() ?? 1e-6)), hi = max(ceil(log10(nonzero.max() ?? 1)), lo + 1)
        // The log axis ends 22 px above the plot's bottom when a zero line is needed.
        let zeroGap = hasZero ? 22.0 : 0
        func x(_ i: Int) -> Double { left + (w - left - right) * (count == 1 ? 0.5 : Double(i) / Double(count - 1)) }
        func y(_ e: Double) -> Double {
            if e == 0 { return h - bottom }
            return top + (h - top - bottom - zeroGap) * (1 - (log10(e) - lo) / (hi - lo))
        }
        var s = svgOpen(w, h, label: "relative error of the hidden state after each block, log scale")
        var d = lo
        while d <= hi {
            let yy = y(pow(10, d))
            s += "<line x1=\"\(n(left))\" y1=\"\(n(yy))\" x2=\"\(n(w - right))\" y2=\"\(n(yy))\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(n(left - 6))\" y=\"\(n(yy + 4))\" font-size=\"11\" text-anchor=\"end\">1e\(Int(d))</text>"
            d += 1
        }
        if hasZero {
            let yy = y(0)
            s += "<line x1=\"\(n(left))\" y1=\"\(n(yy))\" x2=\"\(n(w - right))\" y2=\"\(n(yy))\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>"
            s += "<text x=\"\(n(left - 6))\" y=\"\(n(yy + 4))\" font-size=\"11\" text-anchor=\"end\" class=\"zero-label\">0</text>"
        }
        let pts = stages.enumerated().map { "\(n(x($0.offset))),\(n(y($0.element.relativeError.isFinite ? $0.element.relativeError : 0)))" }
        s += "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"\(pts.joined(separator: " "))\"/>"
        for (i, st) in stages.enumerated() {
            let e = st.relativeError.isFinite ? st.relativeError : 0
            let fill = e == 0 ? "#fff" : "#d62728"
            s += "<circle cx=\"\(n(x(i)))\" cy=\"\(n(y(e)))\" r=\"3.5\" fill=\"\(fill)\" stroke=\"#d62728\"><title>\(esc(st.name)): rel. error \(f(st.relativeError)), cosine \(String(format: "%.6f", st.cosine))</title></circle>"
            if count <= 40 || i % max(1, count / 20) == 0 {
                s += "<text transform=\"translate(\(n(x(i))),\(n(h - bottom + 12))) rotate(45)\" font-size=\"10\">\(esc(st.name))</text>"
            }
        }
        let mid = top + (h - top - bottom) / 2
        s += "<text x=\"14\" y=\"\(n(mid))\" font-size=\"11\" transform=\"rotate(-90 14 \(n(mid)))\" text-anchor=\"middle\" class=\"axis-label\">relative error ‖\(B) − \(A)‖ / ‖\(A)‖</text>"
        return s + "</svg>"
    }

    /// Where a KL value falls on the histogram's x axis (log-spaced bins; clamped to the axis).
    static func histogramX(_ kl: Double, edges: [Double], left: Double, width: Double) -> Double {
        guard let first = edges.first, let last = edges.last, edges.count > 1, kl > 0 else { return left }
        let t = (log10(kl) - log10(first)) / (log10(last) - log10(first))
        return left + width * min(max(t, 0), 1)
    }

    /// The KL histogram as an inline SVG bar chart (log-spaced bins), with the mean KL and the gate's
    /// --max-kl drawn as vertical lines (the mean in red when it fails the gate).
    static func histogramSVG(_ hgm: ValidationReport.Histogram, mean: Double? = nil, maxKL: Double? = nil,
                             labels: (String, String) = ("BF16", "Int4")) -> String {
        let (A, B) = labels
        let w = 640.0, h = 250.0, left = 64.0, right = 20.0, top = 28.0, bottom = 44.0
        let count = hgm.counts.count, maxC = Double(max(hgm.counts.max() ?? 1, 1))
        let plotW = w - left - right
        let bw = plotW / Double(max(count, 1))
        var s = svgOpen(w, h, label: "histogram of KL per position")
        // y axis: ticks at 0, half and the largest count.
        for frac in [0.0, 0.5, 1.0] {
            let yy = h - bottom - (h - top - bottom) * frac
            s += "<line x1=\"\(n(left))\" y1=\"\(n(yy))\" x2=\"\(n(w - right))\" y2=\"\(n(yy))\" stroke=\"#eee\"/>"
            s += "<text x=\"\(n(left - 6))\" y=\"\(n(yy + 4))\" font-size=\"10\" text-anchor=\"end\">\(Int((maxC * frac).rounded()))</text>"
        }
        for (i, c) in hgm.counts.enumerated() {
            let bh = (h - top - bottom) * Double(c) / maxC
            s += "<rect x=\"\(n(left + Double(i) * bw + 1))\" y=\"\(n(h - bottom - bh))\" width=\"\(n(max(bw - 2, 0.5)))\" height=\"\(n(bh))\" fill=\"#1f77b4\">"
            s += "<title>\(f(hgm.edges[i], 2)) &lt;= KL &lt; \(f(hgm.edges[i + 1], 2)): \(c)</title></rect>"
            if i % 4 == 0 {
                s += "<text x=\"\(n(left + Double(i) * bw))\" y=\"\(n(h - bottom + 14))\" font-size=\"10\" text-anchor=\"middle\">\(f(hgm.edges[i], 1))</text>"
            }
        }
        if let mean, mean.isFinite {
            let failing = maxKL.map { !(mean <= $0) } ?? false
            let xx = histogramX(mean, edges: hgm.edges, left: left, width: plotW)
            let color = failing ? "#c22" : "#333"
            s += "<line x1=\"\(n(xx))\" y1=\"\(n(top - 4))\" x2=\"\(n(xx))\" y2=\"\(n(h - bottom))\" stroke=\"\(color)\" stroke-width=\"1.5\" class=\"mean-line\"/>"
            s += "<text x=\"\(n(xx + 3))\" y=\"\(n(top + 6))\" font-size=\"10\" fill=\"\(color)\">mean \(f(mean, 3))\(failing ? " ✗" : "")</text>"
        }
        if let maxKL {
            let xx = histogramX(maxKL, edges: hgm.edges, left: left, width: plotW)
            s += "<line x1=\"\(n(xx))\" y1=\"\(n(top - 14))\" x2=\"\(n(xx))\" y2=\"\(n(h - bottom))\" stroke=\"#e0a800\" stroke-width=\"2\" stroke-dasharray=\"5 3\" class=\"gate-line\"/>"
            s += "<text x=\"\(n(xx - 3))\" y=\"\(n(top - 4))\" font-size=\"10\" text-anchor=\"end\" fill=\"#8a6d00\">gate --max-kl \(f(maxKL, 3))</text>"
        }
        s += "<text x=\"\(n(left + plotW / 2))\" y=\"\(n(h - 8))\" font-size=\"11\" text-anchor=\"middle\" class=\"axis-label\">KL(\(A) ‖ \(B)) per position, nats (log bins)</text>"
        let mid = top + (h - top - bottom) / 2
        s += "<text x=\"14\" y=\"\(n(mid))\" font-size=\"11\" transform=\"rotate(-90 14 \(n(mid)))\" text-anchor=\"middle\" class=\"axis-label\">positions</text>"
        return s + "</svg>"
    }

    /// A table inside a box that scrolls sideways on a narrow screen instead of widening the page.
    static func scrollTable(_ inner: String) -> String { "<div class=\"scroll\"><table>" + inner + "</table></div>\n" }

    /// A self-contained page (inline CSS and SVG, no script, no external URL): opens offline and
    /// reads on a phone (viewport meta, plots that scale, tables that scroll in their box).
    public static func html(_ r: ValidationReport) -> String {
        let A = r.referenceLabel, B = r.candidateLabel
        var p = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        p += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>squint validate: \(esc(r.int4Model))</title>\n"
        p += "<style>body{font:14px system-ui,sans-serif;margin:1em auto;padding:0 1em;max-width:60em;line-height:1.4}"
        p += "table{border-collapse:collapse}.scroll{overflow-x:auto;max-width:100%;margin:0.5em 0}"
        p += "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}"
        p += ".pass{color:#2a2}.fail{color:#c22}tr.fail td{background:#fde8e8}"
        p += ".note{background:#fff6d5;border-left:4px solid #e0a800;padding:6px 10px}"
        p += "svg{display:block;max-width:46em;height:auto}code{background:#f6f6f6;word-break:break-all}"
        p += "td code{word-break:normal;white-space:pre}h1{font-size:1.5em}</style></head><body>\n"
        p += "<h1>Drift: \(A) vs \(B)</h1>\n<p>\(A) <code>\(esc(r.bf16Model))</code> vs \(B) <code>\(esc(r.int4Model))</code>: "
        p += "\(esc(scope(r))) (teacher forcing).</p>\n"
        if r.synthetic { p += "<p class=\"note\"><b>Note:</b> \(esc(syntheticNote)).</p>\n" }
        if let run = r.run {
            var rows: [(String, String)] = [
                ("command", run.commandLine), ("Squint", run.squintVersion), ("date", run.date),
            ]
            if let q = run.quantization { rows.append(("quantization", q)) }
            func size(_ b: Int) -> String { String(format: "%.2f MiB", Double(b) / 1_048_576) }
            rows.append(("\(A) model", "\(size(run.bf16Bytes)), " + String(format: "%.2f bits per weight", run.bf16BitsPerWeight)))
            rows.append(("\(B) model", "\(size(run.int4Bytes)), " + String(format: "%.2f bits per weight", run.int4BitsPerWeight)
                + " (all tensors over the \(A) model's \(run.parameters) parameters)"))
            p += "<div class=\"scroll\"><table class=\"run\">"
            for (k, v) in rows { p += "<tr><th>\(esc(k))</th><td>\(k == "command" ? "<code>\(esc(v))</code>" : esc(v))</td></tr>" }
            p += "</table></div>\n"
        }
        if r.gate.maxKL != nil || r.gate.minTop1 != nil {
            p += r.gate.passed ? "<p class=\"pass\"><b>Gate passed.</b></p>\n"
                : "<p class=\"fail\"><b>Gate failed:</b> \(esc(r.gate.failures.joined(separator: "; ")))</p>\n"
        }
        // Figures the gate checks carry their threshold and a mark; failing rows are highlighted.
        let klFails = r.gate.maxKL.map { !(r.klMean <= $0) }
        let top1Fails = r.gate.minTop1.map { !(r.top1Agreement >= $0) }
        func gated(_ v: String, _ fails: Bool?, _ rule: String) -> (String, Bool) {
            guard let fails else { return (v, false) }
            return (v + (fails ? "  ✗ fails \(rule)" : "  ✓ \(rule)"), fails)
        }
        var rows: [(String, String, Bool)] = []
        let klMean = gated(pm(r.klMean, r.klMeanSE), klFails, "≤ \(r.gate.maxKL.map { f($0) } ?? "") (--max-kl)")
        rows.append(("KL mean (nats)", klMean.0, klMean.1))
        rows += [("KL max", f(r.klMax), false), ("KL 99.9 %", f(r.klP999), false), ("KL 99 %", f(r.klP99), false),
                 ("KL 90 %", f(r.klP90), false), ("KL median", f(r.klMedian), false), ("KL 10 %", f(r.klP10), false)]
        let top1 = gated(pct(r.top1Agreement, r.top1AgreementSE), top1Fails,
                         "≥ \(r.gate.minTop1.map { String(format: "%.2f %%", $0 * 100) } ?? "") (--min-top1)")
        rows.append(("same top-1", top1.0, top1.1))
        rows += [
            ("top-5 agreement (\(A) top-1 in \(B) top-5)", String(format: "%.2f %%", r.top5Agreement * 100), false),
            ("perplexity \(A)", f(r.pplBF16), false), ("perplexity \(B)", f(r.pplInt4), false), ("perplexity ratio \(B) / \(A)", pm(r.pplRatio, r.pplRatioSE), false),
            ("mean ln(PPL \(B) / PPL \(A))", pm(r.lnPplRatio, r.lnPplRatioSE), false),
        ]
        if r.greedyTokens > 0 {
            rows += [("greedy: same token", String(format: "%.1f %% of %d tokens", r.greedyAgreement * 100, r.greedyTokens), false),
                     ("greedy: shared prefix", String(format: "%.1f %%", r.greedyPrefixAgreement * 100), false)]
        } else {
            rows.append(("greedy continuations", r.mode == "image-caption" ? "not run (--greedy-tokens 0)" : "not measured in this mode", false))
        }
        p += "<h2>Summary</h2>"
        p += scrollTable(rows.map { "<tr\($0.2 ? " class=\"fail\"" : "")><th>\(esc($0.0))</th><td>\(esc($0.1))</td></tr>" }.joined())
        var stages = r.perBlock
        if let im = r.imageFeatures { stages.insert(im, at: 0) }
        if !stages.isEmpty {
            p += "<h2>Where drift enters</h2><p>Relative error ‖\(B) − \(A)‖ / ‖\(A)‖ of the hidden state after each block "
            p += "(all positions of all samples; the last point includes ln_f; an error of exactly 0 is drawn on the dashed 0 line).</p>\n"
            p += driftSVG(stages, labels: (A, B)) + "\n"
            p += scrollTable("<tr><th>stage</th><th>relative error</th><th>cosine</th></tr>"
                + stages.map { "<tr><td>\(esc($0.name))</td><td>\(f($0.relativeError))</td><td>\(String(format: "%.6f", $0.cosine))</td></tr>" }.joined())
        }
        p += "<h2>KL per position</h2>\n" + histogramSVG(r.klHistogram, mean: r.klMean, maxKL: r.gate.maxKL, labels: (A, B)) + "\n"
        var worst = "<tr><th>KL</th><th>sample</th><th>position</th><th>target</th><th>\(A) top</th><th>\(B) top</th>"
        worst += "<th>log p \(A)</th><th>log p \(B)</th></tr>"
        for w in r.worst {
            worst += "<tr><td>\(f(w.kl))</td><td>\(esc(w.sample))</td><td>\(w.position)</td><td><code>\(esc(w.token))</code></td>"
            worst += "<td><code>\(esc(w.bf16Top))</code></td><td><code>\(esc(w.int4Top))</code></td><td>\(f(w.logprobBF16))</td><td>\(f(w.logprobInt4))</td></tr>"
        }
        p += "<h2>Worst positions</h2>" + scrollTable(worst)
        if !r.greedy.isEmpty {
            var g = "<tr><th>sample</th><th>shared</th><th>\(A)</th><th>\(B)</th></tr>"
            for x in r.greedy {
                g += "<tr><td>\(esc(x.sample))</td><td>\(x.matchedPrefix)/\(r.greedyTokens)</td><td>\(esc(x.bf16Text))</td><td>\(esc(x.int4Text))</td></tr>"
            }
            p += "<h2>Greedy continuations</h2>" + scrollTable(g)
        }
        p += String(format: "<p>%.1f s in all; forward passes %.1f s.</p>\n</body></html>\n", r.seconds, r.forwardSeconds)
        return p
    }

    /// Checks, before any work, that the report can go to `folder`: a folder that does not exist yet
    /// (it and missing parents are created), or an empty one; an existing file or a folder with
    /// something in it is refused unless `overwrite` (--force). The nearest existing parent must be a
    /// writable folder. Every refusal is one line naming the path.
    public static func checkReportFolder(_ folder: String, overwrite: Bool) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: folder, isDirectory: &isDir) {
            if !isDir.boolValue {
                guard overwrite else {
                    throw FormatError.io(path: folder, message: "is a file, and --report takes a folder (pass --force to replace the file)")
                }
                return try checkWritableParent(of: folder)
            }
            let entries = (try? fm.contentsOfDirectory(atPath: folder)) ?? []
            if !entries.isEmpty && !overwrite {
                throw FormatError.io(path: folder, message: "already exists and is not empty (pass --force to write index.html into it)")
            }
            guard access(folder, W_OK) == 0 else { throw FormatError.io(path: folder, message: "the folder is not writable") }
            return
        }
        try checkWritableParent(of: folder)
    }

    static func checkWritableParent(of path: String) throws {
        var p = Paths.parent(of: path)
        var isDir: ObjCBool = false
        while !FileManager.default.fileExists(atPath: p, isDirectory: &isDir) {
            let up = Paths.parent(of: p)
            if up == p { break }
            p = up
        }
        guard isDir.boolValue else { throw FormatError.io(path: p, message: "is a file, so the report folder cannot be made under it") }
        guard access(p, W_OK) == 0 else { throw FormatError.io(path: p, message: "the folder is not writable") }
    }

    /// Writes `folder/index.html` atomically, creating the folder (see `checkReportFolder` for what
    /// is refused without `overwrite`). Returns the page's path.
    public static func writeHTML(_ r: ValidationReport, folder: String, overwrite: Bool = false) throws -> String {
        try checkReportFolder(folder, overwrite: overwrite)
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: folder, isDirectory: &isDir), !isDir.boolValue {
            do { try fm.removeItem(atPath: folder) } catch { throw FormatError.io(path: folder, doing: "cannot replace the file", error) }
        }
        do { try fm.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw FormatError.io(path: folder, doing: "cannot create the report folder", error)
        }
        let path = folder + "/index.html"
        try AtomicFileWriter.write(Array(html(r).utf8), to: path, overwrite: true)
        return path
    }
}
