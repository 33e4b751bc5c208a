import Foundation
import SquintFormats

/// Squint's version, as `squint --version` prints it and reports record it.
public let squintVersion = "0.1.0"

extension ValidationReport {
    /// The header of a report: what was run, when, with which Squint, on which models.
    public struct RunInfo: Codable, Sendable {
        public var commandLine: String
        public var squintVersion: String
        /// ISO 8601, UTC.
        public var date: String
        /// The Int4 model's quantization settings, e.g. "gptq, 4-bit, group 128, sym, desc_act false, damp 0.01".
        public var quantization: String?
        /// Parameters of the BF16 model (elements of every tensor).
        public var parameters: Int
        /// Tensor bytes of each model, and 8 · bytes / parameters.
        public var bf16Bytes: Int, int4Bytes: Int
        public var bf16BitsPerWeight: Double, int4BitsPerWeight: Double

        enum CodingKeys: String, CodingKey {
            case date, quantization, parameters
            case commandLine = "command_line", squintVersion = "squint_version"
            case bf16Bytes = "bf16_bytes", int4Bytes = "int4_bytes"
            case bf16BitsPerWeight = "bf16_bits_per_weight", int4BitsPerWeight = "int4_bits_per_weight"
        }

        /// From the two loaded models; `arguments` is the command line (argv).
        public init(bf16: LoadedModel, int4: LoadedModel, arguments: [String], date: Date = Date()) {
            let q = int4.checkpoint.quantization.map { q in
                "\(q.quantMethod ?? "gptq"), \(q.bits)-bit, group \(q.groupSize), \(q.sym ? "sym" : "asym"), "
                    + "desc_act \(q.descAct), damp \(q.dampPercent)"
            }
            self.init(arguments: arguments, quantization: q,
                      parameters: bf16.checkpoint.file.tensors.reduce(0) { $0 + $1.elementCount },
                      referenceBytes: bf16.checkpoint.file.tensors.reduce(0) { $0 + $1.byteCount },
                      candidateBytes: int4.checkpoint.file.tensors.reduce(0) { $0 + $1.byteCount }, date: date)
        }

        /// From sizes measured elsewhere (text models: the files' tensors).
        public init(arguments: [String], quantization: String?, parameters: Int, referenceBytes: Int, candidateBytes: Int,
                    date: Date = Date()) {
            commandLine = arguments.map(Self.shellQuoted).joined(separator: " ")
            self.squintVersion = SquintPipeline.squintVersion
            let f = ISO8601DateFormatter()
            f.timeZone = TimeZone(identifier: "UTC")
            self.date = f.string(from: date)
            self.quantization = quantization
            self.parameters = parameters
            bf16Bytes = referenceBytes; int4Bytes = candidateBytes
            let p = Double(max(parameters, 1))
            bf16BitsPerWeight = 8 * Double(referenceBytes) / p
            int4BitsPerWeight = 8 * Double(candidateBytes) / p
        }

        /// A word as a POSIX shell would need it.
        static func shellQuoted(_ w: String) -> String {
            let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
            if !w.isEmpty, w.unicodeScalars.allSatisfy(safe.contains) { return w }
            return "'" + w.replacingOccurrences(of: "'", with: "'\\''") + "'"
        }
    }
}
