import Foundation
import SquintFormats

// Building a `DecoderLM` from GGUF-named tensors that a GGUF reader has already dequantised to
// float32. The reader (SquintFormats) knows bytes and quant blocks; this file knows only llama.cpp's
// names, metadata keys and its q/k row order for `llama`.

extension DecoderDims {
    /// llama.cpp's metadata keys for the numbers of architecture `arch` (`qwen2`, `llama`), so
    /// validation errors name the key as the GGUF file spells it.
    public static func ggufKeys(_ arch: String) -> [Field: String] {
        [.hidden: "\(arch).embedding_length", .layers: "\(arch).block_count", .heads: "\(arch).attention.head_count",
         .kvHeads: "\(arch).attention.head_count_kv", .headDim: "\(arch).attention.key_length",
         .intermediate: "\(arch).feed_forward_length", .vocab: "token_embd.weight rows",
         .ropeTheta: "\(arch).rope.freq_base", .rmsNormEps: "\(arch).attention.layer_norm_rms_epsilon",
         .maxPositions: "\(arch).context_length"]
    }

    /// The dims of a GGUF model from its metadata (`integer` / `float` look a key up, nil when
    /// absent) and its tensor shapes (torch order [out, in]). As llama.cpp: head_count_kv defaults to
    /// head_count, key_length to embedding_length / head_count, rope.freq_base to 10000; lm_head is
    /// tied when there is no `output.weight`; the block's biases are those `blk.0` carries (the strict
    /// binder then requires them in every block). Validated before it is returned. RoPE scaling
    /// (`<arch>.rope.scaling.type` other than none) is a string key: the caller refuses it.
    public static func gguf(architecture: DecoderArchitecture, integer: (String) -> Int?, float: (String) -> Double?,
                            shapes: [String: [Int]], path: String) throws -> DecoderDims {
        let a = architecture.name, n = DecoderTensorNaming.gguf
        func need(_ key: String) throws -> Int {
            guard let v = integer(key) else { throw ModelError.config(path: path, message: "missing metadata key \(key)") }
            return v
        }
        guard let emb = shapes[n.embedding], emb.count == 2 else {
            throw ModelError.config(path: path, message: "no 2-D \(n.embedding) tensor")
        }
        let hidden = try need("\(a).embedding_length"), heads = try need("\(a).attention.head_count")
        guard heads > 0 else { throw ModelError.config(path: path, message: "\(a).attention.head_count is \(heads); it must be positive") }
        guard let eps = float("\(a).attention.layer_norm_rms_epsilon") else {
            throw ModelError.config(path: path, message: "missing metadata key \(a).attention.layer_norm_rms_epsilon")
        }
        // Partial rotary (rope.dimension_count < head size) is not what the shared block does.
        let headDim = integer("\(a).attention.key_length") ?? hidden / heads
        if let r = integer("\(a).rope.dimension_count"), r != headDim {
            throw ModelError.config(path: path, message: "\(a).rope.dimension_count \(r) differs from the head size \(headDim) "
                                    + "(partial rotary embeddings are not supported)")
        }
        let biases = Set([DecoderLinear.q, .k, .v, .o, .gate, .up, .down].filter { shapes[n.module(0, $0) + ".bias"] != nil })
        let d = DecoderDims(hidden: hidden, layers: try need("\(a).block_count"), heads: heads,
                            kvHeads: integer("\(a).attention.head_count_kv") ?? heads,
                            headDim: headDim,
                            intermediate: try need("\(a).feed_forward_length"), vocab: emb[0],
                            ropeTheta: float("\(a).rope.freq_base") ?? 10000, rmsNormEps: eps,
                            tiedEmbeddings: shapes[n.lmHead] == nil, biases: biases,
                            bosTokenId: integer("tokenizer.ggml.bos_token_id"),
                            eosTokenIds: integer("tokenizer.ggml.eos_token_id").map { [$0] } ?? [],
                            maxPositions: integer("\(a).context_length"))
        try d.validate(path: path, keys: ggufKeys(a))
        return d
    }
}

extension DecoderLM {
    /// A model from GGUF-named tensors (`DecoderTensorNaming.gguf`) dequantised to float32 by the
    /// caller: `shapes` lists every tensor of the file in torch order [out, in] (GGUF's dimensions
    /// reversed), `floats(name)` returns one tensor's values row-major. Only the tensors the table
    /// declares are read; missing, unexpected and wrong-shape tensors are reported together as
    /// `ModelError.binding`, exactly as for a Hugging Face folder.
    ///
    /// For families with `ggufPermutesQK` (llama) the rows of attn_q / attn_k (and their biases) are
    /// put back into checkpoint order first (`unpermuteGGUFRows`), so the shared rotate_half RoPE applies.
    ///
    /// `view(name)`, when given, may return the stored tensor itself (a float32, float16 or bfloat16
    /// view of a mapped file): such a tensor is used in place, not copied, unless its rows must be
    /// reordered or its bytes are not aligned to its element size. A 1.5B F16 GGUF then costs its
    /// mapping, not 6 GB of float32 copies.
    public static func fromGGUF(architecture: DecoderArchitecture, dims: DecoderDims, shapes: [(name: String, shape: [Int])],
                                path: String, view: ((String) throws -> TensorView?)? = nil,
                                floats: (String) throws -> [Float]) throws -> DecoderLM {
        try dims.validate(path: path, keys: DecoderDims.ggufKeys(architecture.name))
        let naming = DecoderTensorNaming.gguf
        let table = dims.tensorTable(naming)
        let specs = Dictionary(table.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let file = InMemoryTensorFile(path: path)
        var unexpected: [String] = []
        for (name, shape) in shapes {
            guard let spec = specs[name] else {
                let ignorable = naming.ignoredSuffixes.contains { name.hasSuffix($0) } || (dims.tiedEmbeddings && name == naming.lmHead)
                if !ignorable { unexpected.append("unexpected tensor \(name) \(shape)") }
                continue
            }
            // llama's q/k rows (and biases) are reordered; only a tensor of the declared shape is, any
            // other shape is the binder's to report.
            var reorderHeads: Int?
            if architecture.ggufPermutesQK && shape == spec.shape {
                switch spec.role {
                case .weight(.q), .bias(.q): reorderHeads = dims.heads
                case .weight(.k), .bias(.k): reorderHeads = dims.kvHeads
                default: break
                }
            }
            // In place only when naturally aligned (a file may declare `general.alignment` 1 or 2).
            if reorderHeads == nil, let v = try view?(name), [.f32, .f16, .bf16].contains(v.info.dtype), v.info.shape == shape,
               let base = v.bytes.baseAddress, Int(bitPattern: base) % v.info.dtype.byteSize == 0 {
                try file.add(view: v)
                continue
            }
            var values = try floats(name)
            let count = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d)
                return (p, acc.1 || o || d < 0)
            }
            guard !count.1, values.count == count.0 else {
                throw ModelError.binding(path: path, problems: ["\(name): \(values.count) values for shape \(shape)"])
            }
            if let heads = reorderHeads { values = unpermuteGGUFRows(values, rows: shape[0], heads: heads) }
            try file.add(name: name, shape: shape, f32: values)
        }
        guard unexpected.isEmpty else {
            // Let the binder add its own findings (missing, wrong shape) to the unexpected names.
            do { _ = try DecoderLM(architecture: architecture, dims: dims, weights: file, naming: naming) } catch let ModelError.binding(_, p) {
                throw ModelError.binding(path: path, problems: p + unexpected)
            }
            throw ModelError.binding(path: path, problems: unexpected)
        }
        return try DecoderLM(architecture: architecture, dims: dims, weights: file, naming: naming)
    }

    /// Undoes llama.cpp's q/k row order for `llama` GGUF files. Its converter regroups each head's d
    /// rows so that the two halves rotate_half pairs (row i with row i + d/2) become neighbours: GGUF
    /// row 2i (within a head) is checkpoint row i and GGUF row 2i+1 is checkpoint row i + d/2. This
    /// returns checkpoint order: row h·d + s·d/2 + i = GGUF row h·d + 2i + s (s = 0, 1). `values` is
    /// [rows, cols] (or a bias, [rows]) with rows = heads · d, d even.
    public static func unpermuteGGUFRows(_ values: [Float], rows: Int, heads: Int) -> [Float] {
        precondition(heads > 0 && rows % (2 * heads) == 0 && values.count % rows == 0)
        let d = rows / heads, half = d / 2, cols = values.count / rows
        var out = [Float](repeating: 0, count: values.count)
        for h in 0..<heads {
            for s in 0..<2 {
                for i in 0..<half {
                    let dst = (h * d + s * half + i) * cols, src = (h * d + 2 * i + s) * cols
                    for c in 0..<cols { out[dst + c] = values[src + c] }
                }
            }
        }
        return out
    }
}
