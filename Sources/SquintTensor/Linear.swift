import COpenBLAS
import CSquintKernels
import SquintFormats

/// A dense linear layer whose weight stays in the checkpoint's own dtype (BF16 / F16 / F32) and
/// memory (usually the file mapping): `y = x Wᵀ + b`. Widening a 9.6B-parameter model to float32
/// up front would need 39 GB, so weights are widened on the fly:
/// - many tokens: W is widened in row tiles into a reused scratch buffer and each tile goes through
///   cblas_sgemm (compute-bound; the widening is amortised over the tokens);
/// - one token: a fused bf16/f16/f32 matrix-vector kernel streams W once (memory-bound), split over
///   the threads by output rows.
public final class Linear {
    /// How the weight is stored. `.outIn` is nn.Linear ([out, in], used as x Wᵀ); `.inOut` is a
    /// bare parameter used as `x @ W` ([in, out], the ViT's `proj`).
    public enum Layout: Sendable { case outIn, inOut }

    public let name: String
    public let inFeatures: Int
    public let outFeatures: Int
    public let layout: Layout
    public let dtype: DType
    /// [out] float32, or nil when the layer has no bias.
    public let bias: [Float]?
    private let weight: TensorView   // [out, in] or [in, out], dtype bf16/f16/f32
    /// The weight as stored ([out, in] for `.outIn`), for quantizers that read a dense layer.
    public var weightView: TensorView { weight }
    /// Float32 elements per widened tile (4 MiB): large enough for sgemm to reach full speed,
    /// small enough to stay in the last-level cache.
    public static let tileElements = 1 << 20

    /// `weight` must be 2-D with a dtype in {bf16, f16, f32}; the model binder checks this before
    /// any layer is built, so a violation here is a programming error.
    public init(weight: TensorView, bias: [Float]?, layout: Layout = .outIn) {
        let s = weight.info.shape
        precondition(s.count == 2, "Linear \(weight.info.name): weight must be 2-D, got \(s)")
        precondition([.bf16, .f16, .f32].contains(weight.info.dtype), "Linear \(weight.info.name): dtype \(weight.info.dtype)")
        self.name = weight.info.name
        self.weight = weight
        self.layout = layout
        self.dtype = weight.info.dtype
        (outFeatures, inFeatures) = layout == .outIn ? (s[0], s[1]) : (s[1], s[0])
        precondition(bias == nil || bias!.count == outFeatures)
        self.bias = bias
    }

    private var base: UnsafeRawPointer { weight.bytes.baseAddress! }

    /// y [tokens, out] = x [tokens, in] · Wᵀ (+ b). `scratch` holds widened tiles between calls.
    public func forward(_ x: UnsafePointer<Float>, tokens: Int, _ y: UnsafeMutablePointer<Float>, scratch: FloatBuffer) {
        guard tokens > 0 else { return }
        let n = outFeatures, k = inFeatures
        if layout == .outIn && tokens == 1 {
            matvec(x, y)
            return
        }
        switch (layout, dtype) {
        case (.outIn, .f32):
            let w = base.assumingMemoryBound(to: Float.self)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(n), Int32(k),
                        1, x, Int32(k), w, Int32(k), 0, y, Int32(n))
        case (.outIn, _):
            let rowsPerTile = max(1, min(n, Self.tileElements / max(k, 1)))
            let tile = scratch.reserve(rowsPerTile * k)
            var r0 = 0
            while r0 < n {
                let r1 = min(n, r0 + rowsPerTile)
                Kernels.widen(base + r0 * k * 2, dtype: dtype, tile, count: (r1 - r0) * k)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(r1 - r0), Int32(k),
                            1, x, Int32(k), tile, Int32(k), 0, y + r0, Int32(n))
                r0 = r1
            }
        case (.inOut, .f32):
            let w = base.assumingMemoryBound(to: Float.self)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(tokens), Int32(n), Int32(k),
                        1, x, Int32(k), w, Int32(n), 0, y, Int32(n))
        case (.inOut, _):
            // W [in, out]: tile over input rows and accumulate y += x[:, k0:k1] · W[k0:k1, :].
            let rowsPerTile = max(1, min(k, Self.tileElements / max(n, 1)))
            let tile = scratch.reserve(rowsPerTile * n)
            var k0 = 0
            while k0 < k {
                let k1 = min(k, k0 + rowsPerTile)
                Kernels.widen(base + k0 * n * 2, dtype: dtype, tile, count: (k1 - k0) * n)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(tokens), Int32(n), Int32(k1 - k0),
                            1, x + k0, Int32(k), tile, Int32(n), k0 == 0 ? 0 : 1, y, Int32(n))
                k0 = k1
            }
        }
        if let bias {
            bias.withUnsafeBufferPointer { b in
                parallelChunks(tokens, minPerChunk: max(1, 65536 / max(n, 1))) { t0, t1 in
                    sq_add_bias(y + t0 * n, b.baseAddress, t1 - t0, n)
                }
            }
        }
    }

    /// One token through the fused kernel, output rows split across the threads.
    private func matvec(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let n = outFeatures, k = inFeatures
        let w = base.assumingMemoryBound(to: UInt16.self), wf = base.assumingMemoryBound(to: Float.self)
        let dt = dtype
        let run = { (b: UnsafePointer<Float>?) in
            parallelChunks(n, minPerChunk: max(2, (1 << 18) / max(k, 1)), align: 2) { r0, r1 in
                switch dt {
                case .bf16: sq_matvec_bf16(w, x, b, y, k, r0, r1)
                case .f16: sq_matvec_f16(w, x, b, y, k, r0, r1)
                default: sq_matvec_f32(wf, x, b, y, k, r0, r1)
                }
            }
        }
        if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
    }
}

/// Rows of an embedding table [vocab, dim] in any float dtype, gathered as float32.
public struct EmbeddingTable {
    public let view: TensorView   // [vocab, dim]
    public let count: Int
    public let dim: Int

    public init(_ view: TensorView) {
        precondition(view.info.shape.count == 2)
        self.view = view; count = view.info.shape[0]; dim = view.info.shape[1]
    }

    /// Writes row `id` (0 <= id < count, checked by the caller) into dst [dim].
    public func gather(_ id: Int, into dst: UnsafeMutablePointer<Float>) {
        precondition(id >= 0 && id < count, "embedding id \(id) out of range 0..<\(count)")
        let es = view.info.dtype.byteSize
        Kernels.widen(view.bytes.baseAddress! + id * dim * es, dtype: view.info.dtype, dst, count: dim)
    }
}

/// The call interface every linear layer of a model block offers, dense or quantized, so a
/// quantizer can swap a block's `Linear` for its own type (e.g. a GPTQ Int4 layer) without the
/// model knowing: y [tokens, out] = f(x [tokens, in]).
public protocol LinearLayer: AnyObject {
    var name: String { get }
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    func forward(_ x: UnsafePointer<Float>, tokens: Int, _ y: UnsafeMutablePointer<Float>, scratch: FloatBuffer)
}

extension Linear: LinearLayer {}
