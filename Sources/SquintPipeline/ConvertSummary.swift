import Foundation
import SquintFormats

/// What a conversion did to the model's size, as llama-quantize reports it at the end: bytes in and
/// out, bits per weight of the quantized linears (codes + scales + zeros + permutation, over their
/// weights) and of the whole model (every output tensor byte over every source parameter).
public struct ConvertSizes: Codable, Sendable, Equatable {
    /// Bytes of the source's weight files on disk.
    public var inputBytes: Int
    /// Bytes of the files written (weights, configs, tokenizer, log).
    public var outputBytes: Int
    /// Parameters of the source checkpoint (elements of every tensor).
    public var parameters: Int
    /// Weights of the quantized linears, and the output bytes that hold them.
    public var quantizedWeights: Int
    public var quantizedBytes: Int
    /// Output bytes of every tensor (quantized or not).
    public var outputTensorBytes: Int

    /// 8 · quantizedBytes / quantizedWeights.
    public var quantizedBitsPerWeight: Double { quantizedWeights > 0 ? 8 * Double(quantizedBytes) / Double(quantizedWeights) : .nan }
    /// 8 · outputTensorBytes / parameters.
    public var overallBitsPerWeight: Double { parameters > 0 ? 8 * Double(outputTensorBytes) / Double(parameters) : .nan }

    enum CodingKeys: String, CodingKey {
        case inputBytes = "input_bytes", outputBytes = "output_bytes", parameters
        case quantizedWeights = "quantized_weights", quantizedBytes = "quantized_bytes", outputTensorBytes = "output_tensor_bytes"
        case quantizedBitsPerWeight = "quantized_bits_per_weight", overallBitsPerWeight = "overall_bits_per_weight"
    }

    public init(inputBytes: Int, outputBytes: Int, parameters: Int, quantizedWeights: Int, quantizedBytes: Int, outputTensorBytes: Int) {
        self.inputBytes = inputBytes; self.outputBytes = outputBytes; self.parameters = parameters
        self.quantizedWeights = quantizedWeights; self.quantizedBytes = quantizedBytes; self.outputTensorBytes = outputTensorBytes
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(inputBytes: try c.decode(Int.self, forKey: .inputBytes), outputBytes: try c.decode(Int.self, forKey: .outputBytes),
                  parameters: try c.decode(Int.self, forKey: .parameters), quantizedWeights: try c.decode(Int.self, forKey: .quantizedWeights),
                  quantizedBytes: try c.decode(Int.self, forKey: .quantizedBytes),
                  outputTensorBytes: try c.decode(Int.self, forKey: .outputTensorBytes))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(inputBytes, forKey: .inputBytes); try c.encode(outputBytes, forKey: .outputBytes)
        try c.encode(parameters, forKey: .parameters); try c.encode(quantizedWeights, forKey: .quantizedWeights)
        try c.encode(quantizedBytes, forKey: .quantizedBytes); try c.encode(outputTensorBytes, forKey: .outputTensorBytes)
        try c.encode(quantizedBitsPerWeight, forKey: .quantizedBitsPerWeight); try c.encode(overallBitsPerWeight, forKey: .overallBitsPerWeight)
    }

    /// Measures a finished conversion from the files themselves: `source` as given to convert, the
    /// output's `files`, and the output checkpoint (an SQ4 file or an AutoGPTQ folder).
    public static func measure(source: String, output: String, files: [String]) throws -> ConvertSizes {
        let src = try CheckpointOpener.open(source)
        let out = try CheckpointOpener.open(output)
        func size(_ p: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: p))?[.size] as? NSNumber)?.intValue ?? 0 }
        let inputBytes = Set(src.file.tensors.map(\.file)).reduce(0) { $0 + size($1) }
        let outputBytes = files.reduce(0) { $0 + size($1) }
        let parameters = src.file.tensors.reduce(0) { $0 + $1.elementCount }
        // Quantized linears: the SQ4 header's records, or AutoGPTQ's `<module>.qweight` tensors.
        let modules: [String]
        if let sq4 = out.file as? SquintInt4File {
            modules = sq4.linears.map(\.name)
        } else {
            modules = out.file.tensors.compactMap { $0.name.hasSuffix(".qweight") ? String($0.name.dropLast(8)) : nil }
        }
        let moduleSet = Set(modules)
        var qWeights = 0, qBytes = 0
        for m in modules { qWeights += src.file.info("\(m).weight")?.elementCount ?? 0 }
        for t in out.file.tensors {
            guard let dot = t.name.lastIndex(of: "."), moduleSet.contains(String(t.name[..<dot])), !t.name.hasSuffix(".bias") else { continue }
            qBytes += t.byteCount
        }
        return ConvertSizes(inputBytes: inputBytes, outputBytes: outputBytes, parameters: parameters, quantizedWeights: qWeights,
                            quantizedBytes: qBytes, outputTensorBytes: out.file.tensors.reduce(0) { $0 + $1.byteCount })
    }

    /// The closing lines of `squint convert`.
    public func summaryLines(seconds: Double, peakRSSBytes: Int) -> [String] {
        func mib(_ b: Int) -> String { String(format: "%.2f MiB", Double(b) / 1_048_576) }
        return [
            "input size:  \(mib(inputBytes)) (\(inputBytes) bytes), \(parameters) parameters, "
                + String(format: "%.2f bits per weight", parameters > 0 ? 8 * Double(inputBytes) / Double(parameters) : .nan),
            "output size: \(mib(outputBytes)) (\(outputBytes) bytes), " + String(format: "%.2f bits per weight overall", overallBitsPerWeight),
            "quantized:   \(quantizedWeights) weights in \(mib(quantizedBytes)), "
                + String(format: "%.3f bits per weight (codes + scales + zeros)", quantizedBitsPerWeight),
            String(format: "time:        %.1f s, peak memory (max RSS) %.1f MiB", seconds, Double(peakRSSBytes) / 1_048_576),
        ]
    }
}
