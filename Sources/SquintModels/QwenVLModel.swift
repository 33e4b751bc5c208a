import Foundation
import SquintFormats
import SquintTensor

/// Qwen-VL-Chat (BF16 / F16 / F32 weights, float32 compute): the visual encoder and the language
/// model bound from any `TensorFile` (safetensors, torch shards, or a synthetic in-memory one).
public final class QwenVLModel {
    public let config: QwenVLConfig
    public let vision: VisionEncoder
    public let language: QwenLM
    /// How the checkpoint stores the block linears: dense, SQ4 records or AutoGPTQ tensors.
    public let quantization: Int4Binding.Layout

    /// The declared binding table: every tensor the model reads, with its shape. It is the BF16
    /// checkpoint's state_dict (QwenVLConfig.bf16TensorSpecs), so a checkpoint binds only if it
    /// holds exactly these names, shapes and a float dtype.
    public static func expectedTensors(_ config: QwenVLConfig) -> [(name: String, shape: [Int])] {
        config.bf16TensorSpecs().map { ($0.name, $0.shape) }
    }

    /// An SQ4 file or an AutoGPTQ checkpoint binds its quantized block linears as `QuantizedLinear`
    /// (see `Int4Binding`); everything else binds as dense layers.
    /// Validates `config`, checks the whole checkpoint against the binding table (throws
    /// `ModelError.binding` listing every missing / unexpected / wrong-shape / wrong-dtype tensor),
    /// then binds. Weights stay where the file keeps them (zero copy for mapped files); only norm
    /// weights, biases and small tables are widened to float32.
    public init(config: QwenVLConfig, weights: TensorFile) throws {
        try config.validate()
        self.config = config
        let int4 = try Int4Binding(file: weights, config: config)
        quantization = int4.layout
        let binder = try WeightBinder(file: weights, expected: int4.expected(Self.expectedTensors(config)),
                                      owned: int4.ownedTensors, quantized: int4.layers, extraProblems: int4.problems)
        vision = try VisionEncoder(config: config, binder: binder)
        language = try QwenLM(config: config, binder: binder)
    }

    /// Result of greedy decoding: the chosen ids and the logits each was chosen from
    /// (row 0: last prompt position; row k: the step that consumed ids[k-1]).
    public struct Generation {
        public var ids: [Int32]           // [steps]
        public var logits: [[Float]]      // [steps][vocab]
        public var prefill: QwenLM.PrefillResult
    }

    /// Encodes the images, prefills the prompt and takes `steps` greedy steps (argmax of the raw
    /// logits, first index on ties as torch.argmax; no stop words, no processors) with the KV cache.
    public func generateGreedy(ids: [Int32], pixelValues: FloatTensor?, steps: Int,
                               keepHiddenStates: Bool = false, allLogits: Bool = false) throws -> Generation {
        let features = try pixelValues.map { try vision.encode(pixelValues: $0) }
        let cache = KVCache(config: config, capacity: ids.count + steps)
        let pre = try language.prefill(ids: ids, imageFeatures: features, cache: cache, allLogits: allLogits,
                                       keepHiddenStates: keepHiddenStates)
        let v = config.vocabSize
        var logits = [Array(pre.logits.data[(pre.logits.count - v)...])]
        var out: [Int32] = []
        for step in 0..<steps {
            let next = Int32(argmax(logits[step]))
            out.append(next)
            if step + 1 < steps { logits.append(try language.decodeStep(next, cache: cache)) }
        }
        return Generation(ids: out, logits: logits, prefill: pre)
    }
}

/// Index of the largest value, the first one on ties (torch.argmax); NaN is never chosen.
/// Index of the first NaN or Inf in `x`, or nil when all values are finite. Logits are checked with it
/// before they are sampled or scored: NaN logits used to come out as "!!!!" (argmax 0), a `KL nan` that
/// passed, or a token id from the padded vocabulary (issue 17).
public func firstNonFinite<C: Collection>(_ x: C) -> C.Index? where C.Element == Float {
    x.firstIndex { !$0.isFinite }
}

public func argmax(_ x: [Float]) -> Int {
    var best = 0, bv = -Float.infinity
    for (i, v) in x.enumerated() where v > bv { best = i; bv = v }
    return best
}
