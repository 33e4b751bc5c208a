import Foundation
import SquintFormats
import SquintModels
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

/// llama.cpp's `general.file_type` values (llama_ftype): the mix a quantiser aimed at.
let llamaFileTypes: [Int: String] = [
    0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1", 7: "MOSTLY_Q8_0", 8: "MOSTLY_Q5_0",
    9: "MOSTLY_Q5_1", 10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S", 12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L",
    14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M", 16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M", 18: "MOSTLY_Q6_K",
    19: "MOSTLY_IQ2_XXS", 20: "MOSTLY_IQ2_XS", 21: "MOSTLY_Q2_K_S", 22: "MOSTLY_IQ3_XS", 23: "MOSTLY_IQ3_XXS",
    24: "MOSTLY_IQ1_S", 25: "MOSTLY_IQ4_NL", 26: "MOSTLY_IQ3_S", 27: "MOSTLY_IQ3_M", 28: "MOSTLY_IQ2_S",
    29: "MOSTLY_IQ2_M", 30: "MOSTLY_IQ4_XS", 31: "MOSTLY_IQ1_M", 32: "MOSTLY_BF16", 36: "MOSTLY_TQ1_0",
    37: "MOSTLY_TQ2_0", 38: "MOSTLY_MXFP4_MOE", 39: "MOSTLY_NVFP4", 40: "MOSTLY_Q1_0", 1024: "GUESSED",
]

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

    /// What `inspect A --diff B` compares, for both files at once. When exactly one is a GGUF file of
    /// a decoder family Squint knows (`general.architecture`, `DecoderRegistry`), its llama.cpp names
    /// are mapped to that family's Hugging Face names (`DecoderTensorNaming.gguf` -> the family's
    /// `naming`), so a GGUF against the safetensors it came from reports type and shape changes
    /// rather than every tensor removed and added. GGUF element shapes are already row-major
    /// ([out, in], like torch's). Names without a counterpart stay as they are.
    public static func diffViews(_ a: TensorFile, _ b: TensorFile)
        -> (a: [TensorInfo], b: [TensorInfo], typeNamesA: [String: String], typeNamesB: [String: String], mapping: String?) {
        var (va, vb) = (diffView(a), diffView(b))
        var mapping: String?
        func rename(_ v: inout (tensors: [TensorInfo], typeNames: [String: String]), _ g: GGUFFile) {
            guard let arch = g.architecture.flatMap(DecoderRegistry.architecture(named:)) else { return }
            let map = ggufToHuggingFace(g.ggufTensors.map(\.name), target: arch.naming)
            guard !map.isEmpty else { return }
            for i in v.tensors.indices { if let n = map[v.tensors[i].name] { v.tensors[i].name = n } }
            v.typeNames = Dictionary(v.typeNames.map { (map[$0.key] ?? $0.key, $0.value) }, uniquingKeysWith: { x, _ in x })
            mapping = "\(g.path): \(map.count) GGUF names (\(arch.name)) mapped to Hugging Face names"
        }
        switch (a as? GGUFFile, b as? GGUFFile) {
        case (let g?, nil): rename(&va, g)
        case (nil, let g?): rename(&vb, g)
        default: break
        }
        return (va.tensors, vb.tensors, va.typeNames, vb.typeNames, mapping)
    }

    /// llama.cpp tensor names -> `target` names, for the names that have one (embedding, final norm,
    /// output, and per `blk.N` the two norms and each linear's weight and bias).
    static func ggufToHuggingFace(_ names: [String], target: DecoderTensorNaming) -> [String: String] {
        let src = DecoderTensorNaming.gguf
        let fixed = [src.embedding: target.embedding, src.finalNorm: target.finalNorm, src.lmHead: target.lmHead]
        var perBlock = [src.attnNorm: target.attnNorm, src.mlpNorm: target.mlpNorm]
        for (m, g) in src.linears { if let h = target.linears[m] { for s in [".weight", ".bias"] { perBlock[g + s] = h + s } } }
        var map: [String: String] = [:]
        for n in names {
            if let h = fixed[n] { map[n] = h; continue }
            guard n.hasPrefix(src.layerPrefix) else { continue }
            let rest = n.dropFirst(src.layerPrefix.count)
            guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]), layer >= 0,
                  let h = perBlock[String(rest[rest.index(after: dot)...])] else { continue }
            map[n] = target.block(layer) + h
        }
        return map
    }

    static func ggufSection(_ g: GGUFFile) -> GGUFSection {
        func typeName(_ v: GGUFValue) -> String {
            if case .array(let t, let items) = v {
                return t == .array ? "ARRAY[\(items.first.map(typeName) ?? "ARRAY")]" : "ARRAY[\(t.name)]"
            }
            return v.type.name
        }
        let entries = g.keyValues.map { kv in
            var value = kv.value.summary(limit: 5)
            if kv.key == "general.file_type", let n = kv.value.int, let name = llamaFileTypes[n] { value += " (\(name))" }
            return GGUFSection.Entry(key: kv.key, type: typeName(kv.value), value: value)
        }
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
