import Foundation

/// Qwen2ForCausalLM (Qwen2, Qwen2.5, Qwen2.5-Coder; the language half of Qwen2-VL): the shared
/// decoder block with biases on q, k and v (none on o or the MLP), NeoX RoPE with `rope_theta`
/// (1e6 for Qwen2.5), and lm_head tied to the embedding when `tie_word_embeddings` (the 0.5B, 1.5B
/// and 3B models). config.json as transformers writes it: 4.x spells the base `rope_theta`, 5.x
/// `rope_parameters.rope_theta`; both are read.
public struct Qwen2Config: Codable, Equatable, Sendable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    /// transformers uses num_attention_heads when absent.
    public var numKeyValueHeads: Int?
    public var vocabSize: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double?
    var ropeParameters: HFConfig.RopeParameters?
    var ropeScaling: HFConfig.RopeParameters?
    public var hiddenAct: String?
    /// transformers' Qwen2Config default is false.
    public var tieWordEmbeddings: Bool?
    public var useSlidingWindow: Bool?
    /// transformers 5: one entry per layer, "full_attention" or "sliding_attention".
    public var layerTypes: [String]?
    public var maxPositionEmbeddings: Int?
    var bosTokenId: HFConfig.TokenIds?
    var eosTokenId: HFConfig.TokenIds?

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case vocabSize = "vocab_size"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case hiddenAct = "hidden_act"
        case tieWordEmbeddings = "tie_word_embeddings"
        case useSlidingWindow = "use_sliding_window"
        case layerTypes = "layer_types"
        case maxPositionEmbeddings = "max_position_embeddings"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
    }

    /// Checks every number and refusal rule before anything is sized (what `dims(path:)` does first).
    public func validate(path: String) throws { _ = try dims(path: path) }

    /// Checks the config (every number, via `DecoderDims.validate`) and returns the decoder's dims.
    public func dims(path: String) throws -> DecoderDims {
        func fail(_ m: String) -> ModelError { .config(path: path, message: m) }
        try HFConfig.requireSiLU(hiddenAct, path: path)
        if useSlidingWindow == true || (layerTypes ?? []).contains(where: { $0 != "full_attention" }) {
            throw fail("sliding-window attention (use_sliding_window / layer_types) is not supported")
        }
        if let t = layerTypes, t.count != numHiddenLayers {
            throw fail("layer_types has \(t.count) entries for num_hidden_layers \(numHiddenLayers)")
        }
        // Qwen2's head size is hidden_size / num_attention_heads (no head_dim key).
        guard numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 else {
            throw fail("hidden_size \(hiddenSize) must be a positive multiple of num_attention_heads \(numAttentionHeads)")
        }
        let rope = try HFConfig.ropeTheta(ropeTheta, parameters: ropeParameters, scaling: ropeScaling, path: path)
        let d = DecoderDims(hidden: hiddenSize, layers: numHiddenLayers, heads: numAttentionHeads,
                            kvHeads: numKeyValueHeads ?? numAttentionHeads, headDim: hiddenSize / numAttentionHeads,
                            intermediate: intermediateSize, vocab: vocabSize, ropeTheta: rope.theta, rmsNormEps: rmsNormEps,
                            tiedEmbeddings: tieWordEmbeddings ?? false, biases: [.q, .k, .v],
                            bosTokenId: bosTokenId?.ids.first, eosTokenIds: eosTokenId?.ids ?? [],
                            maxPositions: maxPositionEmbeddings)
        var keys = DecoderDims.huggingFaceKeys
        keys[.ropeTheta] = rope.key
        keys[.headDim] = "hidden_size / num_attention_heads"
        try d.validate(path: path, keys: keys)
        return d
    }
}

extension DecoderArchitecture {
    public static let qwen2 = DecoderArchitecture(
        name: "qwen2", architectures: ["Qwen2ForCausalLM"], modelTypes: ["qwen2"], ggufPermutesQK: false
    ) { data, path in
        try decodeConfig(Qwen2Config.self, from: data, path: path).dims(path: path)
    }
}
