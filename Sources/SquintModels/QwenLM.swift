import Foundation
import SquintFormats
import SquintTensor

/// Keys (after RoPE) and values of every layer for the tokens seen so far, [capacity, hidden] per
/// layer (head-major inside a row, as QWenAttention's [B, T, heads, d] cache), plus the dynamic-NTK
/// alpha fixed at prefill (decode steps reuse it, as the official code does).
public final class KVCache {
    public let capacity: Int
    public private(set) var count = 0
    public internal(set) var ntkAlpha: Double = 1
    let hidden: Int
    var keys: [UnsafeMutablePointer<Float>]     // per layer [capacity, hidden]
    var values: [UnsafeMutablePointer<Float>]   // per layer [capacity, hidden]

    /// Room for `capacity` tokens in total (prompt + generated) for the given model.
    public init(config: QwenVLConfig, capacity: Int) {
        self.capacity = capacity
        hidden = config.hiddenSize
        let n = capacity * config.hiddenSize
        keys = (0..<config.numHiddenLayers).map { _ in .allocate(capacity: max(n, 1)) }
        values = (0..<config.numHiddenLayers).map { _ in .allocate(capacity: max(n, 1)) }
    }

    deinit { keys.forEach { $0.deallocate() }; values.forEach { $0.deallocate() } }

    /// Forgets all tokens (the buffers are kept for the next prompt).
    public func reset() { count = 0; ntkAlpha = 1 }
    /// Forgets every token after the first `n` (keeps the NTK alpha): lets a caller score a
    /// continuation with teacher forcing, then decode a different one from the same prefix.
    public func truncate(to n: Int) { precondition(n >= 0 && n <= count); count = n }
    func advance(by n: Int) { count += n }
}

/// The Qwen-7B language model of Qwen-VL-Chat in float32 (SPEC §3.4): wte, `layers` pre-RMSNorm
/// blocks (fused qkv with bias, NeoX RoPE with dynamic NTK, logn query scaling past seq_length,
/// causal attention, SwiGLU with w2 as the gate), ln_f and the untied lm_head.
public final class QwenLM {
    struct Block {
        var ln1: [Float], ln2: [Float]   // [hidden]
        var cAttn: any LinearLayer       // [3*hidden, hidden] + bias; rows q | k | v, head-major each
        var cProj: any LinearLayer       // [hidden, hidden]
        var w1: any LinearLayer, w2: any LinearLayer   // [mlp, hidden]
        var mlpProj: any LinearLayer     // [hidden, mlp]

        subscript(_ m: BlockLinear) -> any LinearLayer {
            get {
                switch m { case .cAttn: return cAttn; case .cProj: return cProj; case .w1: return w1
                           case .w2: return w2; case .mlpProj: return mlpProj }
            }
            set {
                switch m { case .cAttn: cAttn = newValue; case .cProj: cProj = newValue; case .w1: w1 = newValue
                           case .w2: w2 = newValue; case .mlpProj: mlpProj = newValue }
            }
        }
    }

    /// The five linear layers of a block, named by their checkpoint suffix (the modules GPTQ
    /// quantizes, in true-sequential order).
    public enum BlockLinear: String, CaseIterable, Sendable {
        case cAttn = "attn.c_attn", cProj = "attn.c_proj", w1 = "mlp.w1", w2 = "mlp.w2", mlpProj = "mlp.c_proj"
    }

    /// Called with (layer, module, x [tokens, in], tokens) just before each block linear layer runs:
    /// the hook a GPTQ pass uses to accumulate each layer's input Hessian.
    public var linearInputObserver: ((Int, BlockLinear, UnsafePointer<Float>, Int) -> Void)?

    /// What a prefill returns. `hiddenStates` (when asked for) has layers+1 entries of [S, hidden]:
    /// entry i is the state entering block i (0 = embeddings with images spliced in), the last is
    /// after ln_f, matching the reference's `hidden_states`.
    public struct PrefillResult {
        public var logits: FloatTensor            // [S, vocab], or [1, vocab] for the last position only
        public var hiddenStates: [FloatTensor]    // [layers+1] x [S, hidden], empty unless requested
    }

    public let config: QwenVLConfig
    let eps: Float
    let wte: EmbeddingTable          // [vocab, hidden]
    var blocks: [Block]
    let lnF: [Float]
    let lmHead: OutputHead           // [vocab, hidden]; int8 copy for one-token products: `useInt8LMHead`

    /// One-token logits from an int8 copy of the lm_head (Q8 x Q8, `Int8Linear`) or from the stored
    /// head. The int8 copy is built once (1.2 GB read, 0.6 GB held at Qwen-7B's 151936 x 4096).
    public func useInt8LMHead(_ on: Bool) {
        lmHead.useInt8(on)
    }
    let scratch = FloatBuffer(), scores = FloatBuffer(), qScratch = FloatBuffer()
    let bufA = FloatBuffer(), bufQKV = FloatBuffer(), bufO = FloatBuffer(), bufG1 = FloatBuffer(), bufG2 = FloatBuffer()

    init(config: QwenVLConfig, binder b: WeightBinder) throws {
        self.config = config
        eps = Float(config.layerNormEpsilon)
        wte = EmbeddingTable(try b.view("transformer.wte.weight"))
        blocks = try (0..<config.numHiddenLayers).map { i in
            let p = "transformer.h.\(i)."
            return Block(ln1: try b.floats(p + "ln_1.weight"), ln2: try b.floats(p + "ln_2.weight"),
                         cAttn: try b.blockLinear(p + "attn.c_attn", bias: true),
                         cProj: try b.blockLinear(p + "attn.c_proj", bias: false),
                         w1: try b.blockLinear(p + "mlp.w1", bias: false), w2: try b.blockLinear(p + "mlp.w2", bias: false),
                         mlpProj: try b.blockLinear(p + "mlp.c_proj", bias: false))
        }
        lnF = try b.floats("transformer.ln_f.weight")
        lmHead = OutputHead(try b.linear("lm_head.weight"))
    }

    /// wte(ids) with image features spliced in (SPEC §3.3): for the k-th `<img>` (id
    /// visual.image_start_id) at position a, rows a+1 ... a+256 become imageFeatures[k]; the tag
    /// tokens keep their own embeddings. ids [S], imageFeatures [n_img, 256, hidden] -> [S, hidden].
    public func embed(ids: [Int32], imageFeatures: FloatTensor?) throws -> FloatTensor {
        let h = config.hiddenSize, S = ids.count
        var out = [Float](repeating: 0, count: S * h)
        try out.withUnsafeMutableBufferPointer { ob in
            for (i, id) in ids.enumerated() {
                guard id >= 0 && Int(id) < wte.count else {
                    throw ModelError.input(message: "token id \(id) at position \(i) is outside the vocabulary (0..<\(wte.count))")
                }
                wte.gather(Int(id), into: ob.baseAddress! + i * h)
            }
            let starts = ids.indices.filter { Int(ids[$0]) == config.visual.imageStartId }
            let nImg = imageFeatures?.shape[0] ?? 0
            guard starts.count == nImg else {
                throw ModelError.input(message: "the prompt has \(starts.count) <img> tokens but \(nImg) images were encoded")
            }
            guard let f = imageFeatures else { return }
            let span = config.visual.resamplerGrid * config.visual.resamplerGrid
            guard f.shape.count == 3, f.shape[1] == span, f.shape[2] == h else {
                throw ModelError.input(message: "image features must be [n, \(span), \(h)], got \(f.shape)")
            }
            for (k, a) in starts.enumerated() {
                // The tokenizer always emits <img>, 256 path/pad ids, </img>; the official code pairs
                // the k-th <img> with the k-th </img> and would fail on any other span length.
                guard a + span + 1 < S, Int(ids[a + span + 1]) == config.visual.imageStartId + 1 else {
                    throw ModelError.input(message: "<img> at position \(a) is not followed by \(span) tokens and </img> "
                        + "(id \(config.visual.imageStartId + 1)) at position \(a + span + 1)")
                }
                f.data.withUnsafeBufferPointer { fb in
                    (ob.baseAddress! + (a + 1) * h).update(from: fb.baseAddress! + k * span * h, count: span * h)
                }
            }
        }
        return FloatTensor(shape: [S, h], data: out)
    }

    /// Runs the prompt embeddings [S, hidden] through the model, appending to `cache` (a fresh
    /// cache fixes the dynamic-NTK alpha from S). Returns logits for every position (`allLogits`)
    /// or only the last, and optionally the hidden states.
    public func prefill(embeddings: FloatTensor, cache: KVCache, allLogits: Bool = true,
                        keepHiddenStates: Bool = false) throws -> PrefillResult {
        let h = config.hiddenSize, S = embeddings.shape[0]
        guard embeddings.shape == [S, h], S > 0 else {
            throw ModelError.input(message: "embeddings must be [S, \(h)] with S > 0, got \(embeddings.shape)")
        }
        let x = FloatBuffer(capacity: S * h)
        embeddings.data.withUnsafeBufferPointer { x.pointer.update(from: $0.baseAddress!, count: S * h) }
        var states: [FloatTensor] = []
        if keepHiddenStates {
            try withUnsafeMutablePointer(to: &states) { try run(x.pointer, tokens: S, cache: cache, states: $0) }
        } else {
            try run(x.pointer, tokens: S, cache: cache, states: nil)
        }
        let rows = allLogits ? S : 1
        let first = x.pointer + (S - rows) * h
        var logits = [Float](repeating: 0, count: rows * config.vocabSize)
        lmHead.dense.forward(first, tokens: rows, &logits, scratch: scratch)    // prefill: the stored head
        return PrefillResult(logits: FloatTensor(shape: [rows, config.vocabSize], data: logits), hiddenStates: states)
    }

    /// Convenience: embed `ids` (with images spliced in) and prefill.
    public func prefill(ids: [Int32], imageFeatures: FloatTensor?, cache: KVCache, allLogits: Bool = true,
                        keepHiddenStates: Bool = false) throws -> PrefillResult {
        try prefill(embeddings: try embed(ids: ids, imageFeatures: imageFeatures), cache: cache,
                    allLogits: allLogits, keepHiddenStates: keepHiddenStates)
    }

    /// One new token through the model with the KV cache: logits [vocab] for the next position.
    public func decodeStep(_ id: Int32, cache: KVCache) throws -> [Float] {
        let h = config.hiddenSize
        guard id >= 0 && Int(id) < wte.count else {
            throw ModelError.input(message: "token id \(id) is outside the vocabulary (0..<\(wte.count))")
        }
        let xb = FloatBuffer(capacity: h)                                        // [1, hidden]
        wte.gather(Int(id), into: xb.pointer)
        try run(xb.pointer, tokens: 1, cache: cache, states: nil)
        var logits = [Float](repeating: 0, count: config.vocabSize)
        lmHead.forward(xb.pointer, tokens: 1, &logits, scratch: scratch)
        return logits
    }

    /// Dynamic NTK factor chosen at prefill (QWenModel.forward): alpha = max(2^ceil(log2(S/seq)+1) - 1, 1),
    /// so 1 up to `trainedLength` tokens, 3 up to twice that, 7 up to four times.
    public static func ntkAlpha(sequenceLength S: Int, trainedLength seq: Int) -> Double {
        max(pow(2, ceil(log2(Double(S) / Double(seq)) + 1)) - 1, 1)
    }

    /// logn attention factor of the query at absolute position p: log(p+1)/log(seq) past the trained
    /// length, else 1 (the official `logn_list`, math.log(i, seq_length) for i = p+1).
    public static func lognScale(position p: Int, trainedLength seq: Int) -> Float {
        p + 1 > seq ? Float(log(Double(p + 1)) / log(Double(seq))) : 1
    }

    /// RoPE cos/sin tables [S, d/2] for absolute positions past ..< past+S, with the base raised by
    /// dynamic NTK: base * alpha^(d/(d-2)). Float32 like the official cache (inv_freq, outer, cos).
    func rotaryTables(past: Int, count S: Int, alpha: Double) -> (cos: [Float], sin: [Float]) {
        let d = config.headDim
        return Kernels.ropeTables(base: Float(config.rotaryEmbBase * pow(alpha, Double(d) / Double(d - 2))),
                                  headDim: d, past: past, count: S)
    }

    /// The blocks and ln_f, in place on x [S, hidden].
    func run(_ x: UnsafeMutablePointer<Float>, tokens S: Int, cache: KVCache,
             states: UnsafeMutablePointer<[FloatTensor]>?) throws {
        let h = config.hiddenSize
        let past = cache.count, T = past + S
        guard T <= cache.capacity else {
            throw ModelError.input(message: "KV cache holds \(cache.capacity) tokens; \(T) needed")
        }
        // Dynamic NTK (only on a prefill from an empty cache): alpha = max(2^ceil(log2(S/seq)+1) - 1, 1).
        if past == 0 { cache.ntkAlpha = config.useDynamicNTK ? Self.ntkAlpha(sequenceLength: S, trainedLength: config.seqLength) : 1 }
        let (cosT, sinT) = rotaryTables(past: past, count: S, alpha: cache.ntkAlpha)
        // logn: query at absolute position p is scaled by log(p+1)/log(seq_length) when p+1 > seq_length.
        var logn: [Float]? = nil
        if config.useLognAttn && T > config.seqLength {
            logn = (0..<S).map { i in Self.lognScale(position: past + i, trainedLength: config.seqLength) }
        }
        for l in blocks.indices {
            states?.pointee.append(FloatTensor(shape: [S, h], copying: x))
            runBlock(l, x, tokens: S, past: past, keys: cache.keys[l], values: cache.values[l],
                     cos: cosT, sin: sinT, logn: logn)
        }
        Kernels.rmsNorm(x, weight: lnF, x, rows: S, dim: h, eps: eps)
        states?.pointee.append(FloatTensor(shape: [S, h], copying: x))
        cache.advance(by: S)
    }

    /// Block `l` in place on x [S, hidden], with `past` tokens already in keys/values [capacity, hidden].
    /// `start` skips the part of the block before a linear layer whose input is given (`startInput`):
    /// `.cProj` (x = the block input, startInput = the attention output [S, hidden]), `.w1`/`.w2`
    /// (x = the residual after attention; nothing else needed), `.mlpProj` (x = that residual,
    /// startInput = w1(m)·silu(w2(m)) [S, mlp]). The observer sees only the inputs computed here.
    func runBlock(_ l: Int, _ x: UnsafeMutablePointer<Float>, tokens S: Int, past: Int,
                  keys kc: UnsafeMutablePointer<Float>, values vc: UnsafeMutablePointer<Float>,
                  cos cosT: [Float], sin sinT: [Float], logn: [Float]?, stopAfterObserving stop: BlockLinear? = nil,
                  start: BlockLinear = .cAttn, startInput: UnsafePointer<Float>? = nil) {
        let h = config.hiddenSize, H = config.numAttentionHeads, d = config.headDim, f = config.mlpWidth
        let T = past + S, blk = blocks[l], observe = linearInputObserver
        let a = bufA.reserve(S * h), qkv = bufQKV.reserve(S * 3 * h), o = bufO.reserve(S * h)
        let g1 = bufG1.reserve(S * f), g2 = bufG2.reserve(S * f)
        precondition(start == .cAttn || start == .w1 || start == .w2 || startInput != nil, "runBlock: start \(start) needs its input")
        /// Shows the observer linear `m`'s input; true when the pass stops there.
        func reached(_ m: BlockLinear, _ input: UnsafeMutablePointer<Float>) -> Bool {
            observe?(l, m, input, S)
            return stop == m
        }
        switch start {
        case .cAttn:
            Kernels.rmsNorm(x, weight: blk.ln1, a, rows: S, dim: h, eps: eps)
            if reached(.cAttn, a) { return }
            blk.cAttn.forward(a, tokens: S, qkv, scratch: scratch)                 // [S, 3h] = q | k | v
            Kernels.rotary(qkv, tokens: S, heads: H, dim: d, stride: 3 * h, cos: cosT, sin: sinT, scale: logn)
            Kernels.rotary(qkv + h, tokens: S, heads: H, dim: d, stride: 3 * h, cos: cosT, sin: sinT, scale: nil)
            for t in 0..<S {
                (kc + (past + t) * h).update(from: qkv + t * 3 * h + h, count: h)
                (vc + (past + t) * h).update(from: qkv + t * 3 * h + 2 * h, count: h)
            }
            Threads.withSingleThreadedBLAS(when: S == 1) {                          // decode: see there
                Attention.forward(q: HeadLayout(base: qkv, rowStride: 3 * h, headStep: d),
                                  k: HeadLayout(base: kc, rowStride: h, headStep: d),
                                  v: HeadLayout(base: vc, rowStride: h, headStep: d),
                                  nq: S, nk: T, heads: H, headDim: d, scaling: .divideScores(Float(Double(d).squareRoot())),
                                  causalPast: past, out: a, outStride: h, scores: scores, qScratch: qScratch)
            }
            if reached(.cProj, a) { return }
            fallthrough
        case .cProj:
            if start == .cProj { a.update(from: startInput!, count: S * h) }
            blk.cProj.forward(a, tokens: S, o, scratch: scratch)
            Kernels.add(x, o, count: S * h)
            fallthrough
        case .w1, .w2:
            Kernels.rmsNorm(x, weight: blk.ln2, a, rows: S, dim: h, eps: eps)
            if reached(.w1, a) { return }
            blk.w1.forward(a, tokens: S, g1, scratch: scratch)                     // [S, f]
            if reached(.w2, a) { return }
            blk.w2.forward(a, tokens: S, g2, scratch: scratch)                     // [S, f] (gate)
            Kernels.siluMul(g1, gate: g2, g1, count: S * f)
            if reached(.mlpProj, g1) { return }
            fallthrough
        case .mlpProj:
            if start == .mlpProj { g1.update(from: startInput!, count: S * f) }
            blk.mlpProj.forward(g1, tokens: S, o, scratch: scratch)
            Kernels.add(x, o, count: S * h)
        }
    }

    /// Runs block `layer` alone on a fresh sequence x [S, hidden] in place (positions 0..<S, NTK
    /// alpha from S, no cache kept): the layer-by-layer pass of GPTQ (use_cache off).
    public func block(_ layer: Int, _ x: inout FloatTensor) {
        runFresh(layer, &x, stop: nil)
    }

    /// Runs block `layer` on a fresh sequence x [S, hidden] only as far as the input of `module`:
    /// `linearInputObserver` sees every block linear input up to and including `module`'s, then the
    /// block stops (x is left partly updated). A GPTQ pass that needs the inputs of one sequential
    /// group skips the rest of the block this way; the inputs are those a full run would observe.
    public func blockInputs(_ layer: Int, _ x: inout FloatTensor, upTo module: BlockLinear) {
        runFresh(layer, &x, stop: module)
    }

    /// The rest of block `layer` on a fresh sequence from a cut before linear layer `start`, as far as
    /// the input of `stop` (nil: to the end). GPTQ's sequential groups resume each pass where the
    /// previous group's pass stopped instead of rerunning the block from its input:
    /// - `start: .cProj`: x = the block input, `input` = the attention output (c_proj's input) [S, hidden];
    /// - `start: .w1`: x = the residual after attention (x + c_proj(attention)), `input` nil;
    /// - `start: .mlpProj`: x = that residual, `input` = mlp.c_proj's input [S, mlp].
    /// x ends as a full run from the block input would leave it (bit for bit: same kernels, same order).
    public func blockFrom(_ layer: Int, _ x: inout FloatTensor, start: BlockLinear, input: [Float]?, upTo stop: BlockLinear?) {
        if let input {
            input.withUnsafeBufferPointer { runFresh(layer, &x, stop: stop, start: start, startInput: $0.baseAddress!) }
        } else {
            runFresh(layer, &x, stop: stop, start: start, startInput: nil)
        }
    }

    /// Block `layer` on a fresh sequence (positions 0..<S, NTK alpha and logn from S, a throwaway
    /// KV buffer), optionally stopping after the input of `stop` was observed.
    private func runFresh(_ layer: Int, _ x: inout FloatTensor, stop: BlockLinear?, start: BlockLinear = .cAttn,
                          startInput: UnsafePointer<Float>? = nil) {
        let h = config.hiddenSize, S = x.shape[0]
        precondition(layer >= 0 && layer < blocks.count && x.shape == [S, h] && S > 0)
        let alpha = config.useDynamicNTK ? Self.ntkAlpha(sequenceLength: S, trainedLength: config.seqLength) : 1
        let (cosT, sinT) = rotaryTables(past: 0, count: S, alpha: alpha)
        let logn: [Float]? = config.useLognAttn && S > config.seqLength
            ? (0..<S).map { Self.lognScale(position: $0, trainedLength: config.seqLength) } : nil
        let kc = UnsafeMutablePointer<Float>.allocate(capacity: S * h), vc = UnsafeMutablePointer<Float>.allocate(capacity: S * h)
        defer { kc.deallocate(); vc.deallocate() }
        x.data.withUnsafeMutableBufferPointer {
            runBlock(layer, $0.baseAddress!, tokens: S, past: 0, keys: kc, values: vc, cos: cosT, sin: sinT, logn: logn,
                     stopAfterObserving: stop, start: start, startInput: startInput)
        }
    }

    /// Block `layer`'s linear layer `module` (a dense `Linear` unless replaced).
    public func linear(layer: Int, _ module: BlockLinear) -> any LinearLayer { blocks[layer][module] }

    /// Swaps in another implementation of a block linear layer (same in/out features), e.g. the
    /// fake-quantized or Int4 layer a GPTQ pass produced.
    public func replaceLinear(layer: Int, _ module: BlockLinear, with new: any LinearLayer) {
        let old = blocks[layer][module]
        precondition(new.inFeatures == old.inFeatures && new.outFeatures == old.outFeatures,
                     "replaceLinear: \(new.name) is \(new.outFeatures)x\(new.inFeatures), expected \(old.outFeatures)x\(old.inFeatures)")
        blocks[layer][module] = new
    }
}
