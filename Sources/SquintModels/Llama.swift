import Foundation

/// LlamaForCausalLM (Llama 2, SmolLM2, TinyLlama, ...): the shared decoder block without biases
/// (unless `attention_bias` / `mlp_bias`), NeoX RoPE with `rope_theta` (transformers' rotate_half;
/// llama.cpp's GGUF permutes q/k rows instead, see `DecoderArchitecture.ggufPermutesQK`), an optional
/// `head_dim` apart from hidden_size / heads, and lm_head tied when `tie_word_embeddings` (SmolLM2).
/// Llama 3's `rope_scaling` (type llama3) is refused by name until it is implemented.
public struct LlamaConfig: Codable, Equatable, Sendable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    /// transformers uses num_attention_heads when absent.
    public var numKeyValueHeads: Int?
    /// transformers uses hidden_size / num_attention_heads when absent.
    public var headDim: Int?
    public var vocabSize: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double?
    var ropeParameters: HFConfig.RopeParameters?
    var ropeScaling: HFConfig.RopeParameters?
    public var hiddenAct: String?
    /// transformers' LlamaConfig default is false.
    public var tieWordEmbeddings: Bool?
    public var attentionBias: Bool?
    public var mlpBias: Bool?
    public var maxPositionEmbeddings: Int?
    var bosTokenId: HFConfig.TokenIds?
    var eosTokenId: HFConfig.TokenIds?

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case vocabSize = "vocab_size"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case hiddenAct = "hidden_act"
        case tieWordEmbeddings = "tie_word_embeddings"
        case attentionBias = "attention_bias"
        case mlpBias = "mlp_bias"
        case maxPositionEmbeddings = "max_position_embeddings"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
    }

    /// Checks every number and refusal rule before anything is sized (what `dims(path:)` does first).
    public func validate(path: String) throws { _ = try dims(path: path) }

    /// Checks the config (every number, via `DecoderDims.validate`) and returns the decoder's dims.
    public func dims(path: String) throws -> DecoderDims {
        try HFConfig.requireSiLU(hiddenAct, path: path)
        var keys = DecoderDims.huggingFaceKeys
        let headDim: Int
        if let hd = self.headDim {
            headDim = hd
        } else {
            guard numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 else {
                throw ModelError.config(path: path, message: "hidden_size \(hiddenSize) must be a positive multiple of "
                                        + "num_attention_heads \(numAttentionHeads) when head_dim is absent")
            }
            headDim = hiddenSize / numAttentionHeads
            keys[.headDim] = "hidden_size / num_attention_heads"
        }
        let rope = try HFConfig.ropeTheta(ropeTheta, parameters: ropeParameters, scaling: ropeScaling, path: path)
        keys[.ropeTheta] = rope.key
        var biases: Set<DecoderLinear> = []
        if attentionBias == true { biases.formUnion([.q, .k, .v, .o]) }
        if mlpBias == true { biases.formUnion([.gate, .up, .down]) }
        let d = DecoderDims(hidden: hiddenSize, layers: numHiddenLayers, heads: numAttentionHeads,
                            kvHeads: numKeyValueHeads ?? numAttentionHeads, headDim: headDim,
                            intermediate: intermediateSize, vocab: vocabSize, ropeTheta: rope.theta, rmsNormEps: rmsNormEps,
                            tiedEmbeddings: tieWordEmbeddings ?? false, biases: biases,
                            bosTokenId: bosTokenId?.ids.first, eosTokenIds: eosTokenId?.ids ?? [],
                            maxPositions: maxPositionEmbeddings)
        try d.validate(path: path, keys: keys)
        return d
    }
}

extension DecoderArchitecture {
    public static let llama = DecoderArchitecture(
        name: "llama", architectures: ["LlamaForCausalLM"], modelTypes: ["llama"], ggufPermutesQK: true
    ) { data, path in
        try decodeConfig(LlamaConfig.self, from: data, path: path).dims(path: path)
    }
}
