import COpenBLAS
import SquintFormats

/// Where one operand's heads live inside a token-major matrix: head h of token t starts at
/// `base + t * rowStride + h * headStep`. Lets one attention routine read the ViT's per-head
/// interleaved qkv, Qwen's q|k|v blocks and a KV cache without copying them into [heads, T, d].
public struct HeadLayout {
    public var base: UnsafePointer<Float>
    public var rowStride: Int
    public var headStep: Int
    public init(base: UnsafePointer<Float>, rowStride: Int, headStep: Int) {
        self.base = base; self.rowStride = rowStride; self.headStep = headStep
    }
    func head(_ h: Int) -> UnsafePointer<Float> { base + h * headStep }
}

/// Scaled dot-product attention, per head, float32 (the reference runs the official graph in fp32).
public enum Attention {
    /// Where the 1/sqrt(d) factor is applied, because each official module does it differently
    /// (the results differ in the last bit only, but we follow the reference).
    public enum Scaling: Sendable {
        /// q / c before q kᵀ (Qwen-VL VisualAttention: `q / norm_factor`).
        case divideQuery(Float)
        /// q * c before q kᵀ (torch nn.MultiheadAttention: `q * sqrt(1/E)`).
        case multiplyQuery(Float)
        /// (q kᵀ) / c (QWenAttention: `/ torch.full([], sqrt(d))`).
        case divideScores(Float)
    }

    /// out [nq, heads*d] (row stride `outStride`) = softmax(scale(q kᵀ) + mask) v per head.
    /// `causalPast`: nil = no mask; p = query i (absolute position p + i) sees keys 0...p+i (the
    /// official additive finfo.min mask gives exactly zero weight to later keys).
    public static func forward(q: HeadLayout, k: HeadLayout, v: HeadLayout, nq: Int, nk: Int, heads: Int,
                               headDim d: Int, scaling: Scaling, causalPast: Int?,
                               out: UnsafeMutablePointer<Float>, outStride: Int,
                               scores: FloatBuffer, qScratch: FloatBuffer) {
        let s = scores.reserve(nq * nk)
        let qs = qScratch.reserve(nq * d)
        for h in 0..<heads {
            var qp = q.head(h), lda = q.rowStride
            switch scaling {
            case .divideQuery(let c), .multiplyQuery(let c):
                let isDiv: Bool = { if case .divideQuery = scaling { return true } else { return false } }()
                parallelChunks(nq, minPerChunk: max(1, 16384 / d)) { a, b in
                    for i in a..<b {
                        let src = q.head(h) + i * q.rowStride, dst = qs + i * d
                        if isDiv { for j in 0..<d { dst[j] = src[j] / c } } else { for j in 0..<d { dst[j] = src[j] * c } }
                    }
                }
                qp = UnsafePointer(qs); lda = d
            case .divideScores:
                break
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nq), Int32(nk), Int32(d), 1,
                        qp, Int32(lda), k.head(h), Int32(k.rowStride), 0, s, Int32(nk))
            if case .divideScores(let c) = scaling {
                parallelChunks(nq * nk, minPerChunk: 1 << 15) { a, b in for i in a..<b { s[i] = s[i] / c } }
            }
            if let past = causalPast {
                parallelChunks(nq, minPerChunk: max(1, 32768 / max(nk, 1))) { a, b in
                    for i in a..<b {
                        let visible = min(nk, past + i + 1)
                        sq_softmax_row_prefix(s + i * nk, visible, nk)
                    }
                }
            } else {
                Kernels.softmaxRows(s, rows: nq, cols: nk, ld: nk)
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(nq), Int32(d), Int32(nk), 1,
                        s, Int32(nk), v.head(h), Int32(v.rowStride), 0, out + h * d, Int32(outStride))
        }
    }
}

/// Softmax over the first `visible` entries of a row of `total`; the rest become exactly 0.
@inline(__always)
func sq_softmax_row_prefix(_ row: UnsafeMutablePointer<Float>, _ visible: Int, _ total: Int) {
    Kernels.softmaxRows(row, rows: 1, cols: visible, ld: total)
    if visible < total { (row + visible).update(repeating: 0, count: total - visible) }
}

/// torch.nn.MultiheadAttention as Qwen-VL's resampler calls it (one sequence, no mask, eval,
/// need_weights=True i.e. the explicit math path): `in_proj_weight` [3E, E] packs the rows of
/// W_q | W_k | W_v (with `in_proj_bias` [3E] likewise); query, key and value are projected
/// separately, head h owns columns h*E/H ..< (h+1)*E/H of each projection, q is multiplied by
/// sqrt(1/head_dim) before q kᵀ, then softmax, p v, heads concatenated in order, out_proj.
/// Not thread-safe: scratch buffers are reused across calls.
public final class TorchMultiheadAttention {
    public let embedDim: Int
    public let heads: Int
    let qProj: Linear, kProj: Linear, vProj: Linear, outProj: Linear
    let scratch = FloatBuffer(), scores = FloatBuffer(), qScratch = FloatBuffer()

    /// `inProjWeight` [3E, E] in bf16/f16/f32 (sliced in place, no copy), `inProjBias` [3E],
    /// `outProj` [E, E] with bias. E must be a multiple of `heads`.
    public init(inProjWeight: TensorView, inProjBias: [Float], outProj: Linear, heads: Int) {
        let e = inProjWeight.info.shape[1]
        precondition(inProjWeight.info.shape == [3 * e, e] && inProjBias.count == 3 * e && e % heads == 0)
        embedDim = e; self.heads = heads; self.outProj = outProj
        func slice(_ i: Int) -> Linear {
            var info = inProjWeight.info
            info.shape = [e, e]
            let bytesPer = e * e * info.dtype.byteSize
            info.byteCount = bytesPer
            let raw = UnsafeRawBufferPointer(rebasing: inProjWeight.bytes[(i * bytesPer)..<((i + 1) * bytesPer)])
            return Linear(weight: TensorView(info: info, bytes: raw, owner: inProjWeight.owner),
                          bias: Array(inProjBias[(i * e)..<((i + 1) * e)]))
        }
        qProj = slice(0); kProj = slice(1); vProj = slice(2)
    }

    /// query [L, E], key and value [S, E] -> [L, E].
    public func forward(query: [Float], key: [Float], value: [Float]) -> [Float] {
        let e = embedDim, hd = e / heads, L = query.count / e, S = key.count / e
        precondition(query.count == L * e && key.count == S * e && value.count == S * e)
        var qp = [Float](repeating: 0, count: L * e), kp = [Float](repeating: 0, count: S * e),
            vp = [Float](repeating: 0, count: S * e), ctx = [Float](repeating: 0, count: L * e),
            out = [Float](repeating: 0, count: L * e)
        qProj.forward(query, tokens: L, &qp, scratch: scratch)
        kProj.forward(key, tokens: S, &kp, scratch: scratch)
        vProj.forward(value, tokens: S, &vp, scratch: scratch)
        qp.withUnsafeBufferPointer { qb in kp.withUnsafeBufferPointer { kb in vp.withUnsafeBufferPointer { vb in
            ctx.withUnsafeMutableBufferPointer { cb in
                Attention.forward(q: HeadLayout(base: qb.baseAddress!, rowStride: e, headStep: hd),
                                  k: HeadLayout(base: kb.baseAddress!, rowStride: e, headStep: hd),
                                  v: HeadLayout(base: vb.baseAddress!, rowStride: e, headStep: hd),
                                  nq: L, nk: S, heads: heads, headDim: hd,
                                  scaling: .multiplyQuery(Float((1.0 / Double(hd)).squareRoot())), causalPast: nil,
                                  out: cb.baseAddress!, outStride: e, scores: scores, qScratch: qScratch)
            }
        } } }
        outProj.forward(ctx, tokens: L, &out, scratch: scratch)
        return out
    }
}
