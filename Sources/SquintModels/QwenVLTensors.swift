import SquintFormats

/// What a tensor is, which decides its synthetic values and how tools summarise it.
public enum TensorRole: String, Sendable {
    case embedding          // wte, visual positional embedding, resampler query: r * sqrt(3)
    case lmHead             // r * 4 * sqrt(3 / fan_in)
    case linear             // r * sqrt(3 / fan_in)
    case norm               // 1 + r * 0.2
    case bias               // r * 0.05
    case sinCos             // the resampler's fixed 2D sin-cos table
}

/// One tensor of the BF16 Qwen-VL-Chat checkpoint.
public struct QwenVLTensorSpec: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var role: TensorRole
    /// Inputs per output for linear / conv weights (SYNTHETIC_WEIGHTS.md); 0 otherwise.
    public var fanIn: Int

    public init(name: String, shape: [Int], role: TensorRole, fanIn: Int) {
        self.name = name; self.shape = shape; self.role = role; self.fanIn = fanIn
    }
}

extension QwenVLConfig {
    /// Every tensor of the BF16 checkpoint, in `state_dict` order (module registration order of the
    /// official modeling code). The official release's shard map (`bf16.index.json`) is reproduced
    /// by cutting this list with transformers' `shard_checkpoint` at 2 GB; the test suite checks it.
    public func bf16TensorSpecs() -> [QwenVLTensorSpec] {
        var t: [QwenVLTensorSpec] = []
        func lin(_ n: String, _ out: Int, _ inp: Int) { t.append(.init(name: n, shape: [out, inp], role: .linear, fanIn: inp)) }
        func norm(_ n: String, _ d: Int) { t.append(.init(name: n, shape: [d], role: .norm, fanIn: 0)) }
        func bias(_ n: String, _ d: Int) { t.append(.init(name: n, shape: [d], role: .bias, fanIn: 0)) }
        let h = hiddenSize, f = mlpWidth
        t.append(.init(name: "transformer.wte.weight", shape: [vocabSize, h], role: .embedding, fanIn: 0))
        for i in 0..<numHiddenLayers {
            let p = "transformer.h.\(i)."
            norm(p + "ln_1.weight", h)
            lin(p + "attn.c_attn.weight", 3 * h, h)
            bias(p + "attn.c_attn.bias", 3 * h)
            lin(p + "attn.c_proj.weight", h, h)
            norm(p + "ln_2.weight", h)
            lin(p + "mlp.w1.weight", f, h)
            lin(p + "mlp.w2.weight", f, h)
            lin(p + "mlp.c_proj.weight", h, f)
        }
        norm("transformer.ln_f.weight", h)
        let v = "transformer.visual.", w = visual.width, d = visual.outputDim, g = visual.resamplerGrid
        t.append(.init(name: v + "positional_embedding", shape: [g * g, w], role: .embedding, fanIn: 0))
        // `proj` is used as x @ proj ([in, out]): fan_in is shape[0].
        t.append(.init(name: v + "proj", shape: [d, d], role: .linear, fanIn: d))
        let ps = visual.patchSize
        t.append(.init(name: v + "conv1.weight", shape: [w, 3, ps, ps], role: .linear, fanIn: 3 * ps * ps))
        norm(v + "ln_pre.weight", w); bias(v + "ln_pre.bias", w)
        for l in 0..<visual.layers {
            let p = v + "transformer.resblocks.\(l)."
            norm(p + "ln_1.weight", w); bias(p + "ln_1.bias", w)
            norm(p + "ln_2.weight", w); bias(p + "ln_2.bias", w)
            lin(p + "attn.in_proj.weight", 3 * w, w); bias(p + "attn.in_proj.bias", 3 * w)
            lin(p + "attn.out_proj.weight", w, w); bias(p + "attn.out_proj.bias", w)
            lin(p + "mlp.c_fc.weight", visual.mlpWidth, w); bias(p + "mlp.c_fc.bias", visual.mlpWidth)
            lin(p + "mlp.c_proj.weight", w, visual.mlpWidth); bias(p + "mlp.c_proj.bias", w)
        }
        let a = v + "attn_pool."
        t.append(.init(name: a + "query", shape: [g * g, d], role: .embedding, fanIn: 0))
        t.append(.init(name: a + "pos_embed", shape: [g * g, d], role: .sinCos, fanIn: 0))
        lin(a + "kv_proj.weight", d, w)
        lin(a + "attn.in_proj_weight", 3 * d, d); bias(a + "attn.in_proj_bias", 3 * d)
        lin(a + "attn.out_proj.weight", d, d); bias(a + "attn.out_proj.bias", d)
        norm(a + "ln_q.weight", d); bias(a + "ln_q.bias", d)
        norm(a + "ln_kv.weight", d); bias(a + "ln_kv.bias", d)
        norm(v + "ln_post.weight", d); bias(v + "ln_post.bias", d)
        t.append(.init(name: "lm_head.weight", shape: [vocabSize, h], role: .lmHead, fanIn: h))
        return t
    }

    /// The five Linear layers of each LLM block that GPTQ quantizes (AutoGPTQ's qwen.py), in
    /// true-sequential order.
    public static let quantizedModules = ["attn.c_attn", "attn.c_proj", "mlp.w1", "mlp.w2", "mlp.c_proj"]
}

/// transformers' `shard_checkpoint`: walk tensors in order, start a new shard when adding the next
/// tensor would pass `maxShardSize` bytes (a tensor larger than the limit gets a shard of its own).
/// Returns the shard index of each tensor and the shard count.
public func shardAssignment(byteCounts: [Int], maxShardSize: Int) -> (shardOf: [Int], shards: Int) {
    var shardOf: [Int] = []
    var current = 0, size = 0, countInShard = 0
    for b in byteCounts {
        if size + b > maxShardSize && countInShard > 0 {
            current += 1; size = 0; countInShard = 0
        }
        shardOf.append(current); size += b; countInShard += 1
    }
    return (shardOf, byteCounts.isEmpty ? 0 : current + 1)
}
