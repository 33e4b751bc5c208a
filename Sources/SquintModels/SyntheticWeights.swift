import Foundation
import CSquintKernels

/// The bit-exact synthetic weights of `shared/reference/SYNTHETIC_WEIGHTS.md` (copied to
/// docs/SYNTHETIC_WEIGHTS.md): one SplitMix64 stream per tensor, seeded by the seed XOR the FNV-1a
/// hash of the tensor's name. Lets us test at any size, up to the real 9.6B layout, with no download.
public struct SyntheticWeights: Sendable {
    /// The config.json member `squint synth` adds (`"squint_synthetic": true`) so that every tool, and
    /// every file converted from the model (the SQ4 header and AutoGPTQ config.json copy the config),
    /// can say the weights are synthetic: their answers and perplexities are noise by design.
    public static let configMarker = "squint_synthetic"

    /// `config` (the bytes of a config.json object) with `"squint_synthetic": true` as its first member.
    public static func markedConfig(_ config: [UInt8]) -> [UInt8] {
        guard let open = config.firstIndex(of: UInt8(ascii: "{")) else { return config }
        let rest = config[(open + 1)...]
        let next = rest.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        let member = "\n  \"\(configMarker)\": true" + (next == UInt8(ascii: "}") ? "" : ",")
        return Array(config[...open]) + Array(member.utf8) + Array(rest)
    }

    public let seed: UInt64
    public init(seed: UInt64) { self.seed = seed }

    public static func fnv1a64(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// Multiplier `a` and formula kind (0: r*a, 1: 1 + r*a) of a tensor; nil for the sin-cos table.
    static func parameters(_ spec: QwenVLTensorSpec) -> (a: Float, kind: Int32)? {
        switch spec.role {
        case .embedding: return (Float(3.0.squareRoot()), 0)
        case .lmHead: return (Float(4.0 * (3.0 / Double(spec.fanIn)).squareRoot()), 0)
        case .linear: return (Float((3.0 / Double(spec.fanIn)).squareRoot()), 0)
        case .norm: return (Float(0.2), 1)
        case .bias: return (Float(0.05), 0)
        case .sinCos: return nil
        }
    }

    /// Elements [start, start + count) of a tensor, as BF16 bits (and/or float32 before rounding).
    /// Chunks are independent, so callers generate large tensors in parallel pieces.
    public func generate(_ spec: QwenVLTensorSpec, start: Int, count: Int,
                         bf16: UnsafeMutablePointer<UInt16>?, f32: UnsafeMutablePointer<Float>? = nil) {
        if let (a, kind) = Self.parameters(spec) {
            let state0 = seed ^ Self.fnv1a64(spec.name)
            sq_synth(state0, UInt64(start), count, a, kind, f32, bf16)
        } else {
            let table = Self.sinCosTable(dim: spec.shape[1], grid: Int(Double(spec.shape[0]).squareRoot()))
            table.withUnsafeBufferPointer { tb in
                let src = tb.baseAddress! + start
                if let f32 { f32.update(from: src, count: count) }
                if let bf16 { sq_f32_to_bf16(src, bf16, count) }
            }
        }
    }

    /// The resampler's 2D sin-cos position table ([grid*grid, dim]), computed in float64 and rounded
    /// once to float32 (SYNTHETIC_WEIGHTS.md). Row p = i*grid + j (i row/y, j column/x); columns
    /// [sin(j w), cos(j w), sin(i w), cos(i w)], w_k = 1 / 10000^(k / (dim/4)).
    public static func sinCosTable(dim: Int, grid: Int) -> [Float] {
        let quarter = dim / 4
        var out = [Float](repeating: 0, count: grid * grid * dim)
        for i in 0..<grid {
            for j in 0..<grid {
                let row = (i * grid + j) * dim
                for k in 0..<quarter {
                    let omega = 1.0 / pow(10000.0, Double(k) / Double(quarter))
                    out[row + k] = Float(sin(Double(j) * omega))
                    out[row + quarter + k] = Float(cos(Double(j) * omega))
                    out[row + 2 * quarter + k] = Float(sin(Double(i) * omega))
                    out[row + 3 * quarter + k] = Float(cos(Double(i) * omega))
                }
            }
        }
        return out
    }
}
