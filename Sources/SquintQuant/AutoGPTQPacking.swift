/// The AutoGPTQ "v1" packed layout of a quantized linear layer (SPEC §5.4 / §5.5), as written by
/// `qlinear_cuda_old.QuantLinear.pack` and read by every AutoGPTQ / optimum / exllama kernel.
///
/// Bit layout, defined here once (b = bits): along the packed axis the codes form one little-endian
/// bit stream, code i at bits [b·i, b·i + b) of the concatenated 32-bit words. For b = 2, 4, 8 that is
/// k = 32/b whole codes per word; for b = 3 it is AutoGPTQ's 32-codes-in-3-words layout, where codes
/// 10 and 21 of each 32 straddle two words.
///
///     qweight [in·b/32, out]   Int32  column o = the stream of code[0..<in, o]
///                                     (lowest input index in the lowest bits; stored as the int32 bit pattern)
///     qzeros  [groups, out·b/32] Int32  row g = the stream of (zero[g, 0..<out] − 1)
///                                     QUIRK: "zeros minus one". Readers add the 1 back.
///     scales  [groups, out]   F16
///     g_idx   [in]            Int32   group of each input row
///     bias    [out]           F16     (zeros when the layer has none)
///
/// Dequantised weight: W[i, o] = scales[g_idx[i], o] · (code[i, o] − (zst[g_idx[i], o] + 1)), exact in
/// float32 (an fp16 scale times a small integer).
///
/// Bits: 2, 3, 4 and 8, as AutoGPTQ. in and out must be multiples of 32 for 3 bits (AutoGPTQ sizes
/// the buffers as n // 32 · b), of 32/b otherwise.
public enum AutoGPTQPacking {
    public static let supportedBits: Set<Int> = [2, 3, 4, 8]

    /// Words holding `count` codes along the packed axis (count·bits/32; AutoGPTQ: count // 32 · bits).
    @inline(__always) public static func packedCount(_ count: Int, bits: Int) -> Int { count * bits / 32 }

    /// What `count` must be a multiple of along a packed axis.
    @inline(__always) static func packingUnit(bits: Int) -> Int { bits == 3 ? 32 : 32 / bits }

    /// A packed layer. Arrays are row-major with the shapes in the comments.
    public struct Packed: Sendable, Equatable {
        public var bits: Int
        public var inFeatures: Int
        public var outFeatures: Int
        public var groups: Int
        public var qweight: [Int32]   // [in·bits/32, out]
        public var qzeros: [Int32]    // [groups, out·bits/32]
        public var scales: [UInt16]   // [groups, out] IEEE fp16 bit patterns
        public var gIdx: [Int32]      // [in]
        public var bias: [UInt16]     // [out] fp16 bit patterns (zeros when the layer has no bias)

        public init(bits: Int, inFeatures: Int, outFeatures: Int, groups: Int, qweight: [Int32], qzeros: [Int32],
                    scales: [UInt16], gIdx: [Int32], bias: [UInt16]) throws {
            try AutoGPTQPacking.checkLayout(bits: bits, inFeatures: inFeatures, outFeatures: outFeatures)
            let pin = AutoGPTQPacking.packedCount(inFeatures, bits: bits), pout = AutoGPTQPacking.packedCount(outFeatures, bits: bits)
            func check<T>(_ a: [T], _ name: String, _ n: Int) throws {
                guard a.count == n else { throw QuantError.shapeMismatch(what: name, expected: n, actual: a.count) }
            }
            try check(qweight, "qweight [\(pin), \(outFeatures)]", pin * outFeatures)
            try check(qzeros, "qzeros [\(groups), \(pout)]", groups * pout)
            try check(scales, "scales [\(groups), \(outFeatures)]", groups * outFeatures)
            try check(gIdx, "g_idx [\(inFeatures)]", inFeatures)
            try check(bias, "bias [\(outFeatures)]", outFeatures)
            if let i = gIdx.firstIndex(where: { $0 < 0 || Int($0) >= groups }) {
                throw QuantError.invalidSetting("g_idx[\(i)] = \(gIdx[i]) is outside 0..<\(groups)")
            }
            self.bits = bits; self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.groups = groups
            self.qweight = qweight; self.qzeros = qzeros; self.scales = scales; self.gIdx = gIdx; self.bias = bias
        }
    }

    static func checkLayout(bits: Int, inFeatures: Int, outFeatures: Int) throws {
        guard supportedBits.contains(bits) else {
            throw QuantError.invalidSetting("AutoGPTQ v1 packing supports 2, 3, 4 and 8 bits, not \(bits)")
        }
        let k = packingUnit(bits: bits)
        guard inFeatures > 0, outFeatures > 0, inFeatures % k == 0, outFeatures % k == 0 else {
            throw QuantError.invalidSetting("in (\(inFeatures)) and out (\(outFeatures)) features must be positive multiples of \(k) for \(bits)-bit packing")
        }
    }

    /// fp32 -> fp16 bits, round to nearest even (torch `.half()`).
    @inline(__always) public static func f16Bits(_ x: Float) -> UInt16 { Float16(x).bitPattern }
    /// fp16 bits -> fp32 (exact).
    @inline(__always) public static func f32(f16Bits b: UInt16) -> Float { Float(Float16(bitPattern: b)) }

    /// `QuantLinear.pack(linear, scale, zero, g_idx)` with `linear.weight = q`.
    ///
    /// - q: [out, in] fake-quantized weight (`QuantizedWeight.q`).
    /// - scale, zero: [out, groups] as `fasterquant` returns them.
    /// - gIdx: [in]. The code of input i uses group gIdx[i] (cuda_old uses i // group_size, which is the
    ///   same thing without act-order; with act-order this is what the exllama/cuda packers do).
    /// - bias: [out] float32 or nil (stored as fp16 zeros, as AutoGPTQ's buffer).
    ///
    /// Codes are recomputed as AutoGPTQ does: `round((q + zero·scale) / fp16(scale))` with scale·zero in
    /// float32 and NO clamp. Throws `notPackable` where that leaves 0...maxq (fp16 underflow/overflow
    /// of a scale, or q not on the grid) and where zero − 1 < 0 (an asym zero point of 0): AutoGPTQ
    /// would silently OR garbage into neighbouring nibbles there.
    public static func pack(q: [Float], scale: [Float], zero: [Float], gIdx: [Int32], bias: [Float]?,
                            inFeatures: Int, outFeatures: Int, groups: Int, bits: Int) throws -> Packed {
        try checkLayout(bits: bits, inFeatures: inFeatures, outFeatures: outFeatures)
        let nIn = inFeatures, nOut = outFeatures
        guard q.count == nOut * nIn else { throw QuantError.shapeMismatch(what: "q [\(nOut), \(nIn)]", expected: nOut * nIn, actual: q.count) }
        guard scale.count == nOut * groups, zero.count == nOut * groups else {
            throw QuantError.shapeMismatch(what: "scale/zero [\(nOut), \(groups)]", expected: nOut * groups, actual: min(scale.count, zero.count))
        }
        guard gIdx.count == nIn else { throw QuantError.shapeMismatch(what: "g_idx [\(nIn)]", expected: nIn, actual: gIdx.count) }
        if let b = bias, b.count != nOut { throw QuantError.shapeMismatch(what: "bias [\(nOut)]", expected: nOut, actual: b.count) }
        if let i = gIdx.firstIndex(where: { $0 < 0 || Int($0) >= groups }) {
            throw QuantError.invalidSetting("g_idx[\(i)] = \(gIdx[i]) is outside 0..<\(groups)")
        }
        let maxq = Float((1 << bits) - 1)
        // scales_t = scale.T -> [groups, out]; scale_zeros = zeros_t * scales_t in float32.
        var scales16 = [UInt16](repeating: 0, count: groups * nOut)
        var scaleZero = [Float](repeating: 0, count: groups * nOut)
        var zerosT = [Float](repeating: 0, count: groups * nOut)
        for o in 0..<nOut {
            for g in 0..<groups {
                let s = scale[o * groups + g], z = zero[o * groups + g]
                scales16[g * nOut + o] = f16Bits(s)
                scaleZero[g * nOut + o] = z * s
                zerosT[g * nOut + o] = z
            }
        }
        var codes = [UInt8](repeating: 0, count: nIn * nOut)  // [in, out]
        for o in 0..<nOut {
            for i in 0..<nIn {
                let g = Int(gIdx[i])
                let s16 = f32(f16Bits: scales16[g * nOut + o])
                let v = ((q[o * nIn + i] + scaleZero[g * nOut + o]) / s16).rounded(.toNearestOrEven)
                guard v >= 0 && v <= maxq else {
                    throw QuantError.notPackable("weight [out \(o), in \(i)]: code \(v) is outside 0...\(Int(maxq)) "
                        + "(fp16 scale \(s16) for float32 scale \(scale[o * groups + g]))")
                }
                codes[i * nOut + o] = UInt8(v)
            }
        }
        var zeroCodes = [UInt8](repeating: 0, count: groups * nOut)
        for k in 0..<zerosT.count {
            let zm1 = zerosT[k] - 1
            guard zm1 >= 0 && zm1 <= maxq && zm1 == zm1.rounded() else {
                throw QuantError.notPackable("zero point \(zerosT[k]) of [group \(k / nOut), out \(k % nOut)]: "
                    + "zero-1 must be an integer in 0...\(Int(maxq)) (AutoGPTQ v1 stores zero-1)")
            }
            zeroCodes[k] = UInt8(zm1)
        }
        return try Packed(bits: bits, inFeatures: nIn, outFeatures: nOut, groups: groups,
                          qweight: packRows(codes, rows: nIn, cols: nOut, bits: bits),
                          qzeros: packColumns(zeroCodes, rows: groups, cols: nOut, bits: bits),
                          scales: scales16, gIdx: gIdx,
                          bias: bias.map { $0.map(f16Bits) } ?? [UInt16](repeating: 0, count: nOut))
    }

    /// Code `i` of a little-endian stream of `bits`-bit codes: word i·b/32, shift i·b%32, and the
    /// high part in the next word when the code straddles (3 bits only).
    @inline(__always) static func streamPut(_ words: inout [UInt32], base: Int, stride: Int, index i: Int, bits: Int, _ v: UInt32) {
        let bit = i * bits, w = bit >> 5, sh = UInt32(bit & 31)
        words[base + w * stride] |= v << sh
        if Int(sh) + bits > 32 { words[base + (w + 1) * stride] |= v >> (32 - sh) }
    }

    @inline(__always) static func streamGet(_ words: [Int32], base: Int, stride: Int, index i: Int, bits: Int) -> UInt8 {
        let bit = i * bits, w = bit >> 5, sh = UInt32(bit & 31), mask = UInt32((1 << bits) - 1)
        var v = UInt32(bitPattern: words[base + w * stride]) >> sh
        if Int(sh) + bits > 32 { v |= UInt32(bitPattern: words[base + (w + 1) * stride]) << (32 - sh) }
        return UInt8(v & mask)
    }

    /// qweight packing: codes [rows, cols] -> words [rows·b/32, cols]; each column is a code stream.
    public static func packRows(_ codes: [UInt8], rows: Int, cols: Int, bits: Int) -> [Int32] {
        precondition(rows % packingUnit(bits: bits) == 0 && codes.count == rows * cols)
        var out = [UInt32](repeating: 0, count: packedCount(rows, bits: bits) * cols)
        for i in 0..<rows {
            for c in 0..<cols { streamPut(&out, base: c, stride: cols, index: i, bits: bits, UInt32(codes[i * cols + c])) }
        }
        return out.map { Int32(bitPattern: $0) }
    }

    /// qzeros packing: values [rows, cols] -> words [rows, cols·b/32]; each row is a code stream.
    public static func packColumns(_ values: [UInt8], rows: Int, cols: Int, bits: Int) -> [Int32] {
        precondition(cols % packingUnit(bits: bits) == 0 && values.count == rows * cols)
        let pc = packedCount(cols, bits: bits)
        var out = [UInt32](repeating: 0, count: rows * pc)
        for r in 0..<rows {
            for c in 0..<cols { streamPut(&out, base: r * pc, stride: 1, index: c, bits: bits, UInt32(values[r * cols + c])) }
        }
        return out.map { Int32(bitPattern: $0) }
    }

    /// Inverse of `packRows`: words [rows·b/32, cols] -> codes [rows, cols].
    public static func unpackRows(_ words: [Int32], rows: Int, cols: Int, bits: Int) -> [UInt8] {
        precondition(rows % packingUnit(bits: bits) == 0 && words.count == packedCount(rows, bits: bits) * cols)
        var out = [UInt8](repeating: 0, count: rows * cols)
        for i in 0..<rows {
            for c in 0..<cols { out[i * cols + c] = streamGet(words, base: c, stride: cols, index: i, bits: bits) }
        }
        return out
    }

    /// Inverse of `packColumns`: words [rows, cols·b/32] -> values [rows, cols].
    public static func unpackColumns(_ words: [Int32], rows: Int, cols: Int, bits: Int) -> [UInt8] {
        let pc = packedCount(cols, bits: bits)
        precondition(cols % packingUnit(bits: bits) == 0 && words.count == rows * pc)
        var out = [UInt8](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for c in 0..<cols { out[r * cols + c] = streamGet(words, base: r * pc, stride: 1, index: c, bits: bits) }
        }
        return out
    }

    /// Codes [in, out] and stored zeros (zero − 1) [groups, out] of a packed layer.
    public static func unpack(_ p: Packed) -> (codes: [UInt8], storedZeros: [UInt8]) {
        (unpackRows(p.qweight, rows: p.inFeatures, cols: p.outFeatures, bits: p.bits),
         unpackColumns(p.qzeros, rows: p.groups, cols: p.outFeatures, bits: p.bits))
    }

    /// W[i, o] = scales[g_idx[i], o] · (q[i, o] − (zst[g_idx[i], o] + 1)), [in, out] float32 (the
    /// transpose of nn.Linear's weight). Exact: an fp16 scale times an integer of at most 9 bits.
    /// The 2023 torch fallback adds the 1 after masking, later versions mask (zst+1); the two differ
    /// only for zst = maxq, which `pack` never writes; we follow SPEC §5.5 (add after masking).
    public static func dequantize(_ p: Packed) -> [Float] {
        let (codes, zst) = unpack(p)
        var w = [Float](repeating: 0, count: p.inFeatures * p.outFeatures)
        for i in 0..<p.inFeatures {
            let g = Int(p.gIdx[i])
            for o in 0..<p.outFeatures {
                let s = f32(f16Bits: p.scales[g * p.outFeatures + o])
                w[i * p.outFeatures + o] = s * (Float(codes[i * p.outFeatures + o]) - (Float(zst[g * p.outFeatures + o]) + 1))
            }
        }
        return w
    }
}
