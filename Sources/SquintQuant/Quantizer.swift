/// AutoGPTQ's `Quantizer` (auto_gptq/quantization/quantizer.py) with `mse=False`, ported so that
/// every float32 operation happens in the same order as in torch and the results are bit-identical
/// (SPEC §5.3 "Quantizer.find_params").
///
/// The grid for one row of one group is `scale * (c - zero)` with integer codes `c` in `0...maxq`.
public struct QuantizerConfig: Sendable, Equatable {
    /// Bits per code: 2, 3, 4 or 8 (`maxq = 2^bits - 1`). Packing supports 2, 4 and 8 only.
    public var bits: Int
    /// Symmetric grid (zero point fixed at `(maxq+1)/2`), as Qwen-VL-Chat-Int4 uses.
    public var symmetric: Bool
    /// One scale per row (AutoGPTQ always quantizes weights per channel). When false, one scale for
    /// the whole slice is found and repeated for every row, as torch's `perchannel=False` does.
    public var perChannel: Bool
    /// How a found scale is stored. `.none` (default, AutoGPTQ): the float32 scale as computed.
    /// `.float16`: the scale is rounded to the nearest float16 as soon as it is found, so codes, error
    /// feedback and the fake-quantized weight all use the value a GGUF Q4_0 block stores as `d`
    /// (symmetric 4-bit: x = d * (code - 8)); the written file then decodes to exactly `q`.
    public var scaleRounding: ScaleRounding = .none

    public enum ScaleRounding: String, Sendable, Equatable { case none, float16 }

    /// Symmetric grids only. false (default, AutoGPTQ): scale = 2·max|w| / maxq, zero (maxq+1)/2.
    /// true: llama.cpp's Q4_0 reference grid, scale = m / -((maxq+1)/2) where m is the row-group's
    /// value of largest magnitude (the first one on ties), zero (maxq+1)/2: the largest weight maps to
    /// code 0 exactly and the scale is negative when m > 0 (codes still 0...maxq; all-zero groups keep
    /// AutoGPTQ's 2/maxq). Needs the signed extremes, so `params(xmin:xmax:)` decides by |xmin| vs xmax.
    public var signedMaxScale = false

    /// Asymmetric grids only. false (default, AutoGPTQ): x = scale·(code - zero) with an integer zero
    /// and the range widened to contain 0. true: llama.cpp's Q4_1 grid, x = (scale·code) + offset,
    /// offset = the row-group's minimum, scale = (max - min)/maxq, the range NOT widened to contain 0.
    /// `QuantParams.zero` (and `QuantizedWeight.zero`) then hold the float offset, not a code. With
    /// `.float16` rounding both scale and offset are rounded before any code is chosen, so GGUF Q4_1's
    /// float32 dequantisation `(d * q) + m` gives back the fake-quantized value bit for bit.
    public var minOffset = false

    public init(bits: Int = 4, symmetric: Bool = true, perChannel: Bool = true, scaleRounding: ScaleRounding = .none) throws {
        guard [2, 3, 4, 8].contains(bits) else {
            throw QuantError.invalidSetting("bits must be 2, 3, 4 or 8, got \(bits)")
        }
        self.bits = bits; self.symmetric = symmetric; self.perChannel = perChannel; self.scaleRounding = scaleRounding
    }

    /// Largest code: 2^bits - 1 (15 for 4-bit).
    public var maxq: Float { Float((1 << bits) - 1) }
}

/// Per-row grid parameters of one group of columns.
public struct QuantParams: Sendable, Equatable {
    public var scale: [Float]  // [rows]
    public var zero: [Float]   // [rows] float zero point (8 for sym 4-bit), NOT the packed zero-1
}

/// Min-max grid search and rounding, exactly as AutoGPTQ's `Quantizer` with `mse=False`.
public struct Quantizer: Sendable {
    public let config: QuantizerConfig
    public init(_ config: QuantizerConfig) { self.config = config }

    /// `find_params(x)` for the slice `x[:, colStart ..< colStart+colCount]` of a row-major matrix
    /// with `rowStride` floats per row.
    ///
    /// Quirks kept on purpose (they decide which codes the official checkpoint holds):
    /// - xmin = min(rowmin, 0), xmax = max(rowmax, 0): the range always contains 0.
    /// - sym: xmax = max(|xmin|, xmax), and xmin becomes -xmax only where xmin < 0. A row-group with
    ///   no negative value keeps xmin = 0, so its scale is max/maxq with zero (maxq+1)/2: values above
    ///   (maxq-zero)*scale clip.
    /// - rows with xmin == xmax == 0 get xmin = -1, xmax = +1 (scale 2/maxq).
    public func findParams(_ x: UnsafePointer<Float>, rows: Int, rowStride: Int,
                           colStart: Int, colCount: Int) -> QuantParams {
        precondition(colCount > 0 && rows >= 0 && colStart + colCount <= rowStride)
        var xmin = [Float](repeating: 0, count: rows)
        var xmax = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            let row = x + r * rowStride + colStart
            var lo = row[0], hi = row[0]
            for c in 1..<max(colCount, 1) {
                let v = row[c]
                if v < lo { lo = v }
                if v > hi { hi = v }
            }
            xmin[r] = lo; xmax[r] = hi
        }
        if config.symmetric && config.signedMaxScale {
            // llama.cpp keeps the FIRST element of largest magnitude (`amax < |v|`): only that signed
            // value goes to `params`, as the one extreme (the other bound 0).
            for r in 0..<rows {
                let row = x + r * rowStride + colStart
                var m: Float = 0
                for c in 0..<colCount where abs(row[c]) > abs(m) { m = row[c] }
                xmin[r] = min(m, 0); xmax[r] = max(m, 0)
            }
        }
        if !config.perChannel && rows > 0 {
            // torch flattens the slice: one min/max for everything, repeated per row afterwards.
            let lo = xmin.min()!, hi = xmax.max()!
            for r in 0..<rows { xmin[r] = lo; xmax[r] = hi }
        }
        return params(xmin: xmin, xmax: xmax)
    }

    /// The part of `find_params` after the row min/max (exposed for tests of the quirks).
    public func params(xmin rowMin: [Float], xmax rowMax: [Float]) -> QuantParams {
        let maxq = config.maxq
        var scale = [Float](repeating: 0, count: rowMin.count)
        var zero = [Float](repeating: 0, count: rowMin.count)
        for r in 0..<rowMin.count {
            if !config.symmetric && config.minOffset {
                var s = (rowMax[r] - rowMin[r]) / maxq
                var m = rowMin[r]
                if config.scaleRounding == .float16 {
                    // float16 offset (clamped to the finite range) and scale; a constant group gets the
                    // smallest float16 scale: its codes land on 0 or near it, values within 15·2^-24 of m.
                    let hm = Float(Float16(m))
                    m = hm.isFinite ? hm : (hm > 0 ? Float(Float16.greatestFiniteMagnitude) : -Float(Float16.greatestFiniteMagnitude))
                    let h = Float(Float16(s))
                    s = h > 0 ? (h.isFinite ? h : Float(Float16.greatestFiniteMagnitude)) : Float(Float16.leastNonzeroMagnitude)
                } else if !(s > 0) {
                    s = 1  // constant group: every value is code 0, exactly m
                }
                scale[r] = s
                zero[r] = m
                continue
            }
            if config.symmetric && config.signedMaxScale {
                // |min| > max picks the negative extreme (findParams passes only the first extreme
                // element, so there is no tie there; given both, a tie takes the positive one).
                let m: Float = abs(rowMin[r]) > abs(rowMax[r]) ? rowMin[r] : rowMax[r]
                var s: Float = m == 0 ? 2 / maxq : m / -((maxq + 1) / 2)
                if config.scaleRounding == .float16 {
                    let h = Float(Float16(s))
                    s = h != 0 ? (h.isFinite ? h : Float(Float16.greatestFiniteMagnitude)) : Float(Float16.leastNonzeroMagnitude)
                }
                scale[r] = s
                zero[r] = (maxq + 1) / 2
                continue
            }
            var xmin = Swift.min(rowMin[r], 0)  // torch.minimum(x.min(1), 0)
            var xmax = Swift.max(rowMax[r], 0)  // torch.maximum(x.max(1), 0)
            if config.symmetric {
                xmax = Swift.max(abs(xmin), xmax)
                if xmin < 0 { xmin = -xmax }
            }
            if xmin == 0 && xmax == 0 { xmin = -1; xmax = 1 }
            var s = (xmax - xmin) / maxq
            if config.scaleRounding == .float16 {
                // Nearest float16 (ties to even); never 0 (a code division by 0) and never above the
                // float16 maximum (weights that large are refused by the GGUF writer's caller anyway).
                let h = Float(Float16(s))
                s = h > 0 ? (h.isFinite ? h : Float(Float16.greatestFiniteMagnitude)) : Float(Float16.leastNonzeroMagnitude)
            }
            scale[r] = s
            zero[r] = config.symmetric ? (maxq + 1) / 2 : (-xmin / s).rounded(.toNearestOrEven)
        }
        return QuantParams(scale: scale, zero: zero)
    }

    /// Each row's scale re-chosen, from `base`, to minimise the weighted rounding error
    /// Σ_j h_j (x_j - s·(c_j - zero))² of the slice `x[:, colStart ..< colStart+colCount]` (c_j the
    /// code `quantize` picks for s). `h` holds the slice's column weights (GPTQ passes diag(H): how much
    /// each input moves the layer's output on the calibration data). Symmetric grids only (zero fixed).
    ///
    /// Candidates, as llama.cpp's `make_qx_quants` searches them for importance-weighted Q4_0: for
    /// t = -9...9 the scale base·(z / (z + t/10)) (z = (maxq+1)/2) sets the codes, then the weighted
    /// least-squares scale for those codes, Σ h x (c - z) / Σ h (c - z)², is rounded as configured
    /// (`scaleRounding`) and scored with the codes it gives. `base` itself is scored first and is kept
    /// unless a candidate is strictly better, so the error never grows.
    ///
    /// `rowSigma2` (one value per row, the mean square of the row's weights) switches to llama.cpp's
    /// own weighting for importance-weighted Q4_0 (`quantize_row_q4_0_impl`): weight j of row r counts
    /// h_j·sqrt(σ²_r + x_rj²) instead of h_j: a row's large weights count for more than their input's
    /// energy alone says, so the chosen scale clips them less.
    public func searchScales(_ x: UnsafePointer<Float>, rows: Int, rowStride: Int, colStart: Int, colCount: Int,
                             weights hIn: UnsafePointer<Float>, base: QuantParams,
                             rowSigma2: UnsafePointer<Float>? = nil) -> QuantParams {
        precondition(config.symmetric && !config.minOffset, "searchScales: symmetric grids only")
        let maxq = config.maxq, z = (maxq + 1) / 2
        var out = base
        func rounded(_ v: Float) -> Float? {
            guard v.isFinite, v != 0 else { return nil }
            guard config.scaleRounding == .float16 else { return v }
            let f = Float(Float16(v))
            return f.isFinite && f != 0 ? f : nil
        }
        // The magnitude-weighted column weights of the current row (llama.cpp's weighting only).
        let hRow = UnsafeMutablePointer<Float>.allocate(capacity: rowSigma2 == nil ? 1 : colCount)
        defer { hRow.deallocate() }
        for r in 0..<rows {
            let row = x + r * rowStride + colStart
            let h: UnsafePointer<Float>
            if let s2 = rowSigma2 {
                for j in 0..<colCount { hRow[j] = hIn[j] * (s2[r] + row[j] * row[j]).squareRoot() }
                h = UnsafePointer(hRow)
            } else {
                h = hIn
            }
            func error(_ s: Float) -> Double {
                var e = 0.0
                for j in 0..<colCount {
                    let d = row[j] - Self.quantize(row[j], scale: s, zero: z, maxq: maxq).value
                    e += Double(h[j]) * Double(d) * Double(d)
                }
                return e
            }
            let s0 = base.scale[r]
            var best = s0, bestError = error(s0)
            for t in -9...9 where t != 0 {
                let st = s0 * (z / (z + Float(t) / 10))
                var sxl = 0.0, sll = 0.0
                for j in 0..<colCount {
                    let l = Double(Self.quantize(row[j], scale: st, zero: z, maxq: maxq).code - z)
                    sxl += Double(h[j]) * Double(row[j]) * l; sll += Double(h[j]) * l * l
                }
                guard sll > 0, let s = rounded(Float(sxl / sll)) else { continue }
                let e = error(s)
                if e < bestError { best = s; bestError = e }
            }
            out.scale[r] = best
        }
        return out
    }

    /// torch.round (half to even). For |v| < 2^22, adding and subtracting 1.5·2^23 rounds in the FPU's
    /// default nearest-even mode without a libm call (the sum lands where the float spacing is 1, and
    /// 1.5·2^23 is even, so ties go to the even integer); larger values are already integers or rare.
    @inline(__always)
    public static func roundHalfEven(_ v: Float) -> Float {
        let magic: Float = 12_582_912  // 1.5 * 2^23
        if abs(v) < 4_194_304 { return (v + magic) - magic }
        return v.rounded(.toNearestOrEven)
    }

    /// `quantize(x) = scale * (clamp(round(x/scale) + zero, 0, maxq) - zero)` with torch.round's
    /// half-to-even. Returns the fake-quantized value and its integer code.
    @inline(__always)
    public static func quantize(_ x: Float, scale: Float, zero: Float, maxq: Float) -> (value: Float, code: Float) {
        var c = roundHalfEven(x / scale) + zero
        c = Swift.min(Swift.max(c, 0), maxq)  // torch.clamp; NaN cannot reach here (inputs checked)
        return (value(code: c, scale: scale, zeroOrOffset: zero, minOffset: false), c)
    }

    /// The `minOffset` (Q4_1) grid: code = clamp(round((x - offset)/scale), 0, maxq) with
    /// half-to-even rounding, value = (scale·code) + offset in float32 with two roundings (no fused
    /// multiply-add), exactly as GGUF Q4_1 dequantises.
    @inline(__always)
    public static func quantize(_ x: Float, scale: Float, offset: Float, maxq: Float) -> (value: Float, code: Float) {
        var c = roundHalfEven((x - offset) / scale)
        c = Swift.min(Swift.max(c, 0), maxq)
        return (value(code: c, scale: scale, zeroOrOffset: offset, minOffset: true), c)
    }

    /// The value a code stands for: scale·(code - zero), or with `minOffset` (scale·code) + offset
    /// rounded twice (no fused multiply-add), as GGUF Q4_1 dequantises. Every `quantize` ends here,
    /// and a resumed conversion rebuilds its fake-quantized weights with it.
    @inline(__always)
    public static func value(code c: Float, scale: Float, zeroOrOffset z: Float, minOffset: Bool) -> Float {
        if minOffset {
            let p = scale * c
            return p + z
        }
        return scale * (c - z)
    }

    /// One weight on the configured grid: `quantize(_:scale:offset:maxq:)` for `minOffset`, else
    /// `quantize(_:scale:zero:maxq:)` (`zeroOrOffset` is the group's `QuantParams.zero`).
    @inline(__always)
    public static func quantize(_ x: Float, scale: Float, zeroOrOffset z: Float, maxq: Float, minOffset: Bool) -> (value: Float, code: Float) {
        minOffset ? quantize(x, scale: scale, offset: z, maxq: maxq) : quantize(x, scale: scale, zero: z, maxq: maxq)
    }
}
