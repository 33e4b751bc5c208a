import CSquintKernels

/// An 8-bit copy of a dense `[out, in]` linear layer for one-token products with 8-bit activations
/// (the lm_head under `run --int8-activations`): per row and block of 32 weights, d = max|w| / 127
/// and q = round(w / d), as llama.cpp's Q8_0 (its Q4_0 files keep `output.weight` so). x is rounded
/// to int8 per 32 the same way (`sq_q8_quantize`), the products are integer, one float FMA per block
/// pair. Every dispatch level gives the same bits (`sq_q8_matvec_q8`). Prefill (more than one
/// token) goes through the source layer untouched.
///
/// Error: with dw, dx the block scales, each product w·x is off by at most
/// |x|·dw/2 + |w|·dx/2 + dw·dx/4 per element (both roundings at most half a step), plus float
/// rounding of the sums (relative 2^-24 per operation); `Int8LinearTests` asserts this bound.
public final class Int8Linear {
    public let source: Linear
    public var inFeatures: Int { source.inFeatures }
    public var outFeatures: Int { source.outFeatures }
    private let codes: [Int8]      // [out, in], pair-interleaved per 64 (squint_q4.h)
    private let scales: [Float]    // [out, in / 32]

    /// Whether `linear` can be held this way: no bias, `[out, in]` layout, in a multiple of 64.
    public static func supports(_ linear: Linear) -> Bool {
        linear.bias == nil && linear.layout == .outIn && linear.inFeatures % 64 == 0 && linear.inFeatures > 0
    }

    /// Quantises `linear`'s weight (widened row tile by row tile, split over the threads).
    public init(_ linear: Linear) {
        precondition(Self.supports(linear), "Int8Linear: \(linear.name) needs no bias, [out, in] and in % 64 == 0")
        source = linear
        let n = linear.outFeatures, k = linear.inFeatures
        var q = [Int8](repeating: 0, count: n * k)
        var d = [Float](repeating: 0, count: n * k / 32)
        let view = linear.weightView, dtype = view.info.dtype, es = dtype.byteSize
        q.withUnsafeMutableBufferPointer { qb in
            d.withUnsafeMutableBufferPointer { db in
                let qp = qb.baseAddress!, dp = db.baseAddress!
                parallelChunks(n, minPerChunk: 256) { r0, r1 in
                    let tileRows = max(1, min(r1 - r0, 65536 / k))
                    let tile = UnsafeMutablePointer<Float>.allocate(capacity: tileRows * k)
                    defer { tile.deallocate() }
                    var a = r0
                    while a < r1 {
                        let b = min(r1, a + tileRows)
                        Kernels.widen(view.bytes.baseAddress! + a * k * es, dtype: dtype, tile, count: (b - a) * k)
                        sq_q8_pack_rows(tile, Int64(k), Int64(a), Int64(b), qp, dp)
                        a = b
                    }
                }
            }
        }
        codes = q; scales = d
    }

    /// Bytes the 8-bit copy holds (codes and scales).
    public var byteCount: Int { codes.count + scales.count * 4 }

    /// y [tokens, out] = x [tokens, in] · Wᵀ: one token through the int8 kernel, more through `source`.
    public func forward(_ x: UnsafePointer<Float>, tokens: Int, _ y: UnsafeMutablePointer<Float>, scratch: FloatBuffer) {
        guard tokens == 1 else { source.forward(x, tokens: tokens, y, scratch: scratch); return }
        let k = inFeatures, n = outFeatures
        var xq = [Int8](repeating: 0, count: k)
        var d8 = [Float](repeating: 0, count: k / 64 * 8)
        var bsum = [Int32](repeating: 0, count: k / 32)
        sq_q8_quantize(x, Int64(k), &xq, &d8, &bsum)
        codes.withUnsafeBufferPointer { q in
            scales.withUnsafeBufferPointer { d in
                parallelChunks(n, minPerChunk: max(2, (1 << 18) / k)) { r0, r1 in
                    sq_q8_matvec_q8(q.baseAddress!, d.baseAddress!, Int64(k), xq, d8, y, Int64(r0), Int64(r1))
                }
            }
        }
    }
}

/// A model's output layer (the lm_head): the stored dense layer and, while `useInt8(true)`, an int8
/// copy (`Int8Linear`) that one-token products go through. Shared by every decoder, so the switch and
/// the forward exist once.
public final class OutputHead {
    public let dense: Linear
    public private(set) var int8: Int8Linear?

    public init(_ dense: Linear) { self.dense = dense }

    /// Builds the int8 copy once (on) or drops it (off); a layer `Int8Linear` cannot hold stays dense.
    public func useInt8(_ on: Bool) {
        if !on { int8 = nil } else if int8 == nil && Int8Linear.supports(dense) { int8 = Int8Linear(dense) }
    }

    /// y [tokens, out] = x [tokens, in] · Wᵀ through the int8 copy when there is one (one token), else dense.
    public func forward(_ x: UnsafePointer<Float>, tokens: Int, _ y: UnsafeMutablePointer<Float>, scratch: FloatBuffer) {
        if let q = int8 { q.forward(x, tokens: tokens, y, scratch: scratch) } else { dense.forward(x, tokens: tokens, y, scratch: scratch) }
    }
}
