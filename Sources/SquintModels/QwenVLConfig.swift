import Foundation
import SquintFormats

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
        return try decode(data, path: path)
    }

    /// A config.json's bytes, already read from `path` (named in errors), decoded and validated.
    public static func decode(_ data: Data, path: String) throws -> QwenVLConfig {
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

    /// Largest values accepted for the sizes of a config (Qwen-VL-Chat's own in comments). They are far
    /// above any released model and low enough that nothing sized from them overflows or asks for an
    /// absurd allocation before the weights are matched against them (issue 17: a layer count of 2^31
    /// made `inspect` allocate gigabytes; a huge `mlp_ratio` trapped in an Int conversion).
    public enum Limits {
        public static let hiddenSize = 1 << 16          // 4096
        public static let heads = 1024                  // 32 (LLM), 16 (ViT)
        public static let layers = 1024                 // 32 (LLM), 48 (ViT)
        public static let intermediateSize = 1 << 20    // 22016
        public static let seqLength = 1 << 20           // 2048
        public static let vocabSize = 1 << 22           // 151936
        public static let imageSize = 8192              // 448
        public static let mlpWidth = 1 << 20            // 8192 (ViT)
    }

    /// Checks every number the model is sized from (finite, in a stated range) and the relations the
    /// forward pass relies on, before anything is built. Each failure is one line naming the file, the
    /// key and the allowed range. Every entry point gets here: `load(path:)` (config.json) and
    /// `CheckpointOpener.configFromHeader` (an SQ4 header's config) both call it.
    public func validate(path: String = "config.json") throws {
        func req(_ ok: Bool, _ msg: String) throws { if !ok { throw ModelError.config(path: path, message: msg) } }
        func range(_ key: String, _ v: Int, _ lo: Int, _ hi: Int) throws {
            try req(v >= lo && v <= hi, "\(key) is \(v), allowed \(lo)...\(hi)")
        }
        func range(_ key: String, _ v: Double, above lo: Double, _ hi: Double) throws {
            try req(v.isFinite && v > lo && v <= hi, "\(key) is \(v), allowed a finite number in (\(lo), \(hi)]")
        }
        try range("hidden_size", hiddenSize, 1, Limits.hiddenSize)
        try range("num_attention_heads", numAttentionHeads, 1, Limits.heads)
        try range("num_hidden_layers", numHiddenLayers, 1, Limits.layers)
        try range("intermediate_size", intermediateSize, 2, Limits.intermediateSize)
        try range("seq_length", seqLength, 1, Limits.seqLength)
        try range("vocab_size", vocabSize, 1, Limits.vocabSize)
        try range("kv_channels", kvChannels, 1, Limits.hiddenSize)
        try range("layer_norm_epsilon", layerNormEpsilon, above: 0, 1)
        try range("rotary_emb_base", rotaryEmbBase, above: 1, 1e12)
        try req(rotaryPct.isFinite && rotaryPct == 1.0, "rotary_pct \(rotaryPct) is not supported (allowed: 1.0, as Qwen-VL uses)")
        try range("visual.width", visual.width, 1, Limits.hiddenSize)
        try range("visual.heads", visual.heads, 1, Limits.heads)
        try range("visual.layers", visual.layers, 1, Limits.layers)
        try range("visual.image_size", visual.imageSize, 1, Limits.imageSize)
        try range("visual.patch_size", visual.patchSize, 1, visual.imageSize)
        try range("visual.output_dim", visual.outputDim, 1, Limits.hiddenSize)
        try range("visual.image_start_id", visual.imageStartId, 0, vocabSize - 3)   // <img>, </img>, <imgpad> follow it
        // int(width * mlp_ratio) must be a real width: checked in Double before the Int conversion.
        try req(visual.mlpRatio.isFinite && visual.mlpRatio > 0
                    && Double(visual.width) * visual.mlpRatio >= 1 && Double(visual.width) * visual.mlpRatio <= Double(Limits.mlpWidth),
                "visual.mlp_ratio is \(visual.mlpRatio), allowed a finite number with 1 <= visual.width * mlp_ratio <= \(Limits.mlpWidth)")

        try req(hiddenSize % numAttentionHeads == 0,
                "hidden_size \(hiddenSize) must be a positive multiple of num_attention_heads \(numAttentionHeads)")
        try req(kvChannels == headDim, "kv_channels \(kvChannels) must equal hidden_size / heads = \(headDim)")
        try req(headDim % 2 == 0, "head dim \(headDim) must be even for rotary embeddings")
        try req(intermediateSize % 2 == 0, "intermediate_size \(intermediateSize) must be even")
        try req(!tieWordEmbeddings, "tie_word_embeddings=true is not Qwen-VL (lm_head is separate)")
        try req(visual.width % visual.heads == 0, "visual.width \(visual.width) must be a multiple of visual.heads \(visual.heads)")
        try req(visual.imageSize % visual.patchSize == 0,
                "visual.image_size \(visual.imageSize) must be a multiple of visual.patch_size \(visual.patchSize)")
        try req(visual.outputDim % visual.resamplerHeads == 0, "visual.output_dim must divide into resampler heads")
        try req(visual.outputDim == hiddenSize, "visual.output_dim \(visual.outputDim) must equal hidden_size \(hiddenSize)")
        try req(visual.outputDim % 4 == 0, "visual.output_dim must be a multiple of 4 (2D sin-cos table)")
        try quantizationConfig?.validate(path: path, key: "quantization_config.")
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

    /// The numbers AutoGPTQ's settings may take (`key` prefixes the names in messages, e.g.
    /// "quantization_config." inside config.json): bits 2, 3, 4 or 8; group_size -1 (one group per
    /// row) or 1...2^20; damp_percent a finite number in 0...1.
    public func validate(path: String, key: String = "") throws {
        func req(_ ok: Bool, _ msg: String) throws { if !ok { throw ModelError.config(path: path, message: key + msg) } }
        try req([2, 3, 4, 8].contains(bits), "bits is \(bits), allowed 2, 3, 4 or 8")
        try req(groupSize == -1 || (1...(1 << 20)).contains(groupSize), "group_size is \(groupSize), allowed -1 or 1...\(1 << 20)")
        try req(dampPercent.isFinite && dampPercent >= 0 && dampPercent <= 1, "damp_percent is \(dampPercent), allowed a finite number in 0...1")
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
    /// The model computed NaN or Inf (weights holding non-finite values): where it was first seen.
    case nonFinite(message: String)

    public var description: String {
        switch self {
        // Names from files are escaped (`printable`); only the binding list's own line breaks remain.
        case let .config(p, m): return printable("\(p): \(m)")
        case let .binding(p, probs):
            let shown = probs.prefix(20).map(printable).joined(separator: "\n  ")
            let more = probs.count > 20 ? "\n  ... and \(probs.count - 20) more" : ""
            return "\(printable(p)): the checkpoint does not match the model (\(probs.count) problems):\n  \(shown)\(more)"
        case let .input(m): return printable(m)
        case let .nonFinite(m): return printable(m) + " (the weights hold NaN or Inf values: `squint inspect --stats` finds them)"
        }
    }
}
