import Foundation

/// SplitMix64: a tiny, fast, seedable generator. Used where results must reproduce from a seed
/// (sampling, test data, benchmarks); the same mixing function defines the synthetic weights.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// [0, 1) with 24 random bits (exact in Float).
    public mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
    public mutating func uniform() -> Float { unit() }
    /// [-1, 1).
    public mutating func symmetric() -> Float { unit() * 2 - 1 }
    /// [0, 1) with 53 random bits.
    public mutating func unitDouble() -> Double { Double(next() >> 11) * 0x1p-53 }
    /// 0 ..< n (slightly biased for huge n; fine for test data).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// Standard normal (Box-Muller).
    public mutating func normal() -> Float {
        let u1 = max(unit(), 1e-7), u2 = unit()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * .pi * u2)
    }
}
