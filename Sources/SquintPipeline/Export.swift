import CSquintKernels
import Foundation
import SquintFormats
import SquintTensor

/// Float type of the tensors `squint export` writes.
public enum ExportDType: String, CaseIterable, Codable, Sendable {
    case f32, bf16, f16

    public var dtype: DType {
        switch self {
        case .f32: return .f32
        case .bf16: return .bf16
        case .f16: return .f16
        }
    }
}

public struct ExportOptions: Sendable {
    /// Regular expression (NSRegularExpression, searched anywhere in the name) selecting tensors by
    /// the names they are written under.
    public var pattern: String
    /// Type of every floating-point tensor written (narrowing rounds to nearest, ties to even).
    public var dtype: ExportDType = .f32
    /// Every selected tensor byte for byte as stored: no dequantisation, no conversion.
    public var raw = false
    public var overwrite = false

    public init(pattern: String, dtype: ExportDType = .f32, raw: Bool = false, overwrite: Bool = false) {
        self.pattern = pattern; self.dtype = dtype; self.raw = raw; self.overwrite = overwrite
    }
}

public enum ExportError: Error, CustomStringConvertible, Equatable {
    case badPattern(String, String)
    case noMatch(pattern: String, path: String, tensors: Int)
    case sameFile(String)
    case nameClash(path: String, name: String)

    public var description: String {
        switch self {
        case .badPattern(let p, let why): return "--tensors '\(p)' is not a valid regular expression (\(why))"
        case .noMatch(let p, let path, let n):
            return "\(path): no tensor name matches --tensors '\(p)' (the file has \(n) tensors; `squint inspect` lists them)"
        case .sameFile(let p): return "\(p): the output would replace the checkpoint being read"
        case .nameClash(let path, let name):
            return "\(path): '\(name)' is both a stored tensor and the dequantised weight of an Int4 module; export with --raw"
        }
    }
}

/// What `squint export` wrote (`--json`, docs/EXPORT.md).
public struct ExportReport: Codable, Equatable, Sendable {
    public struct Row: Codable, Equatable, Sendable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var bytes: Int
        /// What the values were read from: a dtype (`BF16`), a ggml type (`Q4_K`), `int4-autogptq` or
        /// `int4-squint` (dequantised Int4 modules).
        public var from: String
    }
    public var output: String
    public var source: String
    public var format: String
    public var raw: Bool
    public var tensors: [Row]
    /// Size of the file written.
    public var bytes: Int
    public var metadata: [String: String]
}

/// `squint export`: selected tensors of any checkpoint Squint reads, dequantised where needed, as one
/// safetensors file (`SafetensorsWriter`: deterministic, atomic, never replaces a file without
/// `overwrite`). Names stay the file's own, except that an Int4 module (AutoGPTQ `X.qweight/qzeros/
/// scales/g_idx` or an SQ4 record `X.q4_*`) becomes one `X.weight` [out, in], dequantised exactly as
/// the runtime does (`AutoGPTQLayout.toSQ4` then `QuantizedLinear.dequantized()`: scale * (code -
/// zero) in float32, act order undone). GGUF tensors keep their names with row-major shapes (ggml `ne`
/// reversed) and are dequantised by `GGUFDequant`, bit for bit as gguf-py does.
public enum Exporter {
    /// One tensor to write and where its values come from.
    enum Source {
        /// Bytes copied as stored (integers, --raw, or a float already of the output type).
        case copy(TensorInfo)
        /// A float tensor converted to the output type.
        case float(TensorInfo)
        /// A quantised GGUF tensor.
        case gguf(GGUFTensorInfo)
        /// An AutoGPTQ module, by prefix.
        case autoGPTQ(String)
        /// An SQ4 quantized-linear record, by name.
        case sq4(String)
    }

    struct Item {
        var tensor: SafetensorsWriter.Tensor
        var source: Source
        var from: String
    }

    /// The tensors that `options` select from `file`, in file order, with their output names, types
    /// and shapes. Throws when nothing matches.
    static func plan(_ file: TensorFile, options: ExportOptions) throws -> [Item] {
        let regex: NSRegularExpression
        do { regex = try NSRegularExpression(pattern: options.pattern) } catch {
            throw ExportError.badPattern(options.pattern, "\(error.localizedDescription)")
        }
        func selected(_ name: String) -> Bool {
            regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
        }
        let out = options.dtype.dtype
        func plain(_ t: TensorInfo) -> Item {
            if options.raw || !t.dtype.isFloatingPoint || t.dtype == out {
                return Item(tensor: .init(name: t.name, dtype: t.dtype, shape: t.shape), source: .copy(t), from: t.dtype.rawValue)
            }
            return Item(tensor: .init(name: t.name, dtype: out, shape: t.shape), source: .float(t), from: t.dtype.rawValue)
        }
        var items: [Item] = []
        if options.raw {
            items = file.tensors.filter { selected($0.name) }.map(plain)
        } else if let g = file as? GGUFFile {
            for (t, info) in zip(g.ggufTensors, g.tensors) where selected(t.name) {
                items.append(t.type.isQuantized
                    ? Item(tensor: .init(name: t.name, dtype: out, shape: t.shape), source: .gguf(t), from: t.type.name)
                    : plain(info))
            }
        } else {
            // Int4 modules: their stored tensors are replaced by one dequantised X.weight, placed where
            // the module's first tensor is. (Biases are ordinary tensors of both layouts.)
            var owner: [String: (module: String, out: Int, inF: Int, source: Source, from: String)] = [:]
            if let sq4 = file as? SquintInt4File {
                for s in sq4.linears {
                    for e in s.expectedTensors() where e.name != s.biasName {
                        owner[e.name] = (s.name, s.outFeatures, s.inFeatures, .sq4(s.name), "int4-squint")
                    }
                }
            } else {
                let q = AutoGPTQLayout.suffixes
                for t in file.tensors where t.name.hasSuffix(q.qweight) {
                    let prefix = String(t.name.dropLast(q.qweight.count))
                    let shape = t.shape.count == 2 ? (t.shape[1], t.shape[0] * 8) : (0, 0)
                    for s in [q.qweight, q.qzeros, q.scales, q.gIdx] where file.info(prefix + s) != nil {
                        owner[prefix + s] = (prefix, shape.0, shape.1, .autoGPTQ(prefix), "int4-autogptq")
                    }
                }
            }
            var done = Set<String>()
            let stored = Set(file.tensors.map(\.name))
            for t in file.tensors {
                if let m = owner[t.name] {
                    let name = m.module + ".weight"
                    guard !done.contains(m.module), selected(name) else { continue }
                    done.insert(m.module)
                    guard !stored.contains(name) else { throw ExportError.nameClash(path: file.path, name: name) }
                    items.append(Item(tensor: .init(name: name, dtype: out, shape: [m.out, m.inF]), source: m.source, from: m.from))
                } else if selected(t.name) {
                    items.append(plain(t))
                }
            }
        }
        guard !items.isEmpty else {
            throw ExportError.noMatch(pattern: options.pattern, path: file.path, tensors: file.tensors.count)
        }
        return items
    }

    /// Exports the tensors of the checkpoint at `path` (file or folder, opened by `CheckpointOpener`)
    /// that `options` select to the safetensors file `output`. `progress(bytesWritten, bytesTotal)`.
    @discardableResult
    public static func export(_ path: String, to output: String, options: ExportOptions,
                              progress: ((Int, Int) -> Void)? = nil) throws -> ExportReport {
        let (file, format) = try CheckpointOpener.openTensors(path)
        return try export(file, format: format, to: output, options: options, progress: progress)
    }

    /// As above, from an opened file (`format` is recorded in the output's metadata).
    @discardableResult
    public static func export(_ file: TensorFile, format: String, to output: String, options: ExportOptions,
                              progress: ((Int, Int) -> Void)? = nil) throws -> ExportReport {
        let items = try plan(file, options: options)
        let real = { (p: String) in URL(fileURLWithPath: p).resolvingSymlinksInPath().standardizedFileURL.path }
        let sources = Set(([file.path] + file.tensors.map(\.file)).map(real))
        if sources.contains(real(output)) { throw ExportError.sameFile(output) }
        // `format: pt` is the key transformers' safetensors loader requires; the rest say where from.
        let metadata = ["format": "pt", "source": file.path, "source_format": format,
                        "exported_by": options.raw ? "squint export --raw" : "squint export --dtype \(options.dtype.rawValue)"]
        let writer = try SafetensorsWriter(tensors: items.map(\.tensor), metadata: metadata, path: output)
        let byName = Dictionary(uniqueKeysWithValues: items.map { ($0.tensor.name, $0) })
        let total = writer.dataLength
        var written = 0
        progress?(0, total)
        try writer.write(to: output, overwrite: options.overwrite) { t, sink in
            let item = byName[t.name]!     // (the writer's tensors are the plan's)
            let counted = CountingSink(sink) { n in written += n; progress?(written, total) }
            try write(item, of: file, to: counted)
        }
        let rows = items.map {
            ExportReport.Row(name: $0.tensor.name, dtype: $0.tensor.dtype.rawValue, shape: $0.tensor.shape,
                             bytes: $0.tensor.byteCount ?? 0, from: $0.from)
        }
        return ExportReport(output: output, source: file.path, format: format, raw: options.raw, tensors: rows,
                            bytes: writer.fileSize, metadata: metadata)
    }

    /// Elements converted per chunk: bounded memory for any tensor size.
    static let chunk = 1 << 20

    static func write(_ item: Item, of file: TensorFile, to sink: CountingSink) throws {
        let out = item.tensor.dtype
        switch item.source {
        case .copy(let t):
            let v = try file.view(t.name)
            var o = 0
            while o < v.bytes.count {
                let n = min(chunk * 4, v.bytes.count - o)
                try sink.write(UnsafeRawBufferPointer(rebasing: v.bytes[o..<(o + n)]))
                o += n
            }
        case .float(let t):
            let v = try file.view(t.name)
            let count = v.info.elementCount, size = v.info.dtype.byteSize
            var buf = [Float](repeating: 0, count: min(chunk, count))
            var e = 0
            while e < count {
                let n = min(chunk, count - e)
                let src = UnsafeRawBufferPointer(rebasing: v.bytes[(e * size)..<((e + n) * size)])
                buf.withUnsafeMutableBufferPointer { toFloat(v.info.dtype, src, into: $0.baseAddress!, n) }
                try emit(buf, n, as: out, to: sink)
                e += n
            }
        case .gguf(let t):
            guard let g = file as? GGUFFile else { preconditionFailure("a GGUF plan item from a non-GGUF file") }
            let rows = max(1, chunk / max(t.ne[0], 1))
            var r = 0
            while r < t.rowCount {
                let end = min(t.rowCount, r + rows)
                let f = try GGUFDequant.dequantizeRows(t, of: g, rows: r..<end)
                try emit(f, f.count, as: out, to: sink)
                r = end
            }
        case .autoGPTQ(let prefix):
            let rec = try AutoGPTQLayout.toSQ4(AutoGPTQLayout.module(in: file, prefix: prefix), name: prefix, path: file.path)
            let w = QuantizedLinear(record: rec).dequantized()
            try emitChunked(w, as: out, to: sink)
        case .sq4(let name):
            guard let s = file as? SquintInt4File else { preconditionFailure("an SQ4 plan item from a non-SQ4 file") }
            let w = try QuantizedLinear(file: s, name: name).dequantized()
            try emitChunked(w, as: out, to: sink)
        }
    }

    static func emitChunked(_ w: [Float], as out: DType, to sink: CountingSink) throws {
        var e = 0
        while e < w.count {
            let n = min(chunk, w.count - e)
            try w.withUnsafeBufferPointer { try emit(Array($0[e..<(e + n)]), n, as: out, to: sink) }
            e += n
        }
    }

    /// Widens `n` elements of a floating-point dtype to float32 (exact for F16, BF16 and F8; F64 is
    /// rounded to nearest).
    static func toFloat(_ dtype: DType, _ src: UnsafeRawBufferPointer, into dst: UnsafeMutablePointer<Float>, _ n: Int) {
        guard n > 0, let base = src.baseAddress else { return }
        switch dtype {
        case .f32: UnsafeMutableRawPointer(dst).copyMemory(from: base, byteCount: 4 * n)
        case .f16, .bf16:
            var h = [UInt16](repeating: 0, count: n)
            h.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: base, count: 2 * n)) }
            if dtype == .f16 { sq_f16_to_f32(h, dst, n) } else { sq_bf16_to_f32(h, dst, n) }
        case .f64:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        default:   // F8 (the only other floating-point dtypes)
            let v = TensorView(info: TensorInfo(name: "", dtype: dtype, shape: [n], file: "", offset: 0, byteCount: n),
                               bytes: src, owner: NSNull())
            for i in 0..<n { dst[i] = Float(Inspector.elementAsDouble(v, i)) }
        }
    }

    /// Writes `n` float32 values as `out` (F32 as is; BF16 and F16 round to nearest, ties to even,
    /// with the project's convert kernels).
    static func emit(_ f: [Float], _ n: Int, as out: DType, to sink: CountingSink) throws {
        switch out {
        case .f32: try f.withUnsafeBytes { try sink.write(UnsafeRawBufferPointer(rebasing: $0[0..<(4 * n)])) }
        case .bf16, .f16:
            var h = [UInt16](repeating: 0, count: n)
            if out == .bf16 { sq_f32_to_bf16(f, &h, n) } else { sq_f32_to_f16(f, &h, n) }
            try h.withUnsafeBytes { try sink.write($0) }
        default: preconditionFailure("export writes F32, BF16 or F16 floats")
        }
    }
}

/// A `TensorSink` that reports how many bytes passed, for the progress bar.
final class CountingSink {
    let sink: TensorSink
    let count: (Int) -> Void
    init(_ sink: TensorSink, _ count: @escaping (Int) -> Void) { self.sink = sink; self.count = count }
    func write(_ b: UnsafeRawBufferPointer) throws { try sink.write(b); count(b.count) }
}
