import CSquintKernels
import SquintFormats
import Foundation

/// Element-wise and normalisation kernels of the float32 forward pass, thin wrappers over the C
/// kernels (AVX2/FMA with a scalar fallback). Shapes are given explicitly; pointers are row-major.
public enum Kernels {
    /// LayerNorm over rows of x [rows, dim] (torch.nn.LayerNorm, biased variance). y may be x.
    public static func layerNorm(_ x: UnsafePointer<Float>, weight: [Float], bias: [Float],
                                 _ y: UnsafeMutablePointer<Float>, rows: Int, dim: Int, eps: Float) {
        precondition(weight.count == dim && bias.count == dim)
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                parallelChunks(rows, minPerChunk: max(1, 65536 / max(dim, 1))) { r0, r1 in
                    sq_layernorm(x + r0 * dim, w.baseAddress, b.baseAddress, y + r0 * dim, r1 - r0, dim, eps)
                }
            }
        }
    }

    /// Qwen RMSNorm over rows of x [rows, dim]: (x * rsqrt(mean(x²) + eps)) * w. y may be x.
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: [Float], _ y: UnsafeMutablePointer<Float>,
                               rows: Int, dim: Int, eps: Float) {
        precondition(weight.count == dim)
        weight.withUnsafeBufferPointer { w in
            parallelChunks(rows, minPerChunk: max(1, 65536 / max(dim, 1))) { r0, r1 in
                sq_rmsnorm(x + r0 * dim, w.baseAddress, y + r0 * dim, r1 - r0, dim, eps)
            }
        }
    }

    /// y += x over n elements.
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
        parallelChunks(n, minPerChunk: 1 << 16) { a, b in sq_add(y + a, x + a, b - a) }
    }

    /// Exact erf GELU, element-wise (y may be x).
    public static func gelu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        parallelChunks(n, minPerChunk: 1 << 14) { a, b in sq_gelu_erf(x + a, y + a, b - a) }
    }

    /// y = a * silu(g), element-wise (Qwen's SwiGLU with w2 as the gate). y may alias a or g.
    public static func siluMul(_ a: UnsafePointer<Float>, gate g: UnsafePointer<Float>,
                               _ y: UnsafeMutablePointer<Float>, count n: Int) {
        parallelChunks(n, minPerChunk: 1 << 14) { s, e in sq_silu_mul(a + s, g + s, y + s, e - s) }
    }

    /// Softmax in place over the first `cols` entries of each row of x [rows, ld].
    public static func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int) {
        parallelChunks(rows, minPerChunk: max(1, 32768 / max(cols, 1))) { a, b in
            sq_softmax_rows(x + a * ld, b - a, cols, ld)
        }
    }

    /// Widens `count` elements of a bf16 / f16 / f32 buffer to float32.
    public static func widen(_ src: UnsafeRawPointer, dtype: DType, _ dst: UnsafeMutablePointer<Float>, count n: Int) {
        parallelChunks(n, minPerChunk: 1 << 16, align: 8) { a, b in
            switch dtype {
            case .bf16: sq_bf16_to_f32(src.assumingMemoryBound(to: UInt16.self) + a, dst + a, b - a)
            case .f16: sq_f16_to_f32(src.assumingMemoryBound(to: UInt16.self) + a, dst + a, b - a)
            case .f32: (dst + a).update(from: src.assumingMemoryBound(to: Float.self) + a, count: b - a)
            default: preconditionFailure("widen: unsupported dtype \(dtype) (the binder admits bf16/f16/f32 only)")
            }
        }
    }

    /// A whole tensor view widened to a float32 array (small tensors: norms, biases, tables).
    public static func floats(_ v: TensorView) -> [Float] {
        let n = v.info.elementCount
        return [Float](unsafeUninitializedCapacity: n) { buf, count in
            if n > 0 { widen(v.bytes.baseAddress!, dtype: v.info.dtype, buf.baseAddress!, count: n) }
            count = n
        }
    }
}

extension Kernels {
    /// Half-split (NeoX) rotary embedding in place on `heads` head vectors of `dim` per token
    /// (token t's first head at x + t*stride). cos/sin are [tokens, dim/2]; `scale` [tokens] or nil
    /// multiplies the rotated result (Qwen's logn attention scaling of queries).
    public static func rotary(_ x: UnsafeMutablePointer<Float>, tokens: Int, heads: Int, dim: Int, stride: Int,
                              cos: [Float], sin: [Float], scale: [Float]?) {
        precondition(cos.count == tokens * dim / 2 && sin.count == cos.count)
        cos.withUnsafeBufferPointer { c in
            sin.withUnsafeBufferPointer { s in
                let run = { (sc: UnsafePointer<Float>?) in
                    parallelChunks(tokens, minPerChunk: max(1, 16384 / max(heads * dim, 1))) { a, b in
                        sq_rotary_neox(x + a * stride, b - a, heads, dim, stride,
                                       c.baseAddress! + a * dim / 2, s.baseAddress! + a * dim / 2,
                                       sc.map { $0 + a })
                    }
                }
                if let scale { scale.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
            }
        }
    }

    /// RoPE cos/sin tables [count, headDim/2] for absolute positions past ..< past+count, float32 as
    /// torch computes them (Qwen-VL's RotaryEmbedding, transformers' default rope): inv_freq[j] =
    /// 1 / base^(2j/d), angle = position * inv_freq[j]. Shared by every decoder so a RoPE fix is made
    /// once; `base` already carries any NTK adjustment.
    public static func ropeTables(base: Float, headDim d: Int, past: Int, count S: Int) -> (cos: [Float], sin: [Float]) {
        let half = d / 2
        let invFreq: [Float] = (0..<half).map { j in 1 / powf(base, Float(2 * j) / Float(d)) }
        var c = [Float](repeating: 0, count: S * half), s = c
        for t in 0..<S {
            let pos = Float(past + t)
            for j in 0..<half {
                let f = pos * invFreq[j]
                c[t * half + j] = cosf(f); s[t * half + j] = sinf(f)
            }
        }
        return (c, s)
    }

    /// torch F.interpolate(mode="bicubic", align_corners=False) of a square grid of vectors:
    /// table [src*src, channels] (row-major grid, channels last) -> [dst*dst, channels].
    /// Cubic convolution with A = -0.75; source coordinate scale*(i+0.5)-0.5 (not clamped for cubic),
    /// taps at floor-1..floor+2 clamped to the border; the 4x4 sum runs rows outer, columns inner, as
    /// torch's CPU kernel does. Float32 throughout, like the reference.
    public static func bicubicResize(_ table: [Float], channels: Int, from src: Int, to dst: Int) -> [Float] {
        precondition(table.count == src * src * channels)
        if src == dst { return table }
        let a: Float = -0.75
        func cc1(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func cc2(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        let scale = Float(src) / Float(dst)
        var idx = [[Int]](), wts = [[Float]]()
        for i in 0..<dst {
            let real = scale * (Float(i) + 0.5) - 0.5
            let f = real.rounded(.down)
            let t = real - f
            let x2 = 1 - t
            wts.append([cc2(t + 1), cc1(t), cc1(x2), cc2(x2 + 1)])
            idx.append((0..<4).map { j in max(min(Int(f) - 1 + j, src - 1), 0) })
        }
        var out = [Float](repeating: 0, count: dst * dst * channels)
        for oy in 0..<dst {
            for ox in 0..<dst {
                let o = (oy * dst + ox) * channels
                for c in 0..<channels {
                    var acc: Float = 0
                    for jy in 0..<4 {
                        let row = idx[oy][jy] * src
                        var t: Float = table[(row + idx[ox][0]) * channels + c] * wts[ox][0]
                        for jx in 1..<4 { t += table[(row + idx[ox][jx]) * channels + c] * wts[ox][jx] }
                        acc = jy == 0 ? t * wts[oy][0] : acc + t * wts[oy][jy]
                    }
                    out[o + c] = acc
                }
            }
        }
        return out
    }
}
