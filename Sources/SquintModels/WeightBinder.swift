import SquintFormats
import SquintTensor

/// Strict weight binding: the model declares every tensor it expects (name, shape); the checkpoint
/// must hold exactly those, each in a float dtype the kernels read (BF16, F16, F32). Every problem
/// (missing, unexpected, wrong shape, wrong dtype) is collected and thrown together as
/// `ModelError.binding`, so one run tells the user everything that is wrong with a checkpoint.
struct WeightBinder {
    static let acceptedDTypes: Set<DType> = [.bf16, .f16, .f32]
    let file: TensorFile
    /// Int4 block linears by module prefix (empty for a dense checkpoint).
    let quantized: [String: QuantizedLinear]

    /// `owned`: tensors a quantized record accounts for (checked by the record, not here);
    /// `extraProblems` are reported together with the binder's own.
    init(file: TensorFile, expected: [(name: String, shape: [Int])], owned: Set<String> = [],
         quantized: [String: QuantizedLinear] = [:], extraProblems: [String] = []) throws {
        self.file = file
        self.quantized = quantized
        var problems: [String] = extraProblems
        var byName: [String: TensorInfo] = [:]
        for t in file.tensors { byName[t.name] = t }
        var expectedNames = Set<String>()
        for e in expected {
            expectedNames.insert(e.name)
            guard let t = byName[e.name] else { problems.append("missing tensor \(e.name) (expected shape \(e.shape))"); continue }
            if t.shape != e.shape { problems.append("\(e.name): shape \(t.shape), expected \(e.shape)") }
            if !Self.acceptedDTypes.contains(t.dtype) {
                problems.append("\(e.name): dtype \(t.dtype.rawValue), expected BF16, F16 or F32")
            }
        }
        for t in file.tensors where !expectedNames.contains(t.name) && !owned.contains(t.name) {
            problems.append("unexpected tensor \(t.name) \(t.shape) \(t.dtype.rawValue)")
        }
        if !problems.isEmpty { throw ModelError.binding(path: file.path, problems: problems) }
    }

    /// Block linear `prefix` (`transformer.h.0.mlp.w1`): its Int4 layer when the checkpoint
    /// quantized it, else the dense `prefix.weight` (+ `prefix.bias`).
    func blockLinear(_ prefix: String, bias: Bool) throws -> any LinearLayer {
        if let q = quantized[prefix] { return q }
        return try linear(prefix + ".weight", bias: bias ? prefix + ".bias" : nil)
    }
    func view(_ name: String) throws -> TensorView { try file.view(name) }
    func floats(_ name: String) throws -> [Float] { Kernels.floats(try file.view(name)) }
    func linear(_ name: String, bias: String? = nil, layout: Linear.Layout = .outIn) throws -> Linear {
        Linear(weight: try view(name), bias: try bias.map { try floats($0) }, layout: layout)
    }
}
