import Foundation
import SquintFormats

/// Human-readable forms of a `ValidationReport`: the terminal table and the self-contained HTML page.
public enum ValidateText {
    static func f(_ x: Double, _ digits: Int = 4) -> String {
        x.isFinite ? String(format: "%.\(digits)g", x) : "\(x)"
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

    /// What a newcomer must know about a model written by `squint synth`.
    public static let syntheticNote = "synthetic weights (squint synth): the drift figures measure the conversion, "
        + "but perplexities and generated texts are noise by design"

    public static func table(_ r: ValidationReport) -> String {
        var s = "squint validate: \(r.bf16Model) (BF16) vs \(r.int4Model) (Int4)\n"
        s += "  \(r.samples) samples, \(r.positions) scored caption positions\n"
        if r.synthetic { s += "  note: \(syntheticNote)\n" }
        s += "\n"
        s += "  KL(BF16 || Int4)   mean \(f(r.klMean))   median \(f(r.klMedian))   p99 \(f(r.klP99))   max \(f(r.klMax))  (nats)\n"
        s += String(format: "  top-1 agreement    %.2f %%     top-5 agreement %.2f %%  (BF16 top-1 within Int4 top-5)\n",
                    r.top1Agreement * 100, r.top5Agreement * 100)
        s += "  perplexity         BF16 \(f(r.pplBF16))   Int4 \(f(r.pplInt4))   ratio \(f(r.pplRatio))\n"
        if r.greedyTokens > 0 {
            s += String(format: "  greedy (%d tokens)  same token %.1f %%   shared prefix %.1f %%\n", r.greedyTokens,
                        r.greedyAgreement * 100, r.greedyPrefixAgreement * 100)
        }
        s += "\n  where drift enters (hidden state after each block, all positions)\n"
        s += "    stage                     rel. error      cosine\n"
        var stages = r.perBlock
        if let im = r.imageFeatures { stages.insert(im, at: 0) }
        for d in stages {
            s += "    " + d.name.padding(toLength: 24, withPad: " ", startingAt: 0)
                + "  " + f(d.relativeError).padding(toLength: 14, withPad: " ", startingAt: 0) + "  " + String(format: "%.6f", d.cosine) + "\n"
        }
        if !r.worst.isEmpty {
            s += "\n  worst positions\n    KL          pos   target          BF16 top        Int4 top        sample\n"
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
            s += "    BF16: \(visible(g.bf16Text))\n    Int4: \(visible(g.int4Text))\n"
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

    /// Per-block relative error (log scale) and cosine as an inline SVG line chart.
    static func driftSVG(_ stages: [ValidationReport.Drift]) -> String {
        // Room on the right and below for the last stage name, drawn at 45 degrees.
        let w = 720.0, h = 280.0, left = 60.0, right = 100.0, top = 20.0, bottom = 90.0
        let n = max(stages.count, 1)
        let errs = stages.map { max($0.relativeError, 1e-9) }
        let lo = floor(log10(errs.min() ?? 1e-6)), hi = max(ceil(log10(errs.max() ?? 1)), lo + 1)
        func x(_ i: Int) -> Double { left + (w - left - right) * (n == 1 ? 0.5 : Double(i) / Double(n - 1)) }
        func y(_ e: Double) -> Double { top + (h - top - bottom) * (1 - (log10(e) - lo) / (hi - lo)) }
        // Inline in HTML5 an <svg> needs no xmlns (the parser assigns it), so the page holds no URL.
        var s = "<svg width=\"\(Int(w))\" height=\"\(Int(h))\" role=\"img\" aria-label=\"per-block drift\">"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>"
        var d = lo
        while d <= hi {
            let yy = y(pow(10, d))
            s += "<line x1=\"\(left)\" y1=\"\(yy)\" x2=\"\(w - right)\" y2=\"\(yy)\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(yy + 4)\" font-size=\"11\" text-anchor=\"end\">1e\(Int(d))</text>"
            d += 1
        }
        let pts = errs.enumerated().map { "\(x($0.offset)),\(y($0.element))" }.joined(separator: " ")
        s += "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"\(pts)\"/>"
        for (i, st) in stages.enumerated() {
            s += "<circle cx=\"\(x(i))\" cy=\"\(y(errs[i]))\" r=\"3\" fill=\"#d62728\"><title>\(esc(st.name)): rel. error \(f(st.relativeError)), cosine \(String(format: "%.6f", st.cosine))</title></circle>"
            if n <= 40 || i % max(1, n / 20) == 0 {
                s += "<text transform=\"translate(\(x(i)),\(h - bottom + 12)) rotate(45)\" font-size=\"10\">\(esc(st.name))</text>"
            }
        }
        s += "<text x=\"12\" y=\"\(top + (h - top - bottom) / 2)\" font-size=\"11\" transform=\"rotate(-90 12 \(top + (h - top - bottom) / 2))\" text-anchor=\"middle\">relative error</text>"
        return s + "</svg>"
    }

    /// The KL histogram as an inline SVG bar chart (log-spaced bins).
    static func histogramSVG(_ hgm: ValidationReport.Histogram) -> String {
        let w = 640.0, h = 220.0, left = 50.0, right = 20.0, top = 20.0, bottom = 40.0
        let n = hgm.counts.count, maxC = Double(max(hgm.counts.max() ?? 1, 1))
        let bw = (w - left - right) / Double(max(n, 1))
        var s = "<svg width=\"\(Int(w))\" height=\"\(Int(h))\" role=\"img\" aria-label=\"KL histogram\">"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>"
        for (i, c) in hgm.counts.enumerated() {
            let bh = (h - top - bottom) * Double(c) / maxC
            s += "<rect x=\"\(left + Double(i) * bw + 1)\" y=\"\(h - bottom - bh)\" width=\"\(bw - 2)\" height=\"\(bh)\" fill=\"#1f77b4\">"
            s += "<title>\(f(hgm.edges[i], 2)) &lt;= KL &lt; \(f(hgm.edges[i + 1], 2)): \(c)</title></rect>"
            if i % 4 == 0 {
                s += "<text x=\"\(left + Double(i) * bw)\" y=\"\(h - bottom + 14)\" font-size=\"10\">\(f(hgm.edges[i], 1))</text>"
            }
        }
        s += "<text x=\"\(left)\" y=\"\(h - 6)\" font-size=\"11\">KL(BF16 || Int4) per position, nats (log bins)</text>"
        s += "<text x=\"\(left - 6)\" y=\"\(top + 4)\" font-size=\"11\" text-anchor=\"end\">\(Int(maxC))</text>"
        return s + "</svg>"
    }

    /// A self-contained page (inline CSS and SVG, no script, no external URL): opens offline.
    public static func html(_ r: ValidationReport) -> String {
        var p = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>squint validate: \(esc(r.int4Model))</title>\n"
        p += "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}"
        p += "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}.pass{color:#2a2}.fail{color:#c22}.note{background:#fff6d5;border-left:4px solid #e0a800;padding:6px 10px}"
        p += "code{background:#f6f6f6}</style></head><body>\n"
        p += "<h1>Drift: BF16 vs Int4</h1>\n<p>BF16 <code>\(esc(r.bf16Model))</code> vs Int4 <code>\(esc(r.int4Model))</code>: "
        p += "\(r.samples) samples, \(r.positions) scored caption positions (teacher forcing).</p>\n"
        if r.synthetic { p += "<p class=\"note\"><b>Note:</b> \(esc(syntheticNote)).</p>\n" }
        if r.gate.maxKL != nil || r.gate.minTop1 != nil {
            p += r.gate.passed ? "<p class=\"pass\"><b>Gate passed.</b></p>\n"
                : "<p class=\"fail\"><b>Gate failed:</b> \(esc(r.gate.failures.joined(separator: "; ")))</p>\n"
        }
        p += "<h2>Summary</h2><table>"
        var rows: [(String, String)] = [
            ("KL mean (nats)", f(r.klMean)), ("KL median", f(r.klMedian)), ("KL p99", f(r.klP99)), ("KL max", f(r.klMax)),
            ("top-1 agreement", String(format: "%.2f %%", r.top1Agreement * 100)),
            ("top-5 agreement (BF16 top-1 in Int4 top-5)", String(format: "%.2f %%", r.top5Agreement * 100)),
            ("perplexity BF16", f(r.pplBF16)), ("perplexity Int4", f(r.pplInt4)), ("perplexity ratio", f(r.pplRatio)),
        ]
        if r.greedyTokens > 0 {
            rows += [("greedy: same token", String(format: "%.1f %% of %d tokens", r.greedyAgreement * 100, r.greedyTokens)),
                     ("greedy: shared prefix", String(format: "%.1f %%", r.greedyPrefixAgreement * 100))]
        } else {
            rows.append(("greedy continuations", "not run (--greedy-tokens 0)"))
        }
        for (k, v) in rows { p += "<tr><th>\(esc(k))</th><td>\(esc(v))</td></tr>" }
        p += "</table>\n<h2>Where drift enters</h2><p>Relative error ‖Int4 − BF16‖ / ‖BF16‖ of the hidden state after each block "
        p += "(all positions of all samples; the last point includes ln_f).</p>\n"
        var stages = r.perBlock
        if let im = r.imageFeatures { stages.insert(im, at: 0) }
        p += driftSVG(stages) + "\n<table><tr><th>stage</th><th>relative error</th><th>cosine</th></tr>"
        for d in stages { p += "<tr><td>\(esc(d.name))</td><td>\(f(d.relativeError))</td><td>\(String(format: "%.6f", d.cosine))</td></tr>" }
        p += "</table>\n<h2>KL per position</h2>\n" + histogramSVG(r.klHistogram) + "\n"
        p += "<h2>Worst positions</h2><table><tr><th>KL</th><th>sample</th><th>position</th><th>target</th><th>BF16 top</th><th>Int4 top</th>"
        p += "<th>log p BF16</th><th>log p Int4</th></tr>"
        for w in r.worst {
            p += "<tr><td>\(f(w.kl))</td><td>\(esc(w.sample))</td><td>\(w.position)</td><td><code>\(esc(w.token))</code></td>"
            p += "<td><code>\(esc(w.bf16Top))</code></td><td><code>\(esc(w.int4Top))</code></td><td>\(f(w.logprobBF16))</td><td>\(f(w.logprobInt4))</td></tr>"
        }
        p += "</table>\n"
        if !r.greedy.isEmpty {
            p += "<h2>Greedy continuations</h2><table><tr><th>sample</th><th>shared</th><th>BF16</th><th>Int4</th></tr>"
            for g in r.greedy {
                p += "<tr><td>\(esc(g.sample))</td><td>\(g.matchedPrefix)/\(r.greedyTokens)</td><td>\(esc(g.bf16Text))</td><td>\(esc(g.int4Text))</td></tr>"
            }
            p += "</table>\n"
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
