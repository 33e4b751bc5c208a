import Foundation

/// Qwen-VL-Chat `config.json`, decoded with the file's own key spelling (BF16 and Int4 flavours).
/// Only the fields the forward pass uses are required; the rest are kept for round-tripping.
public struct QwenVLConfig: Codable, Equatable, Sendable {
    public struct Visual: Codable, Equatable, Sendable {
        public var heads: Int
        public var imageSize: Int
        public var imageStartId: Int
        public var layers: Int
        public var mlpRatio: Double
        public var outputDim: Int
        public var patchSize: Int
        public var width: Int

        enum CodingKeys: String, CodingKey {
            case heads, layers, width
            case imageSize = "image_size"
            case imageStartId = "image_start_id"
            case mlpRatio = "mlp_ratio"
            case outputDim = "output_dim"
            case patchSize = "patch_size"
        }

        /// ViT MLP width: `int(width * mlp_ratio)` as visual.py computes it (1664 * 4.9231 -> 8192).
        public var mlpWidth: Int { Int(Double(width) * mlpRatio) }
        public var headDim: Int { width / heads }
        /// Patches per side: 448 / 14 = 32.
        public var gridSize: Int { imageSize / patchSize }
        /// Resampler heads: output_dim / 128 (visual.py).
        public var resamplerHeads: Int { max(outputDim / 128, 1) }
        /// The resampler's 2D sin-cos table is 16x16 (256 queries), whatever the image grid.
        public var resamplerGrid: Int { 16 }
    }

    public var hiddenSize: Int
    public var intermediateSize: Int
    public var kvChannels: Int
    public var layerNormEpsilon: Double
    public var numAttentionHeads: Int
    public var numHiddenLayers: Int
    public var rotaryEmbBase: Double
    public var rotaryPct: Double
    public var seqLength: Int
    public var vocabSize: Int
    public var useDynamicNTK: Bool
    public var useLognAttn: Bool
    public var tieWordEmbeddings: Bool
    public var torchDtype: String?
    public var visual: Visual
    /// Present in the Int4 release's config.json.
    public var quantizationConfig: QuantizationConfig?

    enum CodingKeys: String, CodingKey {
        case visual
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case kvChannels = "kv_channels"
        case layerNormEpsilon = "layer_norm_epsilon"
        case numAttentionHeads = "num_attention_heads"
        case numHiddenLayers = "num_hidden_layers"
        case rotaryEmbBase = "rotary_emb_base"
        case rotaryPct = "rotary_pct"
        case seqLength = "seq_length"
        case vocabSize = "vocab_size"
        case useDynamicNTK = "use_dynamic_ntk"
        case useLognAttn = "use_logn_attn"
        case tieWordEmbeddings = "tie_word_embeddings"
        case torchDtype = "torch_dtype"
        case quantizationConfig = "quantization_config"
    }

    /// w1 / w2 width: Qwen halves `intermediate_size` (22016 -> 11008).
    public var mlpWidth: Int { intermediateSize / 2 }
    public var headDim: Int { hiddenSize / numAttentionHeads }

    public static func load(path: String) throws -> QwenVLConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.config(path: path, message: "cannot read the file")
        }
        let cfg: QwenVLConfig
        do {
            cfg = try JSONDecoder().decode(QwenVLConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw ModelError.config(path: path, message: "missing key '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw ModelError.config(path: path, message: "wrong type at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))'")
        } catch {
            throw ModelError.config(path: path, message: "not a valid config.json (\(error))")
        }
        try cfg.validate(path: path)
        return cfg
    }

    /// Checks the relations the forward pass relies on, before anything is built.
    public func validate(path: String = "config.json") throws {
        func req(_ ok: Bool, _ msg: String) throws { if !ok { throw ModelError.config(path: path, message: msg) } }
        try req(hiddenSize > 0 && numAttentionHeads > 0 && hiddenSize % numAttentionHeads == 0,
                "hidden_size \(hiddenSize) must be a positive multiple of num_attention_heads \(numAttentionHeads)")
        try req(kvChannels == headDim, "kv_channels \(kvChannels) must equal hidden_size / heads = \(headDim)")
        try req(headDim % 2 == 0, "head dim \(headDim) must be even for rotary embeddings")
        try req(rotaryPct == 1.0, "rotary_pct \(rotaryPct) is not supported (Qwen-VL uses 1.0)")
        try req(intermediateSize > 0 && intermediateSize % 2 == 0, "intermediate_size must be positive and even")
        try req(numHiddenLayers > 0 && vocabSize > 0, "num_hidden_layers and vocab_size must be positive")
        try req(!tieWordEmbeddings, "tie_word_embeddings=true is not Qwen-VL (lm_head is separate)")
        try req(visual.width > 0 && visual.heads > 0 && visual.width % visual.heads == 0,
                "visual.width must be a multiple of visual.heads")
        try req(visual.patchSize > 0 && visual.imageSize % visual.patchSize == 0,
                "visual.image_size must be a multiple of patch_size")
        try req(visual.outputDim % visual.resamplerHeads == 0, "visual.output_dim must divide into resampler heads")
        try req(visual.outputDim == hiddenSize, "visual.output_dim \(visual.outputDim) must equal hidden_size \(hiddenSize)")
        try req(visual.outputDim % 4 == 0, "visual.output_dim must be a multiple of 4 (2D sin-cos table)")
    }
}

/// AutoGPTQ `quantization_config` / `quantize_config.json`, key order as AutoGPTQ writes it.
public struct QuantizationConfig: Codable, Equatable, Sendable {
    public var bits: Int
    public var groupSize: Int
    public var dampPercent: Double
    public var descAct: Bool
    public var staticGroups: Bool
    public var sym: Bool
    public var trueSequential: Bool
    public var modelNameOrPath: String?
    public var modelFileBaseName: String?
    public var quantMethod: String?

    enum CodingKeys: String, CodingKey {
        case bits, sym
        case groupSize = "group_size"
        case dampPercent = "damp_percent"
        case descAct = "desc_act"
        case staticGroups = "static_groups"
        case trueSequential = "true_sequential"
        case modelNameOrPath = "model_name_or_path"
        case modelFileBaseName = "model_file_base_name"
        case quantMethod = "quant_method"
    }

    public init(bits: Int = 4, groupSize: Int = 128, dampPercent: Double = 0.01, descAct: Bool = false,
                staticGroups: Bool = false, sym: Bool = true, trueSequential: Bool = true,
                modelNameOrPath: String? = nil, modelFileBaseName: String? = "model", quantMethod: String? = nil) {
        self.bits = bits; self.groupSize = groupSize; self.dampPercent = dampPercent; self.descAct = descAct
        self.staticGroups = staticGroups; self.sym = sym; self.trueSequential = trueSequential
        self.modelNameOrPath = modelNameOrPath; self.modelFileBaseName = modelFileBaseName
        self.quantMethod = quantMethod
    }
}

/// Errors of model construction, each naming the file or tensor and what was expected.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case config(path: String, message: String)
    /// Weight binding failed: every problem is listed at once (missing, unexpected, wrong shape/dtype).
    case binding(path: String, problems: [String])
    case input(message: String)

    public var description: String {
        switch self {
        case let .config(p, m): return "\(p): \(m)"
        case let .binding(p, probs):
            let shown = probs.prefix(20).joined(separator: "\n  ")
            let more = probs.count > 20 ? "\n  ... and \(probs.count - 20) more" : ""
            return "\(p): the checkpoint does not match the model (\(probs.count) problems):\n  \(shown)\(more)"
        case let .input(m): return m
        }
    }
}
