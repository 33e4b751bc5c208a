import Foundation
import SquintFormats

/// Human-readable rendering of an `InspectReport` (the `--json` form is the Codable encoding).
public enum InspectText {
    public static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n); var u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : String(format: "%.2f %@", v, units[u])
    }

    static func count(_ n: Int) -> String {
        if n >= 1_000_000_000 { return String(format: "%.2fB", Double(n) / 1e9) }
        if n >= 1_000_000 { return String(format: "%.2fM", Double(n) / 1e6) }
        if n >= 1_000 { return String(format: "%.1fK", Double(n) / 1e3) }
        return "\(n)"
    }

    static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
    static func lpad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }

    static func fmt(_ x: Double?) -> String {
        guard let x else { return "-" }
        if x == 0 { return "0" }
        if abs(x) >= 1e4 || abs(x) < 1e-3 { return String(format: "%.3e", x) }
        return String(format: "%.5f", x)
    }

    public static func render(_ r: InspectReport, showTensors: Bool = true) -> String {
        var out: [String] = []
        out.append("\(r.path)")
        out.append("  format: \(r.format)   layout: \(r.layout)   tensors: \(r.tensorCount)   data: \(bytes(r.totalBytes)) (\(r.totalBytes) bytes)")
        for n in r.layoutNotes { out.append("  check: \(n)") }
        if let nf = r.nonFinite {
            out.append("  non-finite: \(nf.nan) NaN and \(nf.inf) Inf values in \(nf.tensors) tensors; the first is "
                + "\(nf.firstTensor)[\(nf.firstIndex.map(String.init).joined(separator: ", "))]")
        }
        if let c = r.config {
            for k in ["llm", "vision", "resampler", "torch_dtype"] { if let v = c[k] { out.append("  \(pad(k + ":", 12)) \(v)") } }
        }
        if let q = r.quantization {
            out.append("  quantization: \(q.quantMethod.map { $0 + ", " } ?? "")\(q.bits)-bit, group \(q.groupSize), \(q.sym ? "sym" : "asym"), damp \(q.dampPercent), desc_act \(q.descAct), static_groups \(q.staticGroups), true_sequential \(q.trueSequential)")
        }
        if let g = r.gguf {
            out.append("  gguf: version \(g.version), alignment \(g.alignment), \(count(g.elements)) weights at "
                + String(format: "%.3f", g.bitsPerWeight) + " bits per weight")
            out.append("")
            out.append("Metadata (\(g.metadata.count) keys)")
            for e in g.metadata { out.append("  \(pad(e.key, 40)) \(pad(e.type, 14)) \(e.value)") }
        } else if !r.metadata.isEmpty {
            out.append("  metadata: " + r.metadata.keys.sorted().map { "\($0)=\(r.metadata[$0]!)" }.joined(separator: ", "))
        }
        if r.files.count > 1 || r.format.hasPrefix("sharded") {
            out.append("")
            out.append("Files")
            for f in r.files { out.append("  \(pad((f.file as NSString).lastPathComponent, 40)) \(lpad(bytes(f.bytes), 11))  \(lpad("\(f.tensors)", 5)) tensors") }
        }
        out.append("")
        out.append(r.gguf == nil ? "By dtype" : "By ggml type")
        for d in r.totalsByDtype {
            var line = "  \(pad(d.dtype, 8)) \(lpad("\(d.tensors)", 6)) tensors  \(lpad(count(d.elements), 9)) elements  \(lpad(bytes(d.bytes), 11))"
            if let t = r.gguf?.types.first(where: { $0.type == d.dtype }) { line += String(format: "  %.4g bits/weight", t.bitsPerWeight) }
            out.append(line)
        }
        out.append("")
        out.append("Modules")
        for m in r.modules {
            let blocks = m.blocks > 1 ? " [\(m.blocks) blocks, \(bytes(m.bytes / m.blocks)) each]" : ""
            out.append("  \(pad(m.module, 46)) \(lpad("\(m.tensors)", 5)) tensors \(lpad(count(m.elements), 9)) \(lpad(bytes(m.bytes), 11))\(blocks)")
        }
        if showTensors && !r.tensors.isEmpty {
            out.append("")
            let hasStats = r.tensors.contains { $0.stats != nil }
            var header = "\(pad("name", 58)) \(pad("dtype", 7)) \(pad("shape", 16)) \(lpad("offset", 12)) \(lpad("bytes", 11))  file"
            if hasStats { header += "   min max mean std nan inf" }
            out.append(header)
            for t in r.tensors {
                var line = "\(pad(t.name, 58)) \(pad(t.dtype, 7)) \(pad("[" + t.shape.map(String.init).joined(separator: ",") + "]", 16)) \(lpad("\(t.offset)", 12)) \(lpad("\(t.bytes)", 11))  \((t.file as NSString).lastPathComponent)"
                if t.strides != nil { line += "  strides \(t.strides!)" }
                if let s = t.stats {
                    line += "   \(fmt(s.min)) \(fmt(s.max)) \(fmt(s.mean)) \(fmt(s.std)) \(s.nan) \(s.inf)"
                }
                out.append(line)
            }
        }
        // Every line holds names and values from the file: escaped so each stays one line.
        return out.map(printable).joined(separator: "\n")
    }
}
