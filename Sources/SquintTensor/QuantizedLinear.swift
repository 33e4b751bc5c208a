import COpenBLAS
import CSquintKernels
import Dispatch
import SquintFormats

/// A Linear layer whose weight is SQ4 Int4 codes (Formats/SQUINT_INT4.md §4), with the call
/// interface a dense layer has: `forward(x:tokens:into:)`, `x [tokens, in] -> y [tokens, out]`.
/// The checkpoint decides which layer type is built (STYLE habit 7); no global flag.
///
/// Decode (few tokens): fused dequantise + matrix-vector product straight from the mapped codes,
/// rows split over `threads`. Prefill (many tokens): tiles of rows dequantised to float32 into a
/// buffer, then `cblas_sgemm` (OpenBLAS threads it). With act order, `x` is permuted once per call.
public final class QuantizedLinear {
    /// How the decode product treats `x`.
    public enum DecodePath: Sendable {
        /// float32 x (exact apart from summation order).
        case float32
        /// x quantised to int8 per 32 (llama.cpp Q8_0 style), integer dot products: faster, with the
        /// error of rounding x to 8 bits.
        case int8
    }

    public let spec: QuantizedLinearSpec
    /// Threads for the decode product and for dequantising prefill tiles (rows are split).
    public var threads: Int = Threads.count
    public var decodePath: DecodePath = .float32
    /// Below this many tokens the decode kernel runs once per token; at or above, the GEMM path.
    public var prefillFromTokens: Int = 4
    /// Rows dequantised per GEMM tile (the float32 buffer is `tileRows x in`); nil picks rows for a
    /// 16 MB buffer. Measured (512 tokens, 4096 x 11008, 2 cores): 128-row tiles reach 165 GFLOP/s,
    /// 384-512 rows ~200, a dense float32 sgemm ~240: OpenBLAS packs each tile, so wider is better.
    public var tileRows: Int? = nil

    private let record: QuantizedLinearRecord          // keeps the codes' mapping alive
    private let scales: [Float]                         // [out, groups], widened from F16 exactly
    private let perm: [Int]?                            // [in]: stored position k holds input perm[k]
    /// [out] as float32, nil when the layer has none.
    public let bias: [Float]?

    public init(record: QuantizedLinearRecord) {
        self.record = record
        spec = record.spec
        var s = [Float](repeating: 0, count: spec.outFeatures * spec.groups)
        record.scales.bytes.withMemoryRebound(to: UInt16.self) { h in
            s.withUnsafeMutableBufferPointer { sq_f16_to_f32(h.baseAddress!, $0.baseAddress!, $0.count) }
        }
        scales = s
        perm = record.perm.map { p in
            (0..<record.spec.inFeatures).map { Int(Int32(littleEndian: p.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        }
        bias = record.bias.map { Self.floats($0) }
    }

    /// The quantized linear `name` of an SQ4 file.
    public convenience init(file: SquintInt4File, name: String) throws {
        self.init(record: try file.quantizedLinear(name))
    }

    static func floats(_ v: TensorView) -> [Float] {
        let n = v.info.elementCount
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { o in
            switch v.info.dtype {
            case .f32: UnsafeMutableRawBufferPointer(o).copyMemory(from: v.bytes)
            case .f16: v.bytes.withMemoryRebound(to: UInt16.self) { sq_f16_to_f32($0.baseAddress!, o.baseAddress!, n) }
            case .bf16: v.bytes.withMemoryRebound(to: UInt16.self) { sq_bf16_to_f32($0.baseAddress!, o.baseAddress!, n) }
            default: preconditionFailure("QuantizedLinearRecord admits F16/BF16/F32 biases only")
            }
        }
        return out
    }

    /// Runs `body` with the C view of the matrix.
    func withMatrix<R>(_ body: (UnsafePointer<sq_q4_matrix>) throws -> R) rethrows -> R {
        try scales.withUnsafeBufferPointer { s in
            var m = sq_q4_matrix(codes: record.codes.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                 scales: s.baseAddress!,
                                 zeros: record.zeros.map { $0.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) },
                                 out: Int64(spec.outFeatures), in: Int64(spec.inFeatures), group_size: Int64(spec.groupSize))
            return try body(&m)
        }
    }

    /// Splits `0..<n` rows into `threads` contiguous chunks and runs them concurrently; a chunk gets
    /// at least 128K weights (64 KB of codes), so a small product (a 128x896 k/v projection) is not
    /// paying a thread hand-off that costs about what its whole product does.
    func parallelRows(_ n: Int, _ body: (Int, Int) -> Void) {
        let minRows = max(1, (1 << 17) / max(1, spec.inFeatures))
        let t = max(1, min(threads, n / minRows))
        if t == 1 { body(0, n); return }
        parallelFor(t) { i in body(n * i / t, n * (i + 1) / t) }
    }

    /// y = x W^T (+ bias). `x` [tokens, in] row-major, `y` [tokens, out] row-major.
    public func forward(x: UnsafePointer<Float>, tokens: Int, into y: UnsafeMutablePointer<Float>) {
        precondition(tokens >= 0)
        let inF = spec.inFeatures, out = spec.outFeatures
        if tokens == 0 { return }
        // Act order: x'[t, k] = x[t, perm[k]], once per call.
        var permuted: [Float] = []
        if let perm {
            permuted = [Float](repeating: 0, count: tokens * inF)
            for t in 0..<tokens { for k in 0..<inF { permuted[t * inF + k] = x[t * inF + perm[k]] } }
        }
        permuted.withUnsafeBufferPointer { pb in
            let xs = perm == nil ? x : pb.baseAddress!
            if tokens < prefillFromTokens {
                for t in 0..<tokens { decode(xs + t * inF, y + t * out) }
            } else {
                prefill(xs, tokens: tokens, y)
            }
        }
        if let bias {
            for t in 0..<tokens { for o in 0..<out { y[t * out + o] += bias[o] } }
        }
    }

    private func decode(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let inF = spec.inFeatures
        withMatrix { m in
            switch decodePath {
            case .int8 where inF % 64 == 0 && spec.groupSize % 64 == 0:
                var q = [Int8](repeating: 0, count: inF)
                var d8 = [Float](repeating: 0, count: inF / 64 * 8)
                var bsum = [Int32](repeating: 0, count: inF / 32)
                sq_q8_quantize(x, Int64(inF), &q, &d8, &bsum)
                parallelRows(spec.outFeatures) { r0, r1 in sq_q4_matvec_q8(m, q, d8, bsum, y, Int64(r0), Int64(r1)) }
            default:
                parallelRows(spec.outFeatures) { r0, r1 in sq_q4_matvec_f32(m, x, y, Int64(r0), Int64(r1)) }
            }
        }
    }

    private func prefill(_ x: UnsafePointer<Float>, tokens: Int, _ y: UnsafeMutablePointer<Float>) {
        let inF = spec.inFeatures, out = spec.outFeatures
        let rows = max(1, min(tileRows ?? max(64, (4 << 20) / inF), out))
        let tile = UnsafeMutablePointer<Float>.allocate(capacity: rows * inF)   // [rows, in], reused
        defer { tile.deallocate() }
        withMatrix { m in
            var r0 = 0
            while r0 < out {
                let r = min(rows, out - r0)
                parallelRows(r) { a, b in sq_q4_dequant_rows(m, Int64(r0 + a), Int64(r0 + b), tile + a * inF) }
                // Y[:, r0..<r0+r] = X [tokens, in] . tile[r, in]^T
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(r), Int32(inF),
                            1, x, Int32(inF), tile, Int32(inF), 0, y + r0, Int32(out))
                r0 += r
            }
        }
    }

    /// The dequantised weight in stored input order, [out, in] (SQ4 §4.2; bit-exact float32).
    public func dequantizedStored() -> [Float] {
        var w = [Float](repeating: 0, count: spec.outFeatures * spec.inFeatures)
        withMatrix { m in w.withUnsafeMutableBufferPointer { sq_q4_dequant_rows(m, 0, Int64(spec.outFeatures), $0.baseAddress!) } }
        return w
    }

    /// The dequantised weight as the nn.Linear weight [out, in], in the original input order
    /// (act-order permutation undone).
    public func dequantized() -> [Float] {
        let s = dequantizedStored()
        guard let perm else { return s }
        let inF = spec.inFeatures
        var w = [Float](repeating: 0, count: s.count)
        for o in 0..<spec.outFeatures { for k in 0..<inF { w[o * inF + perm[k]] = s[o * inF + k] } }
        return w
    }
}
