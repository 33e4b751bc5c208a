import Foundation
import SquintFormats
import CSquintKernels

/// What `inspect` adds for a GGUF file (docs/INSPECT_JSON.md): the file's own description of itself.
public struct GGUFSection: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        public var key: String
        /// GGUF value type (`UINT32`, `STRING`, `ARRAY[STRING]`, ...).
        public var type: String
        /// The value, or for arrays the first elements and the count (tokenizer vocabularies are not dumped).
        public var value: String
    }
    public struct TypeTotal: Codable, Equatable, Sendable {
        public var type: String
        public var tensors: Int
        public var elements: Int
        public var bytes: Int
        public var bitsPerWeight: Double

        enum CodingKeys: String, CodingKey {
            case type, tensors, elements, bytes
            case bitsPerWeight = "bits_per_weight"
        }
    }
    public var version: Int
    public var alignment: Int
    public var architecture: String?
    public var metadata: [Entry]
    /// By ggml type, largest first.
    public var types: [TypeTotal]
    public var elements: Int
    /// Storage bits per weight over all tensors.
    public var bitsPerWeight: Double

    enum CodingKeys: String, CodingKey {
        case version, alignment, architecture, metadata, types, elements
        case bitsPerWeight = "bits_per_weight"
    }
}

extension Inspector {
    /// Tensor infos with their *element* shapes (row-major), so module sums count weights, not bytes.
    static func ggufElementInfos(_ g: GGUFFile) -> [TensorInfo] {
        g.ggufTensors.map { TensorInfo(name: $0.name, dtype: .u8, shape: $0.shape, file: g.path, offset: $0.offset, byteCount: $0.byteCount) }
    }

    /// What `inspect --diff` compares: for GGUF files element shapes and ggml type names (so Q4_K ->
    /// Q6_K is a dtype change, not a byte-shape change); other files as their readers list them.
    public static func diffView(_ file: TensorFile) -> (tensors: [TensorInfo], typeNames: [String: String]) {
        guard let g = file as? GGUFFile else { return (file.tensors, [:]) }
        return (ggufElementInfos(g), Dictionary(g.ggufTensors.map { ($0.name, $0.type.name) }, uniquingKeysWith: { x, _ in x }))
    }

    static func ggufSection(_ g: GGUFFile) -> GGUFSection {
        func typeName(_ v: GGUFValue) -> String {
            if case .array(let t, let items) = v {
                return t == .array ? "ARRAY[\(items.first.map(typeName) ?? "ARRAY")]" : "ARRAY[\(t.name)]"
            }
            return v.type.name
        }
        let entries = g.keyValues.map { GGUFSection.Entry(key: $0.key, type: typeName($0.value), value: $0.value.summary(limit: 5)) }
        var acc: [GGMLType: GGUFSection.TypeTotal] = [:]
        for t in g.ggufTensors {
            var e = acc[t.type] ?? .init(type: t.type.name, tensors: 0, elements: 0, bytes: 0, bitsPerWeight: t.type.bitsPerWeight)
            e.tensors += 1; e.elements += t.elementCount; e.bytes += t.byteCount
            acc[t.type] = e
        }
        let elements = g.ggufTensors.reduce(0) { $0 + $1.elementCount }
        let bytes = g.ggufTensors.reduce(0) { $0 + $1.byteCount }
        return GGUFSection(version: Int(g.version), alignment: g.alignment, architecture: g.architecture, metadata: entries,
                           types: acc.values.sorted { ($0.bytes, $0.type) > ($1.bytes, $1.type) }, elements: elements,
                           bitsPerWeight: elements == 0 ? 0 : Double(bytes * 8) / Double(elements))
    }

    /// The layout GGUF files declare: `gguf-<general.architecture>`, with the block count checked
    /// against the `blk.N` tensors.
    static func ggufLayout(_ g: GGUFFile) -> (String, [String]) {
        guard let arch = g.architecture else { return ("unknown", ["no general.architecture key"]) }
        var notes: [String] = []
        let blocks = Set(g.ggufTensors.compactMap { t -> Int? in
            let p = t.name.split(separator: ".")
            return p.count > 2 && p[0] == "blk" ? Int(p[1]) : nil
        })
        if let n = g.value(forKey: "\(arch).block_count")?.int {
            notes.append(blocks.count == n && blocks.max() == n - 1
                ? "\(arch): \(n) blocks (blk.0...blk.\(n - 1)) as \(arch).block_count says"
                : "\(arch).block_count is \(n) but the file has tensors for \(blocks.count) blocks")
        }
        if let name = g.value(forKey: "general.name")?.string { notes.append("general.name: \(name)") }
        return ("gguf-\(arch)", notes)
    }

    /// `--stats` for GGUF tensors: every tensor is dequantised (GGUFDequant) in chunks of whole
    /// blocks and the float32 values streamed through sq_stats_f32, on both cores.
    static func computeGGUFStats(_ g: GGUFFile, _ names: [String], progress: ((Int, Int) -> Void)?) throws -> [TensorStats?] {
        let tensors = try names.map { n in try g.ggufTensor(named: n) ?? { throw FormatError.missingTensor(path: g.path, name: n) }() }
        struct Chunk { var tensor: Int; var firstBlock: Int; var blocks: Int }
        let chunkElements = 1 << 16    // a multiple of every block size (32, 256)
        var chunks: [Chunk] = []
        for (i, t) in tensors.enumerated() {
            let nBlocks = t.elementCount / t.type.blockSize
            let per = chunkElements / t.type.blockSize
            var b = 0
            while b < nBlocks { chunks.append(Chunk(tensor: i, firstBlock: b, blocks: min(per, nBlocks - b))); b += per }
        }
        let all = try tensors.map { try g.bytes(of: $0) }
        let totalBytes = tensors.reduce(0) { $0 + $1.byteCount }
        var partial = [sq_stats](repeating: sq_stats(), count: chunks.count)
        let lock = NSLock()
        var next = 0, done = 0
        var lastReport = Date.distantPast
        partial.withUnsafeMutableBufferPointer { out in
            DispatchQueue.concurrentPerform(iterations: 2) { _ in
                var scratch = [Float](repeating: 0, count: chunkElements)
                while true {
                    lock.lock(); let c = next; next += 1; lock.unlock()
                    if c >= chunks.count { break }
                    let ch = chunks[c], t = tensors[ch.tensor]
                    let src = UnsafeRawBufferPointer(rebasing: all[ch.tensor][(ch.firstBlock * t.type.blockBytes)..<((ch.firstBlock + ch.blocks) * t.type.blockBytes)])
                    let n = ch.blocks * t.type.blockSize
                    var st = sq_stats(); sq_stats_init(&st)
                    scratch.withUnsafeMutableBufferPointer { buf in
                        let dst = UnsafeMutableBufferPointer(rebasing: buf[0..<n])
                        GGUFDequant.dequantize(t.type, blocks: src, into: dst)
                        sq_stats_f32(dst.baseAddress!, n, &st)
                    }
                    out[c] = st
                    lock.lock()
                    done += src.count
                    if let progress, Date().timeIntervalSince(lastReport) > 0.2 { lastReport = Date(); progress(done, totalBytes) }
                    lock.unlock()
                }
            }
        }
        progress?(totalBytes, totalBytes)
        var merged = [sq_stats](repeating: sq_stats(), count: tensors.count)
        for i in merged.indices { sq_stats_init(&merged[i]) }
        for (c, ch) in chunks.enumerated() { var p = partial[c]; sq_stats_merge(&merged[ch.tensor], &p) }
        return merged.map(statsSummary)
    }

    static func statsSummary(_ s: sq_stats) -> TensorStats {
        let n = Double(s.finite_count)
        guard n > 0 else { return TensorStats(min: nil, max: nil, mean: nil, std: nil, nan: s.nan_count, inf: s.inf_count) }
        let mean = s.sum / n
        let variance = Swift.max(0, s.sumsq / n - mean * mean)
        return TensorStats(min: Double(s.min), max: Double(s.max), mean: mean, std: variance.squareRoot(),
                           nan: s.nan_count, inf: s.inf_count)
    }
}
