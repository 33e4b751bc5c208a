import Foundation
import SquintFormats
import SquintTensor

/// Keys (after RoPE) and values of every layer for the tokens seen so far: per layer
/// [capacity, kvHeads * headDim], head-major inside a row. Grows on demand (capacity doubles), so a
/// caller need not know the final length; `reset`/`truncate` keep the buffers for reuse.
public final class DecoderCache {
    public private(set) var count = 0
    public private(set) var capacity = 0
    let layers: Int, kvDim: Int
    var keys: [UnsafeMutablePointer<Float>]     // per layer [capacity, kvDim]
    var values: [UnsafeMutablePointer<Float>]   // per layer [capacity, kvDim]

    /// A cache for a model with `dims`, with room for `capacity` tokens before it first grows.
    public init(dims: DecoderDims, capacity: Int = 0) {
        layers = dims.layers; kvDim = dims.kvDim
        keys = []; values = []
        reserve(max(capacity, 16))
    }

    deinit { keys.forEach { $0.deallocate() }; values.forEach { $0.deallocate() } }

    /// Forgets all tokens (the buffers are kept).
    public func reset() { count = 0 }
    /// Forgets every token after the first `n`: score a continuation, then decode another from the prefix.
    public func truncate(to n: Int) { precondition(n >= 0 && n <= count); count = n }

    /// Room for at least `n` tokens, keeping the first `count`.
    func reserve(_ n: Int) {
        guard n > capacity else { return }
        let newCap = max(n, capacity * 2)
        func grow(_ old: [UnsafeMutablePointer<Float>]) -> [UnsafeMutablePointer<Float>] {
            (0..<layers).map { l in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: newCap * kvDim)
                if l < old.count { p.update(from: old[l], count: count * kvDim); old[l].deallocate() }
                return p
            }
        }
        keys = grow(keys); values = grow(values)
        capacity = newCap
    }
    func advance(by n: Int) { count += n }
}

/// A decoder-only transformer in float32, shared by every family in `DecoderRegistry` (Qwen2,
/// Llama): token embedding; `layers` pre-RMSNorm blocks, each
///
///     a = rmsnorm(x) · attn_norm
///     q, k, v = a Wqᵀ (+bq), a Wkᵀ (+bk), a Wvᵀ (+bv)         q [S, heads·d], k/v [S, kvHeads·d]
///     q, k = rope(q), rope(k)                                  NeoX half-split (rotate_half), base rope_theta
///     o = softmax(q kᵀ / √d + causal) v                        query head h reads kv head h / (heads/kvHeads)
///     x = x + o Woᵀ
///     m = rmsnorm(x) · mlp_norm
///     x = x + (silu(m Wgᵀ) * (m Wuᵀ)) Wdᵀ
///
/// then the final RMSNorm and lm_head (the embedding table when tied). This is transformers'
/// Qwen2ForCausalLM / LlamaForCausalLM forward (eager attention, no sliding window, no RoPE scaling).
///
/// Weights stay in the checkpoint's dtype and memory (BF16/F16/F32 `Linear`s over the file mapping;
/// block linears stored as Int4, SQ4 records or AutoGPTQ tensors, bind as `QuantizedLinear`);
/// block linears sit behind `LinearLayer`, so a quantizer can read them (`linear(layer:_:)`), observe
/// their inputs (`linearInputObserver`) and swap in Int4 layers (`replaceLinear`). Prefill runs every
/// product through sgemm; decode (one token) through the matrix-vector paths.
/// Not thread-safe: scratch buffers are reused across calls.
public final class DecoderLM {
    struct Block {
        var attnNorm: [Float], mlpNorm: [Float]           // [hidden]
        var linears: [DecoderLinear: any LinearLayer]     // shapes: DecoderDims.shape(of:)
    }

    /// What a prefill returns. `hiddenStates` (when asked for) has layers+1 entries of [S, hidden]:
    /// entry i is the input of block i (0 = the embeddings), the last is after the final norm.
    public struct PrefillResult {
        public var logits: FloatTensor            // [rows, vocab] for the requested rows
        public var hiddenStates: [FloatTensor]    // [layers+1] x [S, hidden], empty unless requested
    }

    public let architecture: DecoderArchitecture
    public let dims: DecoderDims
    /// Checkpoint tensors accounted for but not read (a tied checkpoint's saved lm_head, old
    /// `rotary_emb.inv_freq` buffers).
    public let ignoredTensors: [String]
    /// How the checkpoint stores the block linears: dense, SQ4 records or AutoGPTQ tensors.
    public let quantization: Int4Binding.Layout
    /// Called with (layer, linear, x [tokens, in], tokens) just before each block linear runs: the
    /// hook a GPTQ pass uses to accumulate each layer's input Hessian (q, k and v see the same x).
    public var linearInputObserver: ((Int, DecoderLinear, UnsafePointer<Float>, Int) -> Void)?

    let eps: Float
    let embedding: EmbeddingTable      // [vocab, hidden]
    var blocks: [Block]
    let finalNorm: [Float]             // [hidden]
    /// [vocab, hidden]; held as int8 (Q8_0-like) too while `useInt8Activations(true)`: one-token logits
    /// then read half the bytes of an F16 head (the 0.5B's 272 MB head was ~40 % of a decode step).
    let lmHead: OutputHead
    let scratch = FloatBuffer(), scores = FloatBuffer(), qScratch = FloatBuffer()
    let bufA = FloatBuffer(), bufQ = FloatBuffer(), bufAttn = FloatBuffer(), bufO = FloatBuffer()
    let bufG = FloatBuffer(), bufU = FloatBuffer()

    /// Binds a checkpoint to the family's tensor table: every tensor of `weights` must be in the
    /// table (or ignorable) and every table entry in `weights` with its shape and a float dtype;
    /// all problems are thrown together as `ModelError.binding`. `dims` must have passed `validate`
    /// (families' config loaders do it); it is checked again here because nothing may be sized from
    /// an unchecked number.
    public init(architecture: DecoderArchitecture, dims: DecoderDims, weights: TensorFile,
                naming: DecoderTensorNaming? = nil) throws {
        try dims.validate(path: weights.path + " (model dims)")
        self.architecture = architecture
        self.dims = dims
        let n = naming ?? architecture.naming
        let table = dims.tensorTable(n)
        let declared = Set(table.map(\.name))
        var ignored = weights.tensors.map(\.name).filter { name in
            !declared.contains(name) && n.ignoredSuffixes.contains { name.hasSuffix($0) }
        }
        // transformers ties lm_head to the embedding at load even when a checkpoint saved both.
        if dims.tiedEmbeddings && weights.info(n.lmHead) != nil { ignored.append(n.lmHead) }
        ignoredTensors = ignored
        // Int4 block linears (an SQ4 file, or AutoGPTQ qweight/qzeros/scales/g_idx tensors) replace
        // their dense .weight/.bias entries; the binder still accounts for every tensor.
        let modules = (0..<dims.layers).flatMap { i in dims.blockLinears.map { m in (n.module(i, m), dims.shape(of: m)[0], dims.shape(of: m)[1]) } }
        let int4 = try Int4Binding(file: weights, modules: modules, allowed: "the block linears (\(dims.blockLinears.map(\.rawValue).joined(separator: ", ")))")
        quantization = int4.layout
        let b = try WeightBinder(file: weights, expected: int4.expected(table.map { ($0.name, $0.shape) }),
                                 owned: Set(ignored).union(int4.ownedTensors), quantized: int4.layers, extraProblems: int4.problems)
        eps = Float(dims.rmsNormEps)
        let embView = try b.view(n.embedding)
        embedding = EmbeddingTable(embView)
        blocks = try (0..<dims.layers).map { i in
            var linears: [DecoderLinear: any LinearLayer] = [:]
            for m in dims.blockLinears { linears[m] = try b.blockLinear(n.module(i, m), bias: dims.biases.contains(m)) }
            return Block(attnNorm: try b.floats(n.block(i) + n.attnNorm), mlpNorm: try b.floats(n.block(i) + n.mlpNorm),
                         linears: linears)
        }
        finalNorm = try b.floats(n.finalNorm)
        lmHead = OutputHead(dims.tiedEmbeddings ? Linear(weight: embView, bias: nil) : try b.linear(n.lmHead))
    }

    /// A Hugging Face model folder: `config.json` (its `architectures` / `model_type` picks the family
    /// in `DecoderRegistry`) and `model.safetensors`, or `model.safetensors.index.json` with its shards.
    public static func load(folder: String) throws -> DecoderLM {
        let configPath = folder + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw ModelError.config(path: configPath, message: FileManager.default.fileExists(atPath: configPath)
                                    ? "cannot read the file" : "no config.json in the model folder")
        }
        let arch = try DecoderRegistry.architecture(forConfig: data, path: configPath)
        let dims = try arch.dims(data, configPath)
        let index = folder + "/model.safetensors.index.json", single = folder + "/model.safetensors"
        let weights: TensorFile
        if FileManager.default.fileExists(atPath: index) {
            weights = try ShardedCheckpoint(indexPath: index)
        } else if FileManager.default.fileExists(atPath: single) {
            weights = try SafetensorsFile(path: single)
        } else {
            throw FormatError.io(path: folder, message: "no model.safetensors or model.safetensors.index.json in the folder")
        }
        return try DecoderLM(architecture: arch, dims: dims, weights: weights)
    }

    /// A KV cache for this model (grows as needed; `capacity` avoids regrowing).
    public func makeCache(capacity: Int = 0) -> DecoderCache { DecoderCache(dims: dims, capacity: capacity) }

    /// Token embeddings [S, hidden] of `tokens` (ids checked against the vocabulary).
    public func embed(_ tokens: [Int32]) throws -> FloatTensor {
        let h = dims.hidden
        var out = [Float](repeating: 0, count: tokens.count * h)
        try out.withUnsafeMutableBufferPointer { ob in
            for (i, id) in tokens.enumerated() {
                guard id >= 0 && Int(id) < embedding.count else {
                    throw ModelError.input(message: "token id \(id) at position \(i) is outside the vocabulary (0..<\(embedding.count))")
                }
                embedding.gather(Int(id), into: ob.baseAddress! + i * h)
            }
        }
        return FloatTensor(shape: [tokens.count, h], data: out)
    }

    /// Runs `tokens` through the model after the `cache.count` tokens already in `cache`, appending
    /// their keys and values. Returns the logits of positions `logitRows` (nil: all; a perplexity
    /// window asks for the half it scores, a generator for the last) and optionally the hidden states.
    public func prefill(tokens: [Int32], cache: DecoderCache, logitRows: Range<Int>? = nil,
                        keepHiddenStates: Bool = false) throws -> PrefillResult {
        let h = dims.hidden, S = tokens.count
        guard S > 0 else { throw ModelError.input(message: "prefill needs at least one token") }
        let rows = logitRows ?? 0..<S
        guard rows.lowerBound >= 0 && rows.upperBound <= S else {
            throw ModelError.input(message: "logit rows \(rows) outside the \(S) prefill positions")
        }
        var x = try embed(tokens)                                                 // [S, hidden]
        var states: [FloatTensor] = []
        try x.data.withUnsafeMutableBufferPointer { xb in
            if keepHiddenStates {
                try withUnsafeMutablePointer(to: &states) { try run(xb.baseAddress!, tokens: S, cache: cache, states: $0) }
            } else {
                try run(xb.baseAddress!, tokens: S, cache: cache, states: nil)
            }
        }
        var logits = [Float](repeating: 0, count: rows.count * dims.vocab)       // [rows, vocab]
        if !rows.isEmpty {
            x.data.withUnsafeBufferPointer {
                let xr = $0.baseAddress! + rows.lowerBound * h
                lmHead.forward(xr, tokens: rows.count, &logits, scratch: scratch)
            }
        }
        return PrefillResult(logits: FloatTensor(shape: [rows.count, dims.vocab], data: logits), hiddenStates: states)
    }

    /// One token after the tokens in `cache`: the logits [vocab] of the next position.
    public func decode(token: Int32, cache: DecoderCache) throws -> [Float] {
        let r = try prefill(tokens: [token], cache: cache)
        return r.logits.data
    }

    /// Greedy decoding (argmax of the raw logits, first index on ties as torch.argmax) of `steps`
    /// tokens after `prompt`, with the KV cache. logits[k] is what ids[k] was chosen from (row 0: the
    /// prompt's last position).
    public func generateGreedy(prompt: [Int32], steps: Int) throws -> (ids: [Int32], logits: [[Float]]) {
        let cache = makeCache(capacity: prompt.count + steps)
        var last = try prefill(tokens: prompt, cache: cache, logitRows: (prompt.count - 1)..<prompt.count).logits.data
        var ids: [Int32] = [], logits: [[Float]] = []
        for step in 0..<steps {
            let next = Int32(argmax(last))
            ids.append(next); logits.append(last)
            if step + 1 < steps { last = try decode(token: next, cache: cache) }
        }
        return (ids, logits)
    }

    /// Generation for `run`/`chat`: prefills `prompt` after whatever `cache` already holds (a chat's
    /// earlier turns), then samples with `sampling` (greedy by default) until a token of `stop` (kept
    /// as the last id), `maxNewTokens`, or `onToken` returning false. Returns the new ids; `cache`
    /// then holds everything but the last id (decode it to continue).
    public func generate(prompt: [Int32], maxNewTokens: Int, sampling: SamplingOptions = .greedy, stop: Set<Int32> = [],
                         cache: DecoderCache? = nil, onToken: ((Int32) -> Bool)? = nil) throws -> [Int32] {
        let cache = cache ?? makeCache(capacity: prompt.count + maxNewTokens)
        guard maxNewTokens > 0 else { return [] }
        var logits = try prefill(tokens: prompt, cache: cache, logitRows: (prompt.count - 1)..<prompt.count).logits.data
        var sampler = Sampler(sampling)
        var out: [Int32] = []
        while true {
            let next = Int32(sampler.next(logits))
            out.append(next)
            if stop.contains(next) || out.count == maxNewTokens || onToken?(next) == false { return out }
            logits = try decode(token: next, cache: cache)
        }
    }

    /// The blocks and the final norm, in place on x [S, hidden], after the tokens in `cache`.
    func run(_ x: UnsafeMutablePointer<Float>, tokens S: Int, cache: DecoderCache,
             states: UnsafeMutablePointer<[FloatTensor]>?) throws {
        guard cache.layers == dims.layers && cache.kvDim == dims.kvDim else {
            throw ModelError.input(message: "the KV cache was made for another model (\(cache.layers) layers x \(cache.kvDim), "
                                   + "this one has \(dims.layers) x \(dims.kvDim))")
        }
        let h = dims.hidden, past = cache.count
        cache.reserve(past + S)
        let (cosT, sinT) = Kernels.ropeTables(base: Float(dims.ropeTheta), headDim: dims.headDim, past: past, count: S)
        for l in blocks.indices {
            states?.pointee.append(FloatTensor(shape: [S, h], copying: x))
            runBlock(l, x, tokens: S, past: past, keys: cache.keys[l], values: cache.values[l], cos: cosT, sin: sinT)
        }
        Kernels.rmsNorm(x, weight: finalNorm, x, rows: S, dim: h, eps: eps)
        states?.pointee.append(FloatTensor(shape: [S, h], copying: x))
        cache.advance(by: S)
    }

    /// Block `l` in place on x [S, hidden]; keys/values [capacity, kvDim] hold `past` tokens and get S more.
    func runBlock(_ l: Int, _ x: UnsafeMutablePointer<Float>, tokens S: Int, past: Int,
                  keys kc: UnsafeMutablePointer<Float>, values vc: UnsafeMutablePointer<Float>,
                  cos cosT: [Float], sin sinT: [Float], upTo stop: DecoderLinear? = nil) {
        let h = dims.hidden, H = dims.heads, KV = dims.kvHeads, d = dims.headDim, f = dims.intermediate
        let qDim = dims.qDim, kvDim = dims.kvDim, blk = blocks[l], observe = linearInputObserver
        var stopped = false
        func lin(_ m: DecoderLinear, _ input: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
            guard !stopped else { return }
            observe?(l, m, input, S)
            if m == stop { stopped = true; return }
            blk.linears[m]!.forward(input, tokens: S, out, scratch: scratch)
        }
        let a = bufA.reserve(S * h), attn = bufAttn.reserve(S * qDim), o = bufO.reserve(S * h)
        let kNew = kc + past * kvDim, vNew = vc + past * kvDim                  // [S, kvDim] each, in the cache
        Kernels.rmsNorm(x, weight: blk.attnNorm, a, rows: S, dim: h, eps: eps)
        // q [S, qDim] at row stride qStride; k and v written straight into the cache rows.
        let q: UnsafeMutablePointer<Float>, qStride: Int
        if dims.fusedQKV {
            qStride = qDim + 2 * kvDim
            q = bufQ.reserve(S * qStride)
            lin(.qkv, a, q)                                                      // [S, q | k | v]
            for t in 0..<S {
                (kNew + t * kvDim).update(from: q + t * qStride + qDim, count: kvDim)
                (vNew + t * kvDim).update(from: q + t * qStride + qDim + kvDim, count: kvDim)
            }
        } else {
            qStride = qDim
            q = bufQ.reserve(S * qDim)
            lin(.q, a, q); lin(.k, a, kNew); lin(.v, a, vNew)
        }
        if stopped { return }
        Kernels.rotary(q, tokens: S, heads: H, dim: d, stride: qStride, cos: cosT, sin: sinT, scale: nil)
        Kernels.rotary(kNew, tokens: S, heads: KV, dim: d, stride: kvDim, cos: cosT, sin: sinT, scale: nil)
        // Grouped-query attention without copying keys: one call per kv head g over its `rep` query
        // heads, the key/value layout pinned to head g (headStep 0).
        let rep = H / KV
        if S == 1 {
            // Decode: kv head g's `rep` query heads are consecutive rows of d in q, so they form one
            // [rep, d] query matrix and one product per kv head scores them all (2 sgemm per kv head
            // instead of 2 per query head); the one token sees every cached key, so no mask. Products
            // this small run on one OpenBLAS thread (Threads.withSingleThreadedBLAS).
            Threads.withSingleThreadedBLAS { for g in 0..<KV {
                Attention.forward(q: HeadLayout(base: q + g * rep * d, rowStride: d, headStep: 0),
                                  k: HeadLayout(base: kc + g * d, rowStride: kvDim, headStep: 0),
                                  v: HeadLayout(base: vc + g * d, rowStride: kvDim, headStep: 0),
                                  nq: rep, nk: past + 1, heads: 1, headDim: d,
                                  scaling: .divideScores(Float(Double(d).squareRoot())), causalPast: nil,
                                  out: attn + g * rep * d, outStride: d, scores: scores, qScratch: qScratch)
            } }
        } else {
            for g in 0..<KV {
                Attention.forward(q: HeadLayout(base: q + g * rep * d, rowStride: qStride, headStep: d),
                                  k: HeadLayout(base: kc + g * d, rowStride: kvDim, headStep: 0),
                                  v: HeadLayout(base: vc + g * d, rowStride: kvDim, headStep: 0),
                                  nq: S, nk: past + S, heads: rep, headDim: d,
                                  scaling: .divideScores(Float(Double(d).squareRoot())), causalPast: past,
                                  out: attn + g * rep * d, outStride: qDim, scores: scores, qScratch: qScratch)
            }
        }
        lin(.o, attn, o)                                                         // [S, hidden]
        if stopped { return }
        Kernels.add(x, o, count: S * h)
        Kernels.rmsNorm(x, weight: blk.mlpNorm, a, rows: S, dim: h, eps: eps)
        let m: UnsafeMutablePointer<Float>                                       // [S, f] = silu(gate) * up
        if dims.fusedGateUp {
            let gu = bufG.reserve(S * 2 * f)                                     // [S, gate | up]
            lin(.gateUp, a, gu)
            m = bufU.reserve(S * f)
            for t in 0..<S { Kernels.siluMul(gu + t * 2 * f + f, gate: gu + t * 2 * f, m + t * f, count: f) }
        } else {
            let g = bufG.reserve(S * f)
            m = bufU.reserve(S * f)
            lin(.gate, a, g); lin(.up, a, m)
            Kernels.siluMul(m, gate: g, m, count: S * f)
        }
        if stopped { return }
        lin(.down, m, o)
        Kernels.add(x, o, count: S * h)
    }

    /// Runs block `layer` alone on a fresh sequence x [S, hidden] in place (positions 0..<S, no cache
    /// kept): the layer-by-layer pass of GPTQ. With `upTo`, the block stops once that linear's input
    /// has been shown to `linearInputObserver` (x is then left part-way: a GPTQ group pass only needs
    /// the group's input, so it skips the rest of the block).
    public func block(_ layer: Int, _ x: inout FloatTensor, upTo stop: DecoderLinear? = nil) {
        let S = x.shape[0]
        precondition(layer >= 0 && layer < blocks.count && x.shape == [S, dims.hidden] && S > 0)
        let (cosT, sinT) = Kernels.ropeTables(base: Float(dims.ropeTheta), headDim: dims.headDim, past: 0, count: S)
        let kc = UnsafeMutablePointer<Float>.allocate(capacity: S * dims.kvDim)
        let vc = UnsafeMutablePointer<Float>.allocate(capacity: S * dims.kvDim)
        defer { kc.deallocate(); vc.deallocate() }
        x.data.withUnsafeMutableBufferPointer {
            runBlock(layer, $0.baseAddress!, tokens: S, past: 0, keys: kc, values: vc, cos: cosT, sin: sinT, upTo: stop)
        }
    }

    /// Block `layer`'s linear `m` (a dense `Linear` unless replaced); nil when the layout has no such layer.
    public func linear(layer: Int, _ m: DecoderLinear) -> (any LinearLayer)? { blocks[layer].linears[m] }

    /// Int4 block linears decode with 8-bit activations (`run --int8-activations`) or float32 ones;
    /// with 8-bit activations the lm_head's one-token products are int8 x int8 as well (`Int8Linear`,
    /// built once here: the head is quantised, e.g. 0.2 s for the 0.5B's 151936 x 896).
    public func useInt8Activations(_ on: Bool) {
        for b in blocks { for l in b.linears.values { (l as? QuantizedLinear)?.decodePath = on ? .int8 : .float32 } }
        lmHead.useInt8(on)
    }

    /// Swaps in another implementation of a block linear (same in/out features), e.g. the Int4
    /// layer a GPTQ pass produced.
    public func replaceLinear(layer: Int, _ m: DecoderLinear, with new: any LinearLayer) {
        guard let old = blocks[layer].linears[m] else { preconditionFailure("replaceLinear: layer \(layer) has no \(m.rawValue)") }
        precondition(new.inFeatures == old.inFeatures && new.outFeatures == old.outFeatures,
                     "replaceLinear: \(new.name) is \(new.outFeatures)x\(new.inFeatures), expected \(old.outFeatures)x\(old.inFeatures)")
        blocks[layer].linears[m] = new
    }
}

// MARK: - Scoring (perplexity, KL)

extension DecoderLM {
    /// log softmax of one logits row, in double for the normaliser (log-sum-exp around the max).
    public static func logProbs(_ row: ArraySlice<Float>) -> [Double] {
        let lse = logSumExp(row)
        return row.map { Double($0) - lse }
    }

    /// log Σ exp(row), computed around the maximum so no term overflows.
    public static func logSumExp(_ row: ArraySlice<Float>) -> Double {
        guard let m = row.max(), m.isFinite else { return row.max().map(Double.init) ?? -.infinity }
        var s = 0.0
        for v in row { s += exp(Double(v) - Double(m)) }
        return Double(m) + log(s)
    }

    /// Negative log-likelihood of each target: row i of `logits` [n, vocab] scores `targets[i]`
    /// (for next-token prediction, targets are the tokens one position after the logits' rows).
    /// Perplexity over them is exp(mean). Targets outside the vocabulary throw.
    public static func negativeLogLikelihoods(logits: FloatTensor, targets: [Int32]) throws -> [Double] {
        guard logits.shape.count == 2, logits.shape[0] == targets.count else {
            throw ModelError.input(message: "\(targets.count) targets for logits of shape \(logits.shape)")
        }
        let v = logits.shape[1]
        return try targets.enumerated().map { i, t in
            guard t >= 0 && Int(t) < v else { throw ModelError.input(message: "target \(t) at row \(i) is outside the vocabulary (0..<\(v))") }
            let row = logits.data[(i * v)..<((i + 1) * v)]
            return logSumExp(row) - Double(row[row.startIndex + Int(t)])
        }
    }
}
