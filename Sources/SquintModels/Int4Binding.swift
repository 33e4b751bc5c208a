import SquintFormats
import SquintTensor

/// Which block linear layers of a checkpoint are Int4, built once at load as `QuantizedLinear`.
///
/// Two layouts are recognised from the tensors themselves (never from a flag):
/// - an SQ4 file (`SquintInt4File`): each record named `transformer.h.<i>.<module>` is used straight
///   from the mapping (zero copy);
/// - an AutoGPTQ v1 checkpoint (the official Qwen-VL-Chat-Int4 layout): `<prefix>.qweight`, `.qzeros`,
///   `.scales`, `.g_idx`, `.bias`; each module is converted once, losslessly, to the SQ4 in-memory
///   layout by `AutoGPTQLayout.toSQ4` (codes repacked, zero-minus-one quirk undone).
///
/// Every tensor those records own is accounted for here, so the strict binder can still refuse
/// anything left over; quantized modules outside the LLM blocks, or with the wrong shape, are
/// binding problems listed with the rest.
public struct Int4Binding {
    public enum Layout: String, Sendable { case dense, squintInt4 = "squint-int4", autoGPTQ = "autogptq" }

    public let layout: Layout
    /// Built layers by module prefix (`transformer.h.3.mlp.w1`).
    public let layers: [String: QuantizedLinear]
    /// Every file tensor the quantized layers own (validated by the record, not by the binder).
    public let ownedTensors: Set<String>
    /// Every module prefix the checkpoint declares quantized (built or not).
    public let declaredModules: Set<String>
    /// Problems found while building (wrong shapes, stray modules): reported by the binder.
    public let problems: [String]

    /// The five block linears of every layer with their nn.Linear shapes [out, in] and whether the
    /// dense layer has a bias.
    static func blockModules(_ c: QwenVLConfig) -> [(prefix: String, out: Int, in: Int, bias: Bool)] {
        let h = c.hiddenSize, f = c.mlpWidth
        return (0..<c.numHiddenLayers).flatMap { i -> [(String, Int, Int, Bool)] in
            let p = "transformer.h.\(i)."
            return [(p + "attn.c_attn", 3 * h, h, true), (p + "attn.c_proj", h, h, false),
                    (p + "mlp.w1", f, h, false), (p + "mlp.w2", f, h, false), (p + "mlp.c_proj", h, f, false)]
        }
    }

    public init(file: TensorFile, config: QwenVLConfig) throws {
        try self.init(file: file, modules: Self.blockModules(config).map { ($0.prefix, $0.out, $0.in) },
                      allowed: "the LLM blocks' attn.c_attn, attn.c_proj, mlp.w1, mlp.w2, mlp.c_proj")
    }

    /// Any model: `modules` are the linears that may be Int4 (module prefix, out, in); `allowed`
    /// describes them in the message about a quantized module outside that list.
    public init(file: TensorFile, modules: [(prefix: String, out: Int, in: Int)], allowed: String) throws {
        var layers: [String: QuantizedLinear] = [:], owned = Set<String>(), problems: [String] = [], declared = Set<String>()
        let wanted = Dictionary(uniqueKeysWithValues: modules.map { ($0.prefix, ($0.out, $0.in)) })
        func check(_ prefix: String, _ out: Int, _ inF: Int) -> Bool {
            guard let (eo, ei) = wanted[prefix] else {
                problems.append("quantized module \(prefix) is not a block linear of this model (only \(allowed) may be Int4)")
                return false
            }
            guard out == eo && inF == ei else {
                problems.append("quantized module \(prefix): \(out)x\(inF) (out x in), expected \(eo)x\(ei)")
                return false
            }
            return true
        }
        if let sq4 = file as? SquintInt4File {
            layout = .squintInt4
            for s in sq4.linears {
                declared.insert(s.name)
                for t in s.expectedTensors() { owned.insert(t.name) }
                guard check(s.name, s.outFeatures, s.inFeatures) else { continue }
                layers[s.name] = QuantizedLinear(record: try sq4.quantizedLinear(s.name))
            }
            if let v = sq4.header.tokenizer.vocabTensor { owned.insert(v) }
            if let v = sq4.header.tokenizer.tokenizerJSONTensor { owned.insert(v) }
        } else {
            let suffix = AutoGPTQLayout.suffixes.qweight
            let prefixes = file.tensors.map(\.name).filter { $0.hasSuffix(suffix) }.map { String($0.dropLast(suffix.count)) }
            layout = prefixes.isEmpty ? .dense : .autoGPTQ
            for p in prefixes.sorted() {
                declared.insert(p)
                let s = AutoGPTQLayout.suffixes
                for x in [s.qweight, s.qzeros, s.scales, s.gIdx, s.bias] where file.info(p + x) != nil { owned.insert(p + x) }
                let missing = [s.qzeros, s.scales, s.gIdx].filter { file.info(p + $0) == nil }
                guard missing.isEmpty else {
                    problems.append("quantized module \(p): missing tensor \(missing.map { p + $0 }.joined(separator: ", "))"); continue
                }
                let q = file.info(p + s.qweight)!
                guard q.shape.count == 2 else { problems.append("\(p + s.qweight): shape \(q.shape), expected [in/8, out]"); continue }
                guard check(p, q.shape[1], q.shape[0] * 8) else { continue }
                let module = try AutoGPTQLayout.module(in: file, prefix: p)
                layers[p] = QuantizedLinear(record: try AutoGPTQLayout.toSQ4(module, name: p, path: file.path))
            }
        }
        self.layers = layers; ownedTensors = owned; self.problems = problems; declaredModules = declared
    }

    /// The binding table with each quantized module's dense `.weight` / `.bias` taken out (its
    /// record's tensors are in `ownedTensors` instead).
    public func expected(_ dense: [(name: String, shape: [Int])]) -> [(name: String, shape: [Int])] {
        guard !declaredModules.isEmpty else { return dense }
        let gone = Set(declaredModules.flatMap { [$0 + ".weight", $0 + ".bias"] })
        return dense.filter { !gone.contains($0.name) }
    }
}
