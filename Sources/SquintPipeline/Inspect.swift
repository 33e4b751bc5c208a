import Foundation
import SquintFormats
import SquintModels
import CSquintKernels

/// Per-tensor statistics (`inspect --stats`), over finite values; NaN and Inf are counted apart.
public struct TensorStats: Codable, Equatable, Sendable {
    public var min: Double?
    public var max: Double?
    public var mean: Double?
    public var std: Double?
    public var nan: UInt64
    public var inf: UInt64
}

/// With `--stats`, when any value is NaN or Inf: how many, in how many tensors, and where the first is.
public struct NonFiniteSummary: Codable, Equatable, Sendable {
    public var tensors: Int
    public var nan: UInt64
    public var inf: UInt64
    /// The first tensor (in file order) holding one, and the index of its first non-finite element.
    public var firstTensor: String
    public var firstIndex: [Int]

    enum CodingKeys: String, CodingKey {
        case tensors, nan, inf
        case firstTensor = "first_tensor", firstIndex = "first_index"
    }
}

/// One row of `inspect`: where a tensor's bytes are. `offset` is absolute in `file`.
public struct TensorRow: Codable, Equatable, Sendable {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    public var file: String
    public var offset: Int
    public var bytes: Int
    public var strides: [Int]?
    public var stats: TensorStats?
}

public struct DTypeTotal: Codable, Equatable, Sendable {
    public var dtype: String
    public var tensors: Int
    public var elements: Int
    public var bytes: Int
}

/// Tensors grouped by module, with `transformer.h.N` and `resblocks.N` folded into one entry whose
/// `blocks` says how many were folded; `tensors`, `elements`, `bytes` cover all blocks.
public struct ModuleSummary: Codable, Equatable, Sendable {
    public var module: String
    public var blocks: Int
    public var tensors: Int
    public var elements: Int
    public var bytes: Int
}

public struct FileSummary: Codable, Equatable, Sendable {
    public var file: String
    public var bytes: Int
    public var tensors: Int
}

/// What `squint inspect` reports (schema: docs/INSPECT_JSON.md).
public struct InspectReport: Codable, Sendable {
    public var path: String
    /// Container: safetensors, pytorch-zip, pytorch-legacy, squint-int4, or sharded-<container>.
    public var format: String
    /// Recognised layout: qwen-vl-bf16, autogptq-int4, squint-int4, or unknown.
    public var layout: String
    /// Findings of the layout check (e.g. "all 853 tensors match config.json").
    public var layoutNotes: [String]
    public var files: [FileSummary]
    public var tensorCount: Int
    public var totalBytes: Int
    public var totalsByDtype: [DTypeTotal]
    public var modules: [ModuleSummary]
    public var config: [String: String]?
    public var quantization: QuantizationConfig?
    public var metadata: [String: String]
    public var tensors: [TensorRow]
    /// With `--verify`: what was checked ("verified: ..." for a Squint Int4 file; "none: ..." for
    /// formats without checksums). Absent otherwise.
    public var checksums: String?
    /// With `--stats`: the NaN and Inf values found, absent when every value is finite.
    public var nonFinite: NonFiniteSummary?
    /// GGUF files only: version, alignment, typed metadata, totals by ggml type with bits per weight.
    public var gguf: GGUFSection? = nil

    enum CodingKeys: String, CodingKey {
        case path, format, layout, files, tensors, modules, config, quantization, metadata, checksums, gguf
        case nonFinite = "non_finite"
        case layoutNotes = "layout_notes"
        case tensorCount = "tensor_count"
        case totalBytes = "total_bytes"
        case totalsByDtype = "totals_by_dtype"
    }
}

public enum Inspector {
    /// a + b, saturating at Int.max: a torch broadcast view (stride 0) may declare up to 2^63 bytes
    /// from a tiny storage, so the totals of two such tensors from a hostile file must not trap.
    static func total(_ a: Int, _ b: Int) -> Int {
        let (r, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : r
    }

    /// Top-level module summary (`blk.N` of GGUF folded too): everything up to and including a folded block index, or the
    /// first two name components otherwise (`transformer.wte`, `lm_head`).
    static func summarizeModules(_ tensors: [TensorInfo]) -> [ModuleSummary] {
        var order: [String] = []
        var acc: [String: (blocks: Set<String>, tensors: Int, elements: Int, bytes: Int)] = [:]
        for t in tensors {
            let parts = t.name.split(separator: ".").map(String.init)
            var key: String
            var blockId: String? = nil
            if let i = parts.indices.dropFirst().first(where: { Int(parts[$0]) != nil && ["h", "resblocks", "layers", "blk"].contains(parts[$0 - 1]) }) {
                key = parts[..<i].joined(separator: ".") + ".*"
                blockId = parts[i]
            } else {
                key = parts.prefix(min(2, max(parts.count - 1, 1))).joined(separator: ".")
                if parts.count >= 3, parts[0] == "transformer", parts[1] == "visual" {
                    key = parts.prefix(3).joined(separator: ".")
                    if parts.count == 3 { key = parts.joined(separator: ".") }
                }
            }
            if acc[key] == nil { order.append(key); acc[key] = ([], 0, 0, 0) }
            if let blockId { acc[key]!.blocks.insert(blockId) }
            acc[key]!.tensors += 1
            acc[key]!.elements = total(acc[key]!.elements, t.elementCount)
            acc[key]!.bytes = total(acc[key]!.bytes, t.byteCount)
        }
        return order.map { k in
            let a = acc[k]!
            return ModuleSummary(module: k, blocks: max(a.blocks.count, 1), tensors: a.tensors,
                                 elements: a.elements, bytes: a.bytes)
        }
    }

    static func dtypeTotals(_ tensors: [TensorInfo]) -> [DTypeTotal] {
        var acc: [DType: DTypeTotal] = [:]
        for t in tensors {
            var e = acc[t.dtype] ?? DTypeTotal(dtype: t.dtype.rawValue, tensors: 0, elements: 0, bytes: 0)
            e.tensors += 1; e.elements = total(e.elements, t.elementCount); e.bytes = total(e.bytes, t.byteCount)
            acc[t.dtype] = e
        }
        return acc.values.sorted { $0.bytes > $1.bytes }
    }

    /// Recognises the layout from tensor names and, when present, the folder's config.json.
    static func recognise(_ tensors: [TensorInfo], config: QwenVLConfig?, squintInt4: Bool)
        -> (layout: String, notes: [String])
    {
        if squintInt4 { return ("squint-int4", []) }
        let names = Set(tensors.map(\.name))
        var notes: [String] = []
        let hasQ = names.contains { $0.hasSuffix(".qweight") }
        let isQwen = names.contains("transformer.wte.weight") && names.contains { $0.hasPrefix("transformer.visual.") }
        if hasQ {
            // Every quantized module must carry its four AutoGPTQ tensors.
            let mods = names.filter { $0.hasSuffix(".qweight") }.map { String($0.dropLast(".qweight".count)) }
            let incomplete = mods.filter { m in !["qzeros", "scales", "g_idx"].allSatisfy { names.contains("\(m).\($0)") } }
            notes.append("\(mods.count) GPTQ-quantized modules (qweight, qzeros, scales, g_idx)")
            if !incomplete.isEmpty { notes.append("incomplete GPTQ modules: \(incomplete.sorted().prefix(5).joined(separator: ", "))") }
            return ("autogptq-int4", notes)
        }
        if isQwen {
            if let config {
                let expected = config.bf16TensorSpecs()
                let byName = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
                var problems: [String] = []
                for s in expected {
                    guard let t = byName[s.name] else { problems.append("missing \(s.name)"); continue }
                    if t.shape != s.shape { problems.append("\(s.name): shape \(t.shape), config implies \(s.shape)") }
                }
                let expNames = Set(expected.map(\.name))
                for n in names.subtracting(expNames).sorted() { problems.append("unexpected \(n)") }
                if problems.isEmpty {
                    notes.append("all \(expected.count) tensors match config.json")
                } else {
                    notes.append("\(problems.count) differences from config.json: " + problems.prefix(5).joined(separator: "; "))
                }
            }
            return ("qwen-vl-bf16", notes)
        }
        return ("unknown", notes)
    }

    /// Builds the report from headers only (no tensor data is read unless `stats` is set).
    public static func inspect(_ file: TensorFile, format: String, config: QwenVLConfig?,
                               quantization: QuantizationConfig?, squintInt4: Bool = false,
                               filter: NSRegularExpression? = nil, stats: Bool = false,
                               progress: ((Int, Int) -> Void)? = nil) throws -> InspectReport
    {
        let gguf = file as? GGUFFile
        // GGUF: element shapes (not the byte rows the generic view shows for quantised tensors).
        let all = gguf.map(ggufElementInfos) ?? file.tensors
        var selected = all
        if let filter {
            selected = all.filter { filter.firstMatch(in: $0.name, range: NSRange($0.name.startIndex..., in: $0.name)) != nil }
        }
        var rows = selected.map {
            TensorRow(name: $0.name, dtype: gguf?.ggufTensor(named: $0.name)?.type.name ?? $0.dtype.rawValue, shape: $0.shape,
                      file: $0.file, offset: $0.offset, bytes: $0.byteCount, strides: $0.strides, stats: nil)
        }
        var nonFinite: NonFiniteSummary?
        if stats {
            let computed = try gguf.map { try computeGGUFStats($0, selected.map(\.name), progress: progress) }
                ?? computeStats(file, selected, progress: progress)
            for i in rows.indices { rows[i].stats = computed[i] }
            let bad = rows.indices.filter { (rows[$0].stats?.nan ?? 0) + (rows[$0].stats?.inf ?? 0) > 0 }
            if let first = bad.first {
                let t = selected[first]
                nonFinite = NonFiniteSummary(tensors: bad.count, nan: bad.reduce(0) { $0 + rows[$1].stats!.nan },
                                             inf: bad.reduce(0) { $0 + rows[$1].stats!.inf }, firstTensor: t.name,
                                             firstIndex: try firstNonFiniteIndex(file, t))
            }
        }
        var fileAcc: [String: FileSummary] = [:]
        var fileOrder: [String] = []
        for t in all {
            if fileAcc[t.file] == nil {
                fileOrder.append(t.file)
                let size = (try? FileManager.default.attributesOfItem(atPath: t.file)[.size] as? Int) ?? 0
                fileAcc[t.file] = FileSummary(file: t.file, bytes: size, tensors: 0)
            }
            fileAcc[t.file]!.tensors += 1
        }
        let (layout, notes) = gguf.map(ggufLayout) ?? recognise(all, config: config, squintInt4: squintInt4)
        var cfgSummary: [String: String]?
        if let c = config {
            cfgSummary = [
                "llm": "\(c.numHiddenLayers) blocks, hidden \(c.hiddenSize), \(c.numAttentionHeads) heads x \(c.headDim), MLP \(c.mlpWidth), vocab \(c.vocabSize)",
                "vision": "ViT \(c.visual.layers) blocks, width \(c.visual.width), \(c.visual.heads) heads, MLP \(c.visual.mlpWidth), \(c.visual.imageSize)px / patch \(c.visual.patchSize) = \(c.visual.gridSize * c.visual.gridSize) patches",
                "resampler": "256 queries, \(c.visual.resamplerHeads) heads, output \(c.visual.outputDim)",
                "torch_dtype": c.torchDtype ?? "unset",
            ]
        }
        let section = gguf.map(ggufSection)
        return InspectReport(
            path: file.path, format: format, layout: layout, layoutNotes: notes,
            files: fileOrder.map { fileAcc[$0]! }, tensorCount: all.count,
            totalBytes: all.reduce(0) { total($0, $1.byteCount) },
            totalsByDtype: section?.types.map { DTypeTotal(dtype: $0.type, tensors: $0.tensors, elements: $0.elements, bytes: $0.bytes) }
                ?? dtypeTotals(all),
            modules: summarizeModules(all), config: cfgSummary, quantization: quantization ?? config?.quantizationConfig,
            metadata: file.metadata, tensors: rows, nonFinite: nonFinite, gguf: section)
    }

    /// The index ([i, j, ...]) of the first NaN or Inf element of `t`, which the stats found to hold one.
    static func firstNonFiniteIndex(_ file: TensorFile, _ t: TensorInfo) throws -> [Int] {
        let found: Int?
        if let g = file as? GGUFFile, let gt = g.ggufTensor(named: t.name) {
            found = try GGUFDequant.dequantize(gt, of: g).firstIndex(where: { !$0.isFinite })   // quantized: look at the values
        } else {
            let v = try file.view(t.name)
            found = (0..<t.elementCount).first(where: { !elementAsDouble(v, $0).isFinite })
        }
        guard var k = found else { return [] }
        var index = [Int](repeating: 0, count: t.shape.count)
        for d in t.shape.indices.reversed() where t.shape[d] > 0 { index[d] = k % t.shape[d]; k /= t.shape[d] }
        return index
    }

    /// Streams every selected tensor once, on both cores: tensors are cut into 512 KiB chunks that two
    /// workers take in file order. Contiguous BF16/F16/F32 data is read with pread into a per-worker
    /// buffer that stays in L2: through the page cache this beats touching the mapping (one page fault
    /// per 4 KiB) and keeps memory flat whatever the checkpoint size. Other dtypes and strided torch
    /// views go through the reader's view.
    static func computeStats(_ file: TensorFile, _ tensors: [TensorInfo], progress: ((Int, Int) -> Void)?) throws -> [TensorStats?] {
        struct Chunk { var tensor: Int; var start: Int; var count: Int }
        let chunkBytes = 512 << 10
        var chunks: [Chunk] = []
        var fds: [String: Int32] = [:]
        defer { for fd in fds.values { close(fd) } }
        let direct: Set<DType> = [.bf16, .f16, .f32]
        for (i, t) in tensors.enumerated() where t.elementCount > 0 {
            if t.isContiguous && direct.contains(t.dtype) && fds[t.file] == nil {
                let fd = open(t.file, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw FormatError.io(path: t.file, message: String(cString: strerror(errno))) }
                fds[t.file] = fd
            }
            let per = max(1, chunkBytes / t.dtype.byteSize)
            var s = 0
            while s < t.elementCount { chunks.append(Chunk(tensor: i, start: s, count: min(per, t.elementCount - s))); s += per }
        }
        var partial = [sq_stats](repeating: sq_stats(), count: chunks.count)
        let totalBytes = chunks.reduce(0) { $0 + $1.count * tensors[$1.tensor].dtype.byteSize }
        let lock = NSLock()
        var next = 0, doneBytes = 0
        var lastReport = Date.distantPast
        var failure: Error?
        var views: [Int: TensorView] = [:]
        partial.withUnsafeMutableBufferPointer { out in
            DispatchQueue.concurrentPerform(iterations: 2) { _ in
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunkBytes, alignment: 64)
                defer { buffer.deallocate() }
                var scratch = [Float](repeating: 0, count: 1 << 16)
                while true {
                    lock.lock(); let c = next; next += 1; let stop = failure != nil; lock.unlock()
                    if c >= chunks.count || stop { break }
                    let ch = chunks[c]
                    let t = tensors[ch.tensor]
                    var st = sq_stats(); sq_stats_init(&st)
                    if t.isContiguous && direct.contains(t.dtype) {
                        let size = t.dtype.byteSize
                        let want = ch.count * size
                        var got = 0
                        while got < want {
                            let n = pread(fds[t.file]!, buffer + got, want - got, off_t(t.offset + ch.start * size + got))
                            if n < 0 && errno == EINTR { continue }
                            if n <= 0 {
                                lock.lock()
                                failure = n == 0 ? FormatError.truncated(path: t.file, what: "tensor '\(t.name)' data ends early")
                                                 : FormatError.io(path: t.file, message: String(cString: strerror(errno)))
                                lock.unlock()
                                return
                            }
                            got += n
                        }
                        switch t.dtype {
                        case .bf16: sq_stats_bf16(buffer.assumingMemoryBound(to: UInt16.self), ch.count, &st)
                        case .f16: sq_stats_f16(buffer.assumingMemoryBound(to: UInt16.self), ch.count, &st)
                        default: sq_stats_f32_fast(buffer.assumingMemoryBound(to: Float.self), ch.count, &st)
                        }
                    } else {
                        lock.lock()
                        var v = views[ch.tensor]
                        if v == nil {
                            do { v = try file.view(t.name); views[ch.tensor] = v } catch { failure = error }
                        }
                        lock.unlock()
                        guard let v else { return }
                        scratch.withUnsafeMutableBufferPointer { buf in
                            var s = 0
                            while s < ch.count {
                                let m = min(buf.count, ch.count - s)
                                for k in 0..<m { buf[k] = Float(elementAsDouble(v, ch.start + s + k)) }
                                sq_stats_f32(buf.baseAddress!, m, &st)
                                s += m
                            }
                        }
                    }
                    out[c] = st
                    lock.lock()
                    doneBytes += ch.count * t.dtype.byteSize
                    if ch.start + ch.count == t.elementCount { views[ch.tensor] = nil }
                    if let progress, Date().timeIntervalSince(lastReport) > 0.2 {
                        lastReport = Date(); progress(doneBytes, totalBytes)
                    }
                    lock.unlock()
                }
            }
        }
        if let failure { throw failure }
        progress?(totalBytes, totalBytes)
        var merged = [sq_stats](repeating: sq_stats(), count: tensors.count)
        for i in merged.indices { sq_stats_init(&merged[i]) }
        for (c, ch) in chunks.enumerated() { var p = partial[c]; sq_stats_merge(&merged[ch.tensor], &p) }
        return merged.map { s in
            let n = Double(s.finite_count)
            guard n > 0 else { return TensorStats(min: nil, max: nil, mean: nil, std: nil, nan: s.nan_count, inf: s.inf_count) }
            let mean = s.sum / n
            let variance = Swift.max(0, s.sumsq / n - mean * mean)
            return TensorStats(min: Double(s.min), max: Double(s.max), mean: mean, std: variance.squareRoot(),
                               nan: s.nan_count, inf: s.inf_count)
        }
    }

    /// Element `k` of a contiguous view as a Double, for the integer and 8-bit float dtypes.
    static func elementAsDouble(_ v: TensorView, _ k: Int) -> Double {
        let b = v.bytes
        let o = k * v.info.dtype.byteSize
        switch v.info.dtype {
        case .bool, .u8: return Double(b[o])
        case .i8: return Double(Int8(bitPattern: b[o]))
        case .u16: return Double(b.loadUnaligned(fromByteOffset: o, as: UInt16.self))
        case .i16: return Double(b.loadUnaligned(fromByteOffset: o, as: Int16.self))
        case .u32: return Double(b.loadUnaligned(fromByteOffset: o, as: UInt32.self))
        case .i32: return Double(b.loadUnaligned(fromByteOffset: o, as: Int32.self))
        case .u64: return Double(b.loadUnaligned(fromByteOffset: o, as: UInt64.self))
        case .i64: return Double(b.loadUnaligned(fromByteOffset: o, as: Int64.self))
        case .f64: return b.loadUnaligned(fromByteOffset: o, as: Double.self)
        case .f32: return Double(b.loadUnaligned(fromByteOffset: o, as: Float.self))
        case .f16, .bf16:
            var x = b.loadUnaligned(fromByteOffset: o, as: UInt16.self); var f: Float = 0
            if v.info.dtype == .bf16 { sq_bf16_to_f32_ref(&x, &f, 1) } else { sq_f16_to_f32_ref(&x, &f, 1) }
            return Double(f)
        case .f8e4m3: return fp8ToDouble(b[o], expBits: 4, manBits: 3, bias: 7, e4m3: true)
        case .f8e5m2: return fp8ToDouble(b[o], expBits: 5, manBits: 2, bias: 15, e4m3: false)
        }
    }

    /// 8-bit floats: E4M3 (fn variant: no Inf, NaN = S.1111.111) and E5M2 (IEEE-like).
    static func fp8ToDouble(_ x: UInt8, expBits: Int, manBits: Int, bias: Int, e4m3: Bool) -> Double {
        let sign: Double = (x & 0x80) != 0 ? -1 : 1
        let e = Int((x >> UInt8(manBits)) & UInt8((1 << expBits) - 1))
        let m = Int(x & UInt8((1 << manBits) - 1))
        let maxE = (1 << expBits) - 1
        if e4m3 {
            if e == maxE && m == (1 << manBits) - 1 { return .nan }
        } else if e == maxE {
            return m == 0 ? sign * .infinity : .nan
        }
        if e == 0 { return sign * Double(m) * pow(2, Double(1 - bias - manBits)) }
        return sign * (1 + Double(m) / Double(1 << manBits)) * pow(2, Double(e - bias))
    }
}
