import Foundation
import SquintFormats
import SquintTensor

/// Qwen-VL's visual encoder in float32 (SPEC §3.2): patch conv, learned position embedding
/// bicubic-resized 16x16 -> 32x32, ln_pre, `layers` pre-LN ViT blocks with exact GELU, the
/// 256-query cross-attention resampler, ln_post and `x @ proj`.
/// pixel_values [n, 3, 448, 448] -> image features [n, 256, hidden].
public final class VisionEncoder {
    /// One ViT residual block (`transformer.visual.transformer.resblocks.L`).
    struct Block {
        var ln1w: [Float], ln1b: [Float], ln2w: [Float], ln2b: [Float]   // [width]
        var inProj: Linear    // [3*width, width], per-head interleaved (see `qkvLayout`)
        var outProj: Linear   // [width, width]
        var fc: Linear        // [mlp, width]
        var proj: Linear      // [width, mlp]
    }

    /// Stage outputs the parity tests compare with the reference, named as in reference.json.
    public struct Intermediates {
        public var posEmbedInterp: FloatTensor = .init(shape: [0], data: [])   // [grid², width]
        public var embed: [FloatTensor] = []        // per image [grid², width] (after ln_pre)
        public var blockOutputs: [[FloatTensor]] = []   // [layer][image] [grid², width]
        public var vitOut: [FloatTensor] = []       // per image [grid², width]
        public var resamplerPosK: FloatTensor = .init(shape: [0], data: [])    // [grid², output_dim]
        public var resamplerOut: [FloatTensor] = [] // per image [256, output_dim] (before ln_post)
        public init() {}
    }

    public let config: QwenVLConfig.Visual
    let eps: Float
    let conv: Linear                 // conv1 as a linear map: [width, 3*p*p] over flattened patches
    let posEmbedInterp: [Float]      // [grid², width]
    let lnPreW: [Float], lnPreB: [Float]
    let blocks: [Block]
    // Resampler (attn_pool)
    let query: [Float]               // [256, d]
    let poolPos: [Float]             // [256, d], the stored 2D sin-cos table (added to queries)
    let poolPosK: [Float]            // [grid², d], that table bicubic-resized (added to keys)
    let kvProj: Linear               // [d, width], no bias
    let lnKvW: [Float], lnKvB: [Float], lnQW: [Float], lnQB: [Float]
    let attn: TorchMultiheadAttention   // E = d, heads = d / 128
    let lnPostW: [Float], lnPostB: [Float]
    let proj: Linear                 // [d, d] used as x @ proj
    let scratch = FloatBuffer(), scores = FloatBuffer(), qScratch = FloatBuffer()
    let bufA = FloatBuffer(), bufH = FloatBuffer(), bufO = FloatBuffer()   // block intermediates, reused

    /// Binds `transformer.visual.*` (names and shapes already checked by the model's binder).
    init(config: QwenVLConfig, binder b: WeightBinder) throws {
        let v = config.visual
        self.config = v
        eps = Float(config.layerNormEpsilon)
        let pre = "transformer.visual."
        // conv1.weight [width, 3, p, p] is exactly a [width, 3*p*p] matrix over patches flattened
        // channel-major (c, ky, kx), which is how `patches` lays them out.
        var convView = try b.view(pre + "conv1.weight")
        var ci = convView.info
        ci.shape = [v.width, 3 * v.patchSize * v.patchSize]
        convView = TensorView(info: ci, bytes: convView.bytes, owner: convView.owner)
        conv = Linear(weight: convView, bias: nil)
        posEmbedInterp = Kernels.bicubicResize(try b.floats(pre + "positional_embedding"), channels: v.width,
                                               from: v.resamplerGrid, to: v.gridSize)
        lnPreW = try b.floats(pre + "ln_pre.weight"); lnPreB = try b.floats(pre + "ln_pre.bias")
        blocks = try (0..<v.layers).map { l in
            let p = pre + "transformer.resblocks.\(l)."
            return Block(ln1w: try b.floats(p + "ln_1.weight"), ln1b: try b.floats(p + "ln_1.bias"),
                         ln2w: try b.floats(p + "ln_2.weight"), ln2b: try b.floats(p + "ln_2.bias"),
                         inProj: try b.linear(p + "attn.in_proj.weight", bias: p + "attn.in_proj.bias"),
                         outProj: try b.linear(p + "attn.out_proj.weight", bias: p + "attn.out_proj.bias"),
                         fc: try b.linear(p + "mlp.c_fc.weight", bias: p + "mlp.c_fc.bias"),
                         proj: try b.linear(p + "mlp.c_proj.weight", bias: p + "mlp.c_proj.bias"))
        }
        let a = pre + "attn_pool."
        let d = v.outputDim
        query = try b.floats(a + "query")
        poolPos = try b.floats(a + "pos_embed")
        poolPosK = Kernels.bicubicResize(poolPos, channels: d, from: v.resamplerGrid, to: v.gridSize)
        kvProj = try b.linear(a + "kv_proj.weight")
        lnKvW = try b.floats(a + "ln_kv.weight"); lnKvB = try b.floats(a + "ln_kv.bias")
        lnQW = try b.floats(a + "ln_q.weight"); lnQB = try b.floats(a + "ln_q.bias")
        attn = TorchMultiheadAttention(inProjWeight: try b.view(a + "attn.in_proj_weight"),
                                       inProjBias: try b.floats(a + "attn.in_proj_bias"),
                                       outProj: try b.linear(a + "attn.out_proj.weight", bias: a + "attn.out_proj.bias"),
                                       heads: v.resamplerHeads)
        lnPostW = try b.floats(pre + "ln_post.weight"); lnPostB = try b.floats(pre + "ln_post.bias")
        proj = try b.linear(pre + "proj", layout: .inOut)
    }

    /// The ViT attention's qkv layout, handled here and nowhere else.
    /// `attn.in_proj` output row t is [4992] = 16 heads x [q(104) | k(104) | v(104)] (Megatron-style
    /// per-head interleave, VisualAttention views it as [.., heads, 3*hd] and splits the last dim):
    ///   before: column h*3*hd + 0*hd + j = q[h][j], + 1*hd + j = k[h][j], + 2*hd + j = v[h][j]
    /// not nn.MultiheadAttention's [q(all heads) | k | v]. Rather than permuting 800 MB of weights,
    /// the attention reads heads in place through strided `HeadLayout`s.
    static func qkvLayout(_ mixed: UnsafePointer<Float>, width: Int, heads: Int) -> (q: HeadLayout, k: HeadLayout, v: HeadLayout) {
        let hd = width / heads
        return (HeadLayout(base: mixed, rowStride: 3 * width, headStep: 3 * hd),
                HeadLayout(base: mixed + hd, rowStride: 3 * width, headStep: 3 * hd),
                HeadLayout(base: mixed + 2 * hd, rowStride: 3 * width, headStep: 3 * hd))
    }

    /// Encodes pixel_values [n, 3, size, size] (CLIP-normalised float32) into image features
    /// [n, 256, output_dim], the rows spliced into the LLM input.
    public func encode(pixelValues: FloatTensor) throws -> FloatTensor {
        try encode(pixelValues: pixelValues, recording: nil)
    }

    /// `encode` that also returns every stage output (reference names: vit_pos_embed_interp,
    /// vit_embed, vit_block_out.l, vit_out, resampler_pos_k, resampler_out), for parity checks.
    public func encodeRecording(pixelValues: FloatTensor) throws -> (features: FloatTensor, intermediates: Intermediates) {
        var inter = Intermediates()
        let f = try encode(pixelValues: pixelValues, recording: &inter)
        return (f, inter)
    }

    func encode(pixelValues px: FloatTensor, recording intermediates: UnsafeMutablePointer<Intermediates>?) throws -> FloatTensor {
        let v = config, s = v.imageSize, g = v.gridSize, w = v.width, d = v.outputDim, p = v.patchSize
        guard px.shape.count == 4, px.shape[1] == 3, px.shape[2] == s, px.shape[3] == s else {
            throw ModelError.input(message: "pixel_values must be [n, 3, \(s), \(s)], got \(px.shape)")
        }
        let n = px.shape[0], T = g * g, Q = v.resamplerGrid * v.resamplerGrid
        intermediates?.pointee.posEmbedInterp = FloatTensor(shape: [T, w], data: posEmbedInterp)
        intermediates?.pointee.resamplerPosK = FloatTensor(shape: [T, d], data: poolPosK)
        intermediates?.pointee.blockOutputs = Array(repeating: [], count: v.layers)
        var features = [Float](repeating: 0, count: n * Q * d)
        let x = FloatBuffer(capacity: T * w)
        for img in 0..<n {
            // Patches [T, 3*p*p]: token t = gy*g + gx, column c*p*p + ky*p + kx.
            let patches = bufH.reserve(T * 3 * p * p)
            px.data.withUnsafeBufferPointer { pix in
                let base = pix.baseAddress! + img * 3 * s * s
                for gy in 0..<g { for gx in 0..<g {
                    let row = patches + (gy * g + gx) * 3 * p * p
                    for c in 0..<3 { for ky in 0..<p {
                        let src = base + c * s * s + (gy * p + ky) * s + gx * p
                        (row + c * p * p + ky * p).update(from: src, count: p)
                    } }
                } }
            }
            let xp = x.reserve(T * w)
            conv.forward(patches, tokens: T, xp, scratch: scratch)                 // [T, w]
            posEmbedInterp.withUnsafeBufferPointer { Kernels.add(xp, $0.baseAddress!, count: T * w) }
            Kernels.layerNorm(xp, weight: lnPreW, bias: lnPreB, xp, rows: T, dim: w, eps: eps)
            intermediates?.pointee.embed.append(FloatTensor(shape: [T, w], copying: xp))
            for l in blocks.indices {
                runBlock(l, xp, tokens: T)
                intermediates?.pointee.blockOutputs[l].append(FloatTensor(shape: [T, w], copying: xp))
            }
            intermediates?.pointee.vitOut.append(FloatTensor(shape: [T, w], copying: xp))
            let out = resample(xp, tokens: T)                                      // [Q, d]
            intermediates?.pointee.resamplerOut.append(FloatTensor(shape: [Q, d], data: out))
            features.withUnsafeMutableBufferPointer { f in
                let fp = f.baseAddress! + img * Q * d
                out.withUnsafeBufferPointer { fp.update(from: $0.baseAddress!, count: Q * d) }
                Kernels.layerNorm(fp, weight: lnPostW, bias: lnPostB, fp, rows: Q, dim: d, eps: eps)
                let tmp = bufA.reserve(Q * d)
                proj.forward(fp, tokens: Q, tmp, scratch: scratch)
                fp.update(from: tmp, count: Q * d)
            }
        }
        return FloatTensor(shape: [n, Q, d], data: features)
    }

    /// Runs ViT block `layer` (pre-LN attention + exact-GELU MLP) in place on x [tokens, width]:
    /// the single-block entry point for benchmarks and layer-wise tools.
    public func block(_ layer: Int, _ x: inout FloatTensor) {
        precondition(layer >= 0 && layer < blocks.count && x.shape.count == 2 && x.shape[1] == config.width)
        let T = x.shape[0]
        x.data.withUnsafeMutableBufferPointer { runBlock(layer, $0.baseAddress!, tokens: T) }
    }

    /// x [T, w] += Attn(LN1(x)); x += c_proj(GELU(c_fc(LN2(x)))).
    func runBlock(_ l: Int, _ xp: UnsafeMutablePointer<Float>, tokens T: Int) {
        let v = config, w = v.width, blk = blocks[l]
        let ap = bufA.reserve(T * w), mixed = bufH.reserve(T * max(3 * w, v.mlpWidth)), op = bufO.reserve(T * w)
        Kernels.layerNorm(xp, weight: blk.ln1w, bias: blk.ln1b, ap, rows: T, dim: w, eps: eps)
        blk.inProj.forward(ap, tokens: T, mixed, scratch: scratch)        // [T, 3w], per-head interleaved
        let (q, k, vv) = Self.qkvLayout(mixed, width: w, heads: v.heads)
        Attention.forward(q: q, k: k, v: vv, nq: T, nk: T, heads: v.heads, headDim: v.headDim,
                          scaling: .divideQuery(Float(Double(v.headDim).squareRoot())), causalPast: nil,
                          out: ap, outStride: w, scores: scores, qScratch: qScratch)   // [T, w]
        blk.outProj.forward(ap, tokens: T, op, scratch: scratch)
        Kernels.add(xp, op, count: T * w)
        Kernels.layerNorm(xp, weight: blk.ln2w, bias: blk.ln2b, ap, rows: T, dim: w, eps: eps)
        blk.fc.forward(ap, tokens: T, mixed, scratch: scratch)            // [T, mlp]
        Kernels.gelu(mixed, mixed, count: T * v.mlpWidth)
        blk.proj.forward(mixed, tokens: T, op, scratch: scratch)          // [T, w]
        Kernels.add(xp, op, count: T * w)
    }

    /// attn_pool: LN(kv_proj(x)) as keys/values (+ resized sin-cos on keys), LN(query) + sin-cos as
    /// queries, one nn.MultiheadAttention (heads = d/128). x [T, width] -> [256, d].
    func resample(_ x: UnsafePointer<Float>, tokens T: Int) -> [Float] {
        let v = config, d = v.outputDim, Q = v.resamplerGrid * v.resamplerGrid
        var kv = [Float](repeating: 0, count: T * d), key = [Float](repeating: 0, count: T * d)
        var q = [Float](repeating: 0, count: Q * d)
        kv.withUnsafeMutableBufferPointer { kvb in
            let kvp = kvb.baseAddress!
            kvProj.forward(x, tokens: T, kvp, scratch: scratch)
            Kernels.layerNorm(kvp, weight: lnKvW, bias: lnKvB, kvp, rows: T, dim: d, eps: eps)
            for i in 0..<(T * d) { key[i] = kvp[i] + poolPosK[i] }
        }
        query.withUnsafeBufferPointer { Kernels.layerNorm($0.baseAddress!, weight: lnQW, bias: lnQB, &q, rows: Q, dim: d, eps: eps) }
        for i in 0..<(Q * d) { q[i] += poolPos[i] }
        let out = attn.forward(query: q, key: key, value: kv)   // [Q, d]
        return out
    }
}
