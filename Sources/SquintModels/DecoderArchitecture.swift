import Foundation
import SquintFormats

// The shared description of decoder-only transformers (Qwen2, Llama, ...): what a family file must
// say about its checkpoint (dims from its config, tensor names) so `DecoderLM` can run it. A family
// is one small file (`Qwen2.swift`, `Llama.swift`) plus one line in `DecoderRegistry`; see
// docs/ADDING_A_MODEL.md.

/// The linear layers a decoder block may have, by role, in the order a block runs them (the order
/// GPTQ's true-sequential pass quantizes them). A block has either q, k, v or the fused qkv, and
/// either gate, up or the fused gateUp.
public enum DecoderLinear: String, CaseIterable, Sendable, Hashable {
    case q, k, v, qkv, o, gate, up, gateUp = "gate_up", down
}

/// The numbers a decoder is built from, taken from a family's validated config. Nothing is sized
/// from a config before `validate` accepted it.
public struct DecoderDims: Equatable, Sendable {
    public var hidden: Int
    public var layers: Int
    /// Query heads and key/value heads (grouped-query attention: heads is a multiple of kvHeads;
    /// query head h reads key/value head h / (heads / kvHeads), as transformers' repeat_kv).
    public var heads: Int
    public var kvHeads: Int
    /// Per head; usually hidden / heads, but Llama configs may set `head_dim` apart from it.
    public var headDim: Int
    /// SwiGLU width (gate/up out-features).
    public var intermediate: Int
    public var vocab: Int
    /// RoPE base (NeoX half-split rotation, transformers' rotate_half).
    public var ropeTheta: Double
    public var rmsNormEps: Double
    /// lm_head is the embedding table itself (no lm_head tensor in the checkpoint).
    public var tiedEmbeddings: Bool
    /// Which block linears carry a bias (Qwen2: q, k, v; Llama with attention_bias: q, k, v, o).
    public var biases: Set<DecoderLinear>
    /// One qkv_proj instead of q/k/v (rows q | k | v) and one gate_up_proj (rows gate | up).
    public var fusedQKV: Bool
    public var fusedGateUp: Bool
    /// From the config when it names them (perplexity's BOS rule, stop tokens); not used by the forward pass.
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var maxPositions: Int?

    public init(hidden: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int, intermediate: Int, vocab: Int,
                ropeTheta: Double, rmsNormEps: Double, tiedEmbeddings: Bool, biases: Set<DecoderLinear> = [],
                fusedQKV: Bool = false, fusedGateUp: Bool = false, bosTokenId: Int? = nil, eosTokenIds: [Int] = [],
                maxPositions: Int? = nil) {
        self.hidden = hidden; self.layers = layers; self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.intermediate = intermediate; self.vocab = vocab; self.ropeTheta = ropeTheta; self.rmsNormEps = rmsNormEps
        self.tiedEmbeddings = tiedEmbeddings; self.biases = biases; self.fusedQKV = fusedQKV
        self.fusedGateUp = fusedGateUp; self.bosTokenId = bosTokenId; self.eosTokenIds = eosTokenIds
        self.maxPositions = maxPositions
    }

    /// Query and key/value widths: heads * headDim and kvHeads * headDim.
    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }

    /// The linear layers of every block, in the order they run.
    public var blockLinears: [DecoderLinear] {
        (fusedQKV ? [.qkv] : [.q, .k, .v]) + [.o] + (fusedGateUp ? [.gateUp] : [.gate, .up]) + [.down]
    }

    /// nn.Linear weight shape [out, in] of a block linear.
    public func shape(of m: DecoderLinear) -> [Int] {
        switch m {
        case .q: return [qDim, hidden]
        case .k, .v: return [kvDim, hidden]
        case .qkv: return [qDim + 2 * kvDim, hidden]
        case .o: return [hidden, qDim]
        case .gate, .up: return [intermediate, hidden]
        case .gateUp: return [2 * intermediate, hidden]
        case .down: return [hidden, intermediate]
        }
    }

    /// The config keys the numbers came from, in the file's own spelling, so errors name them.
    public enum Field: Sendable, Hashable {
        case hidden, layers, heads, kvHeads, headDim, intermediate, vocab, ropeTheta, rmsNormEps, maxPositions
    }

    /// The spelling of transformers' config.json (Qwen2Config, LlamaConfig).
    public static let huggingFaceKeys: [Field: String] = [
        .hidden: "hidden_size", .layers: "num_hidden_layers", .heads: "num_attention_heads",
        .kvHeads: "num_key_value_heads", .headDim: "head_dim", .intermediate: "intermediate_size",
        .vocab: "vocab_size", .ropeTheta: "rope_theta", .rmsNormEps: "rms_norm_eps",
        .maxPositions: "max_position_embeddings",
    ]

    /// Upper bounds far above any real model (Qwen2.5-72B: hidden 8192, 80 layers, vocab 152064),
    /// low enough that no product of them overflows and a corrupt config cannot size a huge buffer.
    static let maxWidth = 1 << 20, maxLayers = 4096, maxHeads = 4096, maxVocab = 1 << 24

    /// Checks every number before anything is sized: positive and in range, finite, the divisibility
    /// the attention relies on. Errors name `path` and the key (`keys`, the file's spelling).
    public func validate(path: String, keys: [Field: String] = DecoderDims.huggingFaceKeys) throws {
        func key(_ f: Field) -> String { keys[f] ?? "\(f)" }
        func req(_ ok: Bool, _ msg: @autoclosure () -> String) throws {
            if !ok { throw ModelError.config(path: path, message: msg()) }
        }
        func range(_ v: Int, _ f: Field, _ lo: Int, _ hi: Int) throws {
            try req(v >= lo && v <= hi, "\(key(f)) is \(v); it must be in \(lo) ... \(hi)")
        }
        try range(hidden, .hidden, 1, Self.maxWidth)
        try range(layers, .layers, 1, Self.maxLayers)
        try range(heads, .heads, 1, Self.maxHeads)
        try range(kvHeads, .kvHeads, 1, heads)
        try req(heads % kvHeads == 0, "\(key(.heads)) \(heads) must be a multiple of \(key(.kvHeads)) \(kvHeads) (grouped-query attention)")
        try range(headDim, .headDim, 2, Self.maxWidth / 16)
        try req(headDim % 2 == 0, "\(key(.headDim)) \(headDim) must be even for rotary embeddings")
        try req(qDim <= Self.maxWidth * 4, "\(key(.heads)) x \(key(.headDim)) = \(qDim) is too large")
        try range(intermediate, .intermediate, 1, Self.maxWidth * 4)
        try range(vocab, .vocab, 1, Self.maxVocab)
        try req(ropeTheta.isFinite && ropeTheta > 1, "\(key(.ropeTheta)) is \(ropeTheta); it must be a finite number > 1")
        try req(rmsNormEps.isFinite && rmsNormEps > 0 && rmsNormEps < 1,
                "\(key(.rmsNormEps)) is \(rmsNormEps); it must be finite and in (0, 1)")
        if let m = maxPositions { try range(m, .maxPositions, 1, 1 << 30) }
        try req(biases.isSubset(of: Set(blockLinears)),
                "biases on \(biases.subtracting(blockLinears).map(\.rawValue).sorted()), which this block layout does not have")
    }
}

/// Where a family's checkpoint keeps each tensor. Block tensors are `layerPrefix + "<i>." + name`;
/// a linear's weight is `<module>.weight` and its bias `<module>.bias`.
public struct DecoderTensorNaming: Sendable, Equatable {
    public var embedding: String
    public var finalNorm: String
    public var lmHead: String
    public var layerPrefix: String
    public var attnNorm: String
    public var mlpNorm: String
    /// Module name of each block linear (without `.weight`).
    public var linears: [DecoderLinear: String]
    /// Tensors some checkpoints carry that the forward pass does not read (listed in
    /// `DecoderLM.ignoredTensors`, not refused): names ending in one of these.
    public var ignoredSuffixes: [String]

    public init(embedding: String, finalNorm: String, lmHead: String, layerPrefix: String, attnNorm: String,
                mlpNorm: String, linears: [DecoderLinear: String], ignoredSuffixes: [String] = []) {
        self.embedding = embedding; self.finalNorm = finalNorm; self.lmHead = lmHead; self.layerPrefix = layerPrefix
        self.attnNorm = attnNorm; self.mlpNorm = mlpNorm; self.linears = linears; self.ignoredSuffixes = ignoredSuffixes
    }

    public func block(_ layer: Int) -> String { layerPrefix + "\(layer)." }
    /// Module prefix of block linear `m` in `layer` (`model.layers.3.self_attn.q_proj`).
    public func module(_ layer: Int, _ m: DecoderLinear) -> String { block(layer) + (linears[m] ?? m.rawValue) }

    /// transformers' names (Qwen2ForCausalLM, LlamaForCausalLM, MistralForCausalLM, Phi-3's fused
    /// qkv_proj / gate_up_proj). Old Llama checkpoints also saved each layer's `rotary_emb.inv_freq`
    /// buffer; it is recomputed from the config, so it is ignored.
    public static let huggingFace = DecoderTensorNaming(
        embedding: "model.embed_tokens.weight", finalNorm: "model.norm.weight", lmHead: "lm_head.weight",
        layerPrefix: "model.layers.", attnNorm: "input_layernorm.weight", mlpNorm: "post_attention_layernorm.weight",
        linears: [.q: "self_attn.q_proj", .k: "self_attn.k_proj", .v: "self_attn.v_proj", .qkv: "self_attn.qkv_proj",
                  .o: "self_attn.o_proj", .gate: "mlp.gate_proj", .up: "mlp.up_proj", .gateUp: "mlp.gate_up_proj",
                  .down: "mlp.down_proj"],
        ignoredSuffixes: ["self_attn.rotary_emb.inv_freq"])

    /// llama.cpp's GGUF names (the same for its `qwen2` and `llama` architectures). Shapes here are
    /// torch's [out, in]; GGUF lists dimensions innermost first ([in, out]), so a GGUF reader reverses
    /// them. For `llama` (not `qwen2`) llama.cpp's converter has permuted the rows of attn_q / attn_k:
    /// see `DecoderArchitecture.ggufPermutesQK`.
    public static let gguf = DecoderTensorNaming(
        embedding: "token_embd.weight", finalNorm: "output_norm.weight", lmHead: "output.weight",
        layerPrefix: "blk.", attnNorm: "attn_norm.weight", mlpNorm: "ffn_norm.weight",
        linears: [.q: "attn_q", .k: "attn_k", .v: "attn_v", .qkv: "attn_qkv", .o: "attn_output",
                  .gate: "ffn_gate", .up: "ffn_up", .down: "ffn_down"])
    // Not ignored: `rope_freqs.weight` (Llama 3's RoPE scaling factors) is reported as unexpected,
    // since running without it would silently rotate every position wrongly.
}

/// One tensor a decoder reads: the strict binder's table.
public struct DecoderTensorSpec: Equatable, Sendable {
    public enum Role: Hashable, Sendable {
        case embedding, finalNorm, lmHead, attnNorm, mlpNorm
        case weight(DecoderLinear), bias(DecoderLinear)
    }
    public var name: String
    public var shape: [Int]
    public var role: Role
    /// The block, or nil for embedding, final norm and lm_head.
    public var layer: Int?
}

extension DecoderDims {
    /// Every tensor the model reads, with its shape: embedding [vocab, hidden]; per block the two
    /// norms [hidden], each linear [out, in] and its bias [out] where the family has one; the final
    /// norm [hidden]; lm_head [vocab, hidden] unless tied.
    public func tensorTable(_ n: DecoderTensorNaming) -> [DecoderTensorSpec] {
        var t = [DecoderTensorSpec(name: n.embedding, shape: [vocab, hidden], role: .embedding, layer: nil)]
        for i in 0..<layers {
            t.append(.init(name: n.block(i) + n.attnNorm, shape: [hidden], role: .attnNorm, layer: i))
            for m in blockLinears {
                if m == .gate || m == .gateUp {
                    t.append(.init(name: n.block(i) + n.mlpNorm, shape: [hidden], role: .mlpNorm, layer: i))
                }
                let s = shape(of: m)
                t.append(.init(name: n.module(i, m) + ".weight", shape: s, role: .weight(m), layer: i))
                if biases.contains(m) { t.append(.init(name: n.module(i, m) + ".bias", shape: [s[0]], role: .bias(m), layer: i)) }
            }
        }
        t.append(.init(name: n.finalNorm, shape: [hidden], role: .finalNorm, layer: nil))
        if !tiedEmbeddings { t.append(.init(name: n.lmHead, shape: [vocab, hidden], role: .lmHead, layer: nil)) }
        return t
    }
}

/// A decoder family: how to read its config and where its tensors are. Everything else (the
/// forward pass, KV cache, binding) is shared by `DecoderLM`.
public struct DecoderArchitecture: Sendable {
    /// Short name (`qwen2`, `llama`): llama.cpp's `general.architecture` for the same family.
    public var name: String
    /// config.json `architectures` entries this family reads (`Qwen2ForCausalLM`).
    public var architectures: [String]
    /// config.json `model_type` values this family reads.
    public var modelTypes: [String]
    /// config.json bytes -> validated dims; throws `ModelError.config` naming the file and key.
    public var dims: @Sendable (_ configJSON: Data, _ path: String) throws -> DecoderDims
    /// The tensor names of the Hugging Face checkpoint.
    public var naming: DecoderTensorNaming
    /// For GGUF: llama.cpp's converter reorders the rows of attn_q and attn_k of `llama` models (not
    /// of `qwen2`) so that its interleaved RoPE (pairs 2i, 2i+1) computes what transformers' rotate_half
    /// (pairs i, i + d/2) does: within each head of d rows, GGUF row 2i is checkpoint row i and GGUF
    /// row 2i+1 is checkpoint row i + d/2 (heads = attention heads for q, kv heads for k). Loading
    /// such a file into this rotate_half model takes the inverse (`DecoderLM.unpermuteGGUFRows`).
    public var ggufPermutesQK: Bool

    public init(name: String, architectures: [String], modelTypes: [String], naming: DecoderTensorNaming = .huggingFace,
                ggufPermutesQK: Bool, dims: @escaping @Sendable (Data, String) throws -> DecoderDims) {
        self.name = name; self.architectures = architectures; self.modelTypes = modelTypes
        self.naming = naming; self.ggufPermutesQK = ggufPermutesQK; self.dims = dims
    }
}

/// Every decoder family Squint runs. Adding one is a new file declaring its `DecoderArchitecture`
/// and one line here.
public enum DecoderRegistry {
    public static let architectures: [DecoderArchitecture] = [
        .qwen2,
        .llama,
    ]

    /// The family a config.json names (by `architectures`, else `model_type`).
    public static func architecture(forConfig data: Data, path: String) throws -> DecoderArchitecture {
        struct Probe: Decodable {
            var architectures: [String]?
            var modelType: String?
            enum CodingKeys: String, CodingKey { case architectures, modelType = "model_type" }
        }
        let p = try decodeConfig(Probe.self, from: data, path: path)
        if let names = p.architectures, let a = architectures.first(where: { a in names.contains { a.architectures.contains($0) } }) {
            return a
        }
        if let t = p.modelType, let a = architectures.first(where: { $0.modelTypes.contains(t) }) { return a }
        let said = (p.architectures.map { "architectures \($0)" } ?? "no architectures") + ", model_type " + (p.modelType ?? "absent")
        throw ModelError.config(path: path, message: "\(said) is not a decoder Squint runs (supported: "
                                + architectures.flatMap(\.architectures).joined(separator: ", ") + ")")
    }

    /// The family by short name (`qwen2`, `llama`: GGUF's `general.architecture`).
    public static func architecture(named name: String) -> DecoderArchitecture? {
        architectures.first { $0.name == name }
    }
}

/// Decodes a config with JSONDecoder, turning its errors into `ModelError.config` naming the key.
func decodeConfig<T: Decodable>(_ type: T.Type, from data: Data, path: String) throws -> T {
    func at(_ ctx: DecodingError.Context) -> String {
        let p = ctx.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        return p.isEmpty ? "the top level" : "'\(p)'"
    }
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch let DecodingError.keyNotFound(key, ctx) {
        let parent = ctx.codingPath.isEmpty ? "" : " in \(at(ctx))"
        throw ModelError.config(path: path, message: "missing key '\(key.stringValue)'\(parent)")
    } catch let DecodingError.typeMismatch(t, ctx) {
        throw ModelError.config(path: path, message: "wrong type at \(at(ctx)): expected \(t)")
    } catch let DecodingError.valueNotFound(t, ctx) {
        throw ModelError.config(path: path, message: "null at \(at(ctx)): expected \(t)")
    } catch let DecodingError.dataCorrupted(ctx) {
        throw ModelError.config(path: path, message: "not valid JSON or a bad value at \(at(ctx)): \(ctx.debugDescription)")
    } catch {
        throw ModelError.config(path: path, message: "not a valid config.json (\(error))")
    }
}

/// Pieces of transformers' config.json that every family spells the same way.
enum HFConfig {
    /// `rope_parameters` (transformers 5) or `rope_scaling` (transformers 4): only plain RoPE is
    /// supported; any scaling (linear, dynamic, yarn, llama3) would silently change every position's
    /// rotation, so it is refused by name.
    struct RopeParameters: Codable, Equatable, Sendable {
        var ropeTheta: Double?
        var ropeType: String?
        var type: String?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type", type }
    }

    /// `bos_token_id` / `eos_token_id`: an integer, a list of them, or null.
    struct TokenIds: Codable, Equatable, Sendable {
        var ids: [Int]
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { ids = [] } else if let one = try? c.decode(Int.self) { ids = [one] } else { ids = try c.decode([Int].self) }
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            if ids.count == 1 { try c.encode(ids[0]) } else { try c.encode(ids) }
        }
    }

    /// The RoPE base and the key it came from: `rope_theta` (transformers 4, the published Qwen2.5 and
    /// SmolLM2 files) or `rope_parameters.rope_theta` (what transformers 5 writes); transformers'
    /// default 10000 when neither is given.
    static func ropeTheta(_ top: Double?, parameters: RopeParameters?, scaling: RopeParameters?, path: String) throws
        -> (theta: Double, key: String) {
        for (p, key) in [(parameters, "rope_parameters"), (scaling, "rope_scaling")] {
            guard let p else { continue }
            let kind = p.ropeType ?? p.type ?? "default"
            guard kind == "default" else {
                throw ModelError.config(path: path, message: "\(key) type '\(kind)' is not supported (plain RoPE only)")
            }
        }
        if let t = top { return (t, "rope_theta") }
        if let t = parameters?.ropeTheta { return (t, "rope_parameters.rope_theta") }
        return (10000, "rope_theta")
    }

    static func requireSiLU(_ act: String?, path: String) throws {
        if let a = act, a != "silu" {
            throw ModelError.config(path: path, message: "hidden_act '\(a)' is not supported (SwiGLU with silu only)")
        }
    }
}
