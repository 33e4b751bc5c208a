import Foundation
import SquintFormats
import SquintModels
import SquintQuant
import SquintTensor

/// GPTQ (or RTN) for the text decoders (`DecoderLM`: Qwen2, Llama), calibrated on plain text, written
/// as a GGUF file whose block linears hold the GPTQ codes as Q4_0 blocks (docs/QUANTIZING.md
/// "Text models to GGUF").
///
/// Q4_0 stores `x = d * (q - 8)` with a float16 `d` per 32 weights of a row: exactly AutoGPTQ's
/// symmetric 4-bit grid (zero 8) at group size 32, once the group scale is rounded to float16 before
/// any code is chosen (`QuantizerConfig.scaleRounding = .float16`). The file then decodes to GPTQ's
/// fake-quantized weight bit for bit; nothing is rounded a second time.
///
/// Q4_1 (`--gguf-type q4_1`) stores `x = (d * q) + m` with float16 `d` and `m` per 32 weights: the
/// asymmetric grid of llama.cpp's Q4_1 (m = the group's minimum, d = (max - min)/15), both rounded to
/// float16 before any code is chosen (`QuantizerConfig.minOffset`), so it too decodes bit for bit.
public enum DecoderConvert {
    public enum Method: String, Sendable, Codable { case gptq, rtn }
    public enum GGUFTarget: String, Sendable, Codable {
        case q4_0, q4_1
        var ggmlType: GGMLType { self == .q4_0 ? .q4_0 : .q4_1 }
        /// llama.cpp's `general.file_type`: MOSTLY_Q4_0 = 2, MOSTLY_Q4_1 = 3.
        var fileType: UInt32 { self == .q4_0 ? 2 : 3 }
    }

    public struct Options: Sendable {
        public var method: Method = .gptq
        /// Columns per scale group; Q4_0 needs 32.
        public var groupSize = 32
        /// Act-order. Q4_0 has no g_idx, so it runs with static groups (group parameters found on the
        /// original weight in column order before error feedback; AutoGPTQ's static_groups).
        public var descAct = false
        public var dampPercent: Float = 0.01
        public var target: GGUFTarget = .q4_0
        /// The Q4_0 grid: AutoGPTQ's (scale 2·max|w|/15) or llama.cpp's Q4_0 one (d = signed max / -8).
        /// Q4_1 has one grid (min/max of the group, as llama.cpp's Q4_1) and refuses `.q4_0`.
        public var grid: Grid = .autogptq
        public enum Grid: String, Sendable, Codable { case autogptq, q4_0 = "llama-q4_0" }
        public var threads = max(1, min(2, ProcessInfo.processInfo.activeProcessorCount))
        /// Where the codes go (DecoderOutputs.swift): GGUF blocks need group 32, a symmetric grid and no
        /// g_idx; SQ4 and AutoGPTQ take any group size (-1: one per row), `sym` false and act-order
        /// with or without `staticGroups`.
        public var container: Container = .gguf
        public enum Container: String, Sendable, Codable { case gguf, squint, autogptq }
        public var sym = true
        public var staticGroups = false
        /// With `.gptq`: block linears quantized by round-to-nearest all the same (`--rtn down`); their
        /// group's Hessian is not collected when every member is here. docs/QUALITY.md: on the 1.5B,
        /// GPTQ with RTN's `ffn_down` beats GPTQ everywhere and RTN everywhere.
        public var rtnLinears: Set<DecoderLinear> = []
        /// With `.gptq` and static groups on a symmetric grid: each group's scale chosen to minimise its
        /// rounding error weighted by diag(H) (`GPTQOptions.scaleSearch`), as importance-weighted
        /// Q4_0 in llama.cpp chooses it, instead of from the group's largest weight.
        public var scaleSearch = false
        /// What `scaleSearch` weights rounding errors by (`GPTQOptions.ScaleWeights`): diag(H), or
        /// llama.cpp's diag(H)·sqrt(σ² + w²).
        public var scaleWeights: GPTQOptions.ScaleWeights = .hessian
        /// With `.gptq`: H's off-diagonal entries scaled by (1 - hessianShrink) before damping
        /// (`GPTQOptions.hessianShrink`; 0 = GPTQ, 1 = importance-weighted rounding to nearest).
        public var hessianShrink: Float = 0
        /// Whether groups are found before error feedback: GGUF blocks have no g_idx, so there act-order
        /// implies static groups; SQ4/AutoGPTQ follow `staticGroups`.
        var staticGroupsInEffect: Bool { container == .gguf ? descAct : staticGroups }
        /// `rtnLinears` by name, sorted (provenance and resume fingerprint).
        var rtnNames: [String] { rtnLinears.map(\.rawValue).sorted() }
        /// "" or e.g. "; round to nearest: down; scales searched (diag(H)-weighted)" (provenance strings).
        var methodNote: String {
            guard method == .gptq else { return "" }
            return (rtnLinears.isEmpty ? "" : "; round to nearest: " + rtnNames.joined(separator: ", "))
                + (scaleSearch ? "; scales searched (\(scaleWeights.formula)-weighted)" : "")
                + (hessianShrink > 0 ? "; H shrunk toward its diagonal by \(hessianShrink)" : "")
        }
        public init() {}

        func check() throws {
            guard hessianShrink.isFinite && hessianShrink >= 0 && hessianShrink <= 1 else {
                throw ConvertError.invalidOption("--hessian-shrink must be in 0...1, got \(hessianShrink)")
            }
            if hessianShrink > 0 && method != .gptq {
                throw ConvertError.invalidOption("--hessian-shrink needs --method gptq (it changes GPTQ's Hessian)")
            }
            if scaleWeights != .hessian && !scaleSearch {
                throw ConvertError.invalidOption("--scale-weights \(scaleWeights.rawValue) needs --scale-search")
            }
            if scaleSearch {
                let symmetric = container == .gguf ? target == .q4_0 : sym
                guard method == .gptq && staticGroupsInEffect && symmetric && groupSize != -1 else {
                    throw ConvertError.invalidOption("--scale-search needs --method gptq with static groups (--desc-act for GGUF, --static-groups for SQ4/AutoGPTQ) on a symmetric grid with groups")
                }
            }
            if container != .gguf {
                guard groupSize == -1 || (groupSize > 0 && groupSize % 32 == 0) else {
                    throw ConvertError.invalidOption("--group-size \(groupSize): SQ4 and AutoGPTQ outputs need -1 or a multiple of 32")
                }
                guard dampPercent.isFinite && dampPercent >= 0 else { throw ConvertError.invalidOption("damp must be finite and >= 0") }
                return
            }
            guard groupSize == 32 else {
                throw ConvertError.invalidOption("--group-size \(groupSize): a \(target.ggmlType.name) block holds 32 weights, so GGUF \(target.ggmlType.name) output needs --group-size 32")
            }
            if target == .q4_1 && grid != .autogptq {
                throw ConvertError.invalidOption("--grid \(grid.rawValue) is a Q4_0 grid; Q4_1 always uses the group's min/max")
            }
            guard dampPercent.isFinite && dampPercent >= 0 else { throw ConvertError.invalidOption("damp must be finite and >= 0") }
        }

        var quantizer: QuantizerConfig {
            get throws {
                if container == .gguf && target == .q4_1 {
                    var c = try QuantizerConfig(bits: 4, symmetric: false, perChannel: true, scaleRounding: .float16)
                    c.minOffset = true
                    return c
                }
                var c = try QuantizerConfig(bits: 4, symmetric: container == .gguf || sym, perChannel: true, scaleRounding: .float16)
                c.signedMaxScale = grid == .q4_0
                return c
            }
        }
    }

    /// One quantized block linear.
    public struct Module {
        public let layer: Int
        public let linear: DecoderLinear
        /// `weight.q` is empty for the blocks a conversion with `releaseFinishedBlocks` has finished:
        /// `weight.fakeQuantized(minOffset:)` gives it back from the codes.
        public internal(set) var weight: QuantizedWeight
        public let log: ConvertModuleLog
    }

    // MARK: Calibration

    /// The calibration rule: the whole text tokenized with the model's tokenizer (no special tokens),
    /// cut into consecutive, non-overlapping windows of `length` tokens from the start; the first
    /// `count` windows are used (a shorter tail is dropped). When the model adds a BOS token, each
    /// window's first token is replaced by it. This is the text `llama-imatrix -c LENGTH --chunks
    /// COUNT` sees, so both methods calibrate on the same tokens.
    public static func calibrationWindows(tokens: [Int32], count: Int, length: Int, bos: Int32?) throws -> [[Int32]] {
        guard count > 0 && length > 1 else { throw ConvertError.invalidOption("--samples and --sample-tokens must be positive (tokens >= 2)") }
        let available = tokens.count / length
        guard available > 0 else {
            throw ConvertError.invalidOption("the calibration text has \(tokens.count) tokens, fewer than one window of \(length)")
        }
        return (0..<min(count, available)).map { k in
            var w = Array(tokens[(k * length)..<((k + 1) * length)])
            if let bos { w[0] = bos }
            return w
        }
    }

    // MARK: Quantization

    /// Quantizes every block linear of `model` in place: block by block, with AutoGPTQ's true-sequential
    /// groups ([q, k, v], [o], [gate, up], [down]; fused layouts [qkv], [o], [gate_up], [down]). For
    /// each group one pass of the block over the calibration windows accumulates the group's Hessian
    /// (`linearInputObserver`), `GPTQ.fasterquant` quantizes each member, and the fake-quantized
    /// weight replaces the layer, so later groups and the next block see quantized outputs. RTN needs
    /// no windows. `progress(done, total, detail)`.
    ///
    /// With `work`, each finished block is saved (DecoderWork) and a run whose work folder holds
    /// finished blocks continues after them (`onResume(stepsDone)` first); `afterBlock(l)` runs once
    /// block l is saved (tests inject failures there).
    ///
    /// With `releaseFinishedBlocks` (what `convert` does) memory stays bounded: once a block's outputs
    /// are computed its linears go back to the original layers (views of the source file) and its
    /// modules keep codes and scales only (`q` dropped where the codes give it back). The model is then
    /// the original, not the fake-quantized one, when this returns. Without it (the public entry) every
    /// block stays fake-quantized and every module keeps `q`.
    public static func quantize(model: DecoderLM, windows: [[Int32]], options o: Options,
                                progress: ((Int, Int, String) -> Void)? = nil) throws -> [Module] {
        try quantize(model: model, windows: windows, options: o, work: nil, progress: progress)
    }

    static func quantize(model: DecoderLM, windows: [[Int32]], options o: Options, work: DecoderWork?,
                         releaseFinishedBlocks release: Bool = false, afterBlock: ((Int) throws -> Void)? = nil, onResume: ((Int) -> Void)? = nil,
                         progress: ((Int, Int, String) -> Void)? = nil) throws -> [Module] {
        try o.check()
        let qconfig = try o.quantizer
        var gopts = GPTQOptions(quantizer: qconfig, blockSize: 128, percDamp: o.dampPercent, groupSize: o.groupSize,
                                actOrder: o.descAct, staticGroups: o.staticGroupsInEffect)
        gopts.threads = o.threads
        gopts.scaleSearch = o.scaleSearch
        gopts.scaleWeights = o.scaleWeights
        gopts.hessianShrink = o.hessianShrink
        let d = model.dims, L = d.layers
        let groups: [[DecoderLinear]] = [d.fusedQKV ? [.qkv] : [.q, .k, .v], [.o], d.fusedGateUp ? [.gateUp] : [.gate, .up], [.down]]
        let linears = groups.joined()
        if let missing = o.rtnLinears.first(where: { !linears.contains($0) }) {
            throw ConvertError.invalidOption("--rtn \(missing.rawValue): this model's block linears are "
                + linears.map(\.rawValue).joined(separator: ", "))
        }
        let n = o.method == .gptq ? windows.count : 0
        if o.method == .gptq && n == 0 { throw ConvertError.invalidOption("GPTQ needs at least one calibration window") }
        /// A group needs its Hessian unless every member is rounded to nearest.
        func observed(_ g: [DecoderLinear]) -> Bool { o.method == .gptq && !g.allSatisfy(o.rtnLinears.contains) }
        let perBlock = o.method == .gptq ? (groups.filter(observed).count + 1) * n : linears.count
        let total = L * perBlock
        var done = 0
        func tick(_ s: String) { done += 1; progress?(done, total, s) }

        var xs: [FloatTensor] = []
        let tokenCount = windows.prefix(n).reduce(0) { $0 + $1.count }
        var modules: [Module] = []
        var first = 0
        if let work, let saved = try work.load(minOffset: qconfig.minOffset, windows: n, materialize: !release) {
            modules = saved.modules; xs = saved.inputs; first = work.blocksDone
            if !release { for m in modules { try replaceWithFakeQuantized(model, layer: m.layer, m.linear, m.weight.q) } }
            done = first * perBlock
            onResume?(done)
        } else {
            xs = try windows.prefix(n).map { try model.embed($0) }
        }
        for l in first..<L {
            let originals = release ? linears.compactMap { m in model.linear(layer: l, m).map { (m, $0) } } : []
            for group in groups {
                var hessian: Hessian?
                var passSeconds = 0.0
                if observed(group), let first = group.first, let lin = model.linear(layer: l, first) {
                    let box = ObserverBox(Hessian(columns: lin.inFeatures))
                    model.linearInputObserver = { layer, m, x, tokens in
                        guard layer == l, m == first, box.error == nil else { return }
                        do { try box.h.addBatch(Array(UnsafeBufferPointer(start: x, count: tokens * box.h.columns)), tokens: tokens) } catch {
                            box.error = error
                        }
                    }
                    defer { model.linearInputObserver = nil }
                    let t = Date()
                    for i in 0..<n {
                        // Only as far as the group's input: the rest of the block cannot change H.
                        var x = xs[i]
                        model.block(l, &x, upTo: first)
                        tick("block \(l + 1)/\(L) \(group.map(\.rawValue).joined(separator: "+")) sample \(i + 1)/\(n)")
                    }
                    if let e = box.error { throw e }
                    passSeconds = Date().timeIntervalSince(t)
                    hessian = box.h
                }
                for m in group {
                    guard let lin = model.linear(layer: l, m) as? Linear else {
                        throw ConvertError.invalidOption("block \(l) \(m.rawValue) is not a dense float layer (already quantized?)")
                    }
                    let rows = lin.outFeatures, cols = lin.inFeatures
                    let W = Kernels.floats(lin.weightView)
                    let tq = Date()
                    var damp = 0.0
                    let q: QuantizedWeight
                    let rtn = hessian == nil || o.rtnLinears.contains(m)
                    if let H = hessian, !rtn {
                        damp = Converter.absoluteDamp(diagonal: H.diagonal, percent: o.dampPercent)
                        q = try GPTQ.fasterquant(weight: W, rows: rows, columns: cols, hessian: H.matrix, options: gopts)
                    } else {
                        q = try RTN.quantize(weight: W, rows: rows, columns: cols, groupSize: o.groupSize, quantizer: qconfig)
                    }
                    let name = DecoderTensorNaming.gguf.module(l, m) + ".weight"
                    var log = ConvertModuleLog(module: name, shapeOutIn: [rows, cols], nsamples: n, tokens: tokenCount,
                                               avgLoss: n > 0 && !rtn ? q.avgLoss(nsamples: n) : 0, lossSum: q.lossSum,
                                               dampPercent: Double(o.dampPercent), damp: damp, hessianSeconds: passSeconds,
                                               quantSeconds: Date().timeIntervalSince(tq))
                    if rtn && o.method == .gptq { log.method = "rtn" }
                    if !rtn { log.hessianShrink = Double(o.hessianShrink) }
                    try replaceWithFakeQuantized(model, layer: l, m, q.q)
                    modules.append(Module(layer: l, linear: m, weight: q, log: log))
                    if o.method == .rtn { tick("block \(l + 1)/\(L) \(m.rawValue) rtn") }
                }
            }
            // The quantized block's outputs are the next block's inputs.
            for i in 0..<n {
                model.block(l, &xs[i])
                tick("block \(l + 1)/\(L) outputs sample \(i + 1)/\(n)")
            }
            if release {
                for k in modules.indices where modules[k].layer == l { modules[k].weight.dropFakeQuantized(minOffset: qconfig.minOffset) }
                for (m, original) in originals { model.replaceLinear(layer: l, m, with: original) }
            }
            try work?.save(block: l, modules: modules.filter { $0.layer == l }, inputs: xs, minOffset: qconfig.minOffset)
            try afterBlock?(l)
        }
        progress?(total, total, "done")
        return modules
    }

    /// Block `layer`'s linear `m` replaced by GPTQ's fake-quantized weight (same bias): later groups and
    /// blocks see quantized outputs.
    static func replaceWithFakeQuantized(_ model: DecoderLM, layer l: Int, _ m: DecoderLinear, _ q: [Float]) throws {
        guard let lin = model.linear(layer: l, m) as? Linear else {
            throw ConvertError.invalidOption("block \(l) \(m.rawValue) is not a dense float layer (already quantized?)")
        }
        let name = DecoderTensorNaming.gguf.module(l, m) + ".weight"
        let mem = InMemoryTensorFile(path: "<fake-quantized \(name)>")
        try mem.add(name: name, shape: [lin.outFeatures, lin.inFeatures], f32: q)
        model.replaceLinear(layer: l, m, with: Linear(weight: try mem.view(name), bias: lin.bias))
    }

    /// Quantizes `tm`'s model for the request `r` with resume state beside `r.output`: refuses an
    /// existing output (unless --force; with --resume it says the run is complete), continues a saved
    /// run with --resume, and removes the state once `write` has put the output in place.
    /// Returns `write`'s value and the block a resumed run started at (nil: from the start).
    static func quantizeResumable<T>(_ r: Request, model: DecoderLM, windows: [[Int32]], options o: Options, progress: ProgressBar?,
                                     write: ([Module]) throws -> T) throws -> (value: T, resumedFrom: Int?) {
        let work = try DecoderWork(output: r.output, fingerprint: try DecoderWork.fingerprint(model: r.model, options: o, windows: windows),
                                   resume: r.resume, force: r.force)
        let resumedFrom = work.blocksDone > 0 ? work.blocksDone : nil
        let modules: [Module]
        do {
            modules = try quantize(model: model, windows: windows, options: o, work: work, releaseFinishedBlocks: true, afterBlock: r.afterBlock,
                                   onResume: { progress?.restartClock(done: $0) }) { done, total, detail in
                progress?.update(done, total, detail: detail)
            }
        } catch { work.failed(); throw error }
        let result = try write(modules)
        work.remove()
        return (result, resumedFrom)
    }

    /// The output check every text-model conversion starts with.
    static func checkOutput(_ r: Request) throws {
        guard FileManager.default.fileExists(atPath: r.output) && !r.force else { return }
        if r.resume { throw ConvertError.workState(path: r.output, problem: "already complete: there is nothing to resume (pass --force to convert again)") }
        throw FormatError.exists(path: r.output)
    }

    final class ObserverBox {
        var h: Hessian
        var error: Error?
        init(_ h: Hessian) { self.h = h }
    }

    // MARK: Q4_0 blocks

    /// GPTQ's codes and float16-rounded scales as Q4_0 blocks, row by row ([rows, columns], 32
    /// columns per block). Requires symmetric 4-bit codes with zero 8, group size 32 and groups in
    /// column order (g_idx[c] = c / 32: plain GPTQ, or act-order with static groups); anything else
    /// is refused, as is a scale that is not exactly a float16.
    public static func q4_0Bytes(_ w: QuantizedWeight) throws -> [UInt8] {
        let rows = w.rows, cols = w.columns
        guard cols % 32 == 0, w.groups == cols / 32 else {
            throw ConvertError.invalidOption("Q4_0 needs 32-column groups; got \(w.groups) groups over \(cols) columns")
        }
        for c in 0..<cols where Int(w.gIdx[c]) != c / 32 {
            throw ConvertError.invalidOption("column \(c) is in group \(w.gIdx[c]), not \(c / 32): Q4_0 blocks cannot hold act-order groups")
        }
        let blocks = cols / 32
        var out = [UInt8](repeating: 0, count: rows * blocks * 18)
        for r in 0..<rows {
            for b in 0..<blocks {
                let s = w.scale[r * w.groups + b], z = w.zero[r * w.groups + b]
                let h = Float16(s)
                guard z == 8, Float(h) == s, s != 0, s.isFinite else {
                    throw ConvertError.invalidOption("row \(r) block \(b): scale \(s) / zero \(z) is not a Q4_0 (float16 d, zero 8) grid")
                }
                let o = (r * blocks + b) * 18
                out[o] = UInt8(h.bitPattern & 0xFF); out[o + 1] = UInt8(h.bitPattern >> 8)
                let base = r * cols + b * 32
                for j in 0..<16 {
                    let lo = w.codes[base + j], hi = w.codes[base + j + 16]
                    guard lo < 16 && hi < 16 else { throw ConvertError.invalidOption("code out of range at row \(r)") }
                    out[o + 2 + j] = lo | (hi << 4)
                }
            }
        }
        return out
    }

    // MARK: Q4_1 blocks

    /// GPTQ's codes with float16 scale `d` and offset `m` (`QuantizerConfig.minOffset`: the weight's
    /// `zero` holds m) as Q4_1 blocks, row by row: f16 d, f16 m, 16 bytes of nibbles (element j low,
    /// j + 16 high). Requires group size 32 in column order; refuses a scale or offset that is not
    /// exactly a float16, a zero scale and codes above 15.
    public static func q4_1Bytes(_ w: QuantizedWeight) throws -> [UInt8] {
        let rows = w.rows, cols = w.columns
        guard cols % 32 == 0, w.groups == cols / 32 else {
            throw ConvertError.invalidOption("Q4_1 needs 32-column groups; got \(w.groups) groups over \(cols) columns")
        }
        for c in 0..<cols where Int(w.gIdx[c]) != c / 32 {
            throw ConvertError.invalidOption("column \(c) is in group \(w.gIdx[c]), not \(c / 32): Q4_1 blocks cannot hold act-order groups")
        }
        let blocks = cols / 32
        var out = [UInt8](repeating: 0, count: rows * blocks * 20)
        for r in 0..<rows {
            for b in 0..<blocks {
                let s = w.scale[r * w.groups + b], m = w.zero[r * w.groups + b]
                let hd = Float16(s), hm = Float16(m)
                guard Float(hd) == s, Float(hm) == m, s > 0, s.isFinite, m.isFinite else {
                    throw ConvertError.invalidOption("row \(r) block \(b): scale \(s) / offset \(m) is not a Q4_1 (float16 d > 0, float16 m) grid")
                }
                let o = (r * blocks + b) * 20
                out[o] = UInt8(hd.bitPattern & 0xFF); out[o + 1] = UInt8(hd.bitPattern >> 8)
                out[o + 2] = UInt8(hm.bitPattern & 0xFF); out[o + 3] = UInt8(hm.bitPattern >> 8)
                let base = r * cols + b * 32
                for j in 0..<16 {
                    let lo = w.codes[base + j], hi = w.codes[base + j + 16]
                    guard lo < 16 && hi < 16 else { throw ConvertError.invalidOption("code out of range at row \(r)") }
                    out[o + 4 + j] = lo | (hi << 4)
                }
            }
        }
        return out
    }

    /// The blocks of `target` for one quantized weight.
    static func blockBytes(_ w: QuantizedWeight, _ target: GGUFTarget) throws -> [UInt8] {
        target == .q4_0 ? try q4_0Bytes(w) : try q4_1Bytes(w)
    }

    /// Reorders whole rows (each `rowBytes` long) from checkpoint order into llama.cpp's q/k order for
    /// `llama` files: GGUF row h·d + 2i + s holds checkpoint row h·d + s·d/2 + i.
    static func permuteRowsToGGUF(_ bytes: [UInt8], rows: Int, heads: Int, rowBytes: Int) -> [UInt8] {
        let d = rows / heads, half = d / 2
        var out = bytes
        for h in 0..<heads {
            for i in 0..<half {
                for s in 0..<2 {
                    let dst = h * d + 2 * i + s, src = h * d + s * half + i
                    out.replaceSubrange((dst * rowBytes)..<((dst + 1) * rowBytes), with: bytes[(src * rowBytes)..<((src + 1) * rowBytes)])
                }
            }
        }
        return out
    }

    // MARK: GGUF output

    /// Writes `source`'s model with the block linears replaced by `modules` (as `target`: Q4_0 or Q4_1).
    /// Other tensors as llama-quantize's Q4_0 / Q4_1 keeps them (checked on Qwen2.5-Coder-0.5B,
    /// docs/QUALITY.md): 1-D tensors (norms, biases) F32; `token_embd.weight` Q4_0 / Q4_1 with the
    /// reference round-to-nearest quantiser
    /// (llama.cpp's own, bit-identical) when the file has an `output.weight`, else Q8_0 (it is then
    /// the output matrix); `output.weight` Q8_0 (llama-quantize picks Q6_K, falling back to Q8_0 when
    /// the row length is not a multiple of 256, as for the 0.5B and SmolLM2; Squint does not write
    /// Q6_K, so it is Q8_0 always). Metadata is copied in order with `general.file_type` = 2
    /// (MOSTLY_Q4_0) or 3 (MOSTLY_Q4_1), `general.quantization_version` = 2 and a `squint.quantization`
    /// provenance key.
    public static func writeGGUF(source: GGUFFile, architecture: DecoderArchitecture, dims: DecoderDims, modules: [Module],
                                 target: GGUFTarget = .q4_0, provenance: String, to path: String, overwrite: Bool) throws {
        try writeGGUF(source: GGUFOutputSource(file: source), architecture: architecture, dims: dims, modules: modules,
                      target: target, provenance: provenance, to: path, overwrite: overwrite)
    }

    /// The same from any `GGUFOutputSource` (a GGUF file, or a Hugging Face folder's model).
    public static func writeGGUF(source: GGUFOutputSource, architecture: DecoderArchitecture, dims: DecoderDims, modules: [Module],
                                 target: GGUFTarget = .q4_0, provenance: String, to path: String, overwrite: Bool) throws {
        let naming = DecoderTensorNaming.gguf
        var byName: [String: Module] = [:]
        for m in modules { byName[naming.module(m.layer, m.linear) + ".weight"] = m }
        let w = GGUFWriter()
        var sawQV = false
        for kv in source.keyValues {
            switch kv.key {
            case "general.file_type": try w.add(key: kv.key, .uint32(target.fileType))
            case "general.quantization_version": try w.add(key: kv.key, .uint32(2)); sawQV = true
            default: try w.add(key: kv.key, kv.value)
            }
        }
        if source.value(forKey: "general.file_type") == nil { try w.add(key: "general.file_type", .uint32(target.fileType)) }
        if !sawQV { try w.add(key: "general.quantization_version", .uint32(2)) }
        try w.add(key: "squint.quantization", .string(provenance))
        let hasOutput = source.tensors.contains { $0.name == naming.lmHead }
        // Every block linear is written from its quantized module (llama's q/k rows are reordered there).
        let blockLinears = Set(dims.tensorTable(naming).compactMap { spec -> String? in
            if case .weight = spec.role { return spec.name } else { return nil }
        })
        var written = Set<String>()
        for t in source.tensors {
            let shape = t.shape
            if blockLinears.contains(t.name) && byName[t.name] == nil {
                throw ConvertError.invalidOption("\(t.name): no quantized module for this block linear")
            }
            if let m = byName[t.name] {
                guard shape == [m.weight.rows, m.weight.columns] else {
                    throw ConvertError.invalidOption("\(t.name): file shape \(shape) but quantized \([m.weight.rows, m.weight.columns])")
                }
                var bytes = try blockBytes(m.weight, target)
                if architecture.ggufPermutesQK && (m.linear == .q || m.linear == .k) {
                    bytes = permuteRowsToGGUF(bytes, rows: m.weight.rows, heads: m.linear == .q ? dims.heads : dims.kvHeads,
                                              rowBytes: m.weight.columns / 32 * target.ggmlType.blockBytes)
                }
                try w.addTensor(name: t.name, type: target.ggmlType, shape: shape, bytes: bytes)
                written.insert(t.name)
                continue
            }
            // llama-quantize's choice for a Q4_0/Q4_1 file: 1-D tensors F32; token_embd the target type
            // when there is an output.weight; the output layer (output.weight, else the tied token_embd)
            // Q6_K when its rows are whole 256-blocks, else Q8_0.
            let type: GGMLType
            if shape.count == 1 { type = .f32 }
            else if t.name == naming.embedding && hasOutput { type = target.ggmlType }
            else { type = (shape.last ?? 0) % 256 == 0 ? .q6_K : .q8_0 }
            if let stored = t.stored, stored.type == type {
                try w.addTensor(name: t.name, type: type, shape: shape, bytes: try stored.bytes())
            } else {
                try w.addTensor(name: t.name, type: type, shape: shape) {
                    let v = try t.floats()
                    guard let b = GGUFQuantize.quantize(type, v) else {
                        throw FormatError.invalid(path: source.path, what: "\(t.name): cannot encode as \(type.name)")
                    }
                    return b
                }
            }
        }
        let missing = Set(byName.keys).subtracting(written)
        guard missing.isEmpty else { throw ConvertError.invalidOption("no tensor in \(source.path) for \(missing.sorted().joined(separator: ", "))") }
        try w.write(to: path, overwrite: overwrite)
    }

    // MARK: The command

    public struct Request: Sendable {
        public var model: String
        public var calibrationText: String?
        public var output: String
        public var samples = 32
        public var sampleTokens = 512
        public var options = Options()
        public var force = false
        /// Continue the run saved beside the output (DecoderWork).
        public var resume = false
        /// Called once block l is saved (tests inject failures here).
        public var afterBlock: (@Sendable (Int) throws -> Void)? = nil
        public init(model: String, calibrationText: String?, output: String) {
            self.model = model; self.calibrationText = calibrationText; self.output = output
        }
    }

    public struct Result: Codable, Sendable {
        public var output: String
        public var method: String
        public var ggufType: String
        public var samples: Int
        public var tokens: Int
        public var blocks: Int
        public var modules: [ConvertModuleLog]
        public var seconds: Double
        public var peakRSSBytes: Int
        /// The block a `--resume` run started at (nil: it ran from the start).
        public var resumedFromBlock: Int? = nil
        enum CodingKeys: String, CodingKey {
            case output, method, samples, tokens, blocks, modules, seconds
            case ggufType = "gguf_type", peakRSSBytes = "peak_rss_bytes", resumedFromBlock = "resumed_from_block"
        }
    }

    /// `squint convert MODEL(.gguf | HF folder) --calib-text FILE -o OUT.gguf --format gguf`: opens the
    /// model (float32), builds the calibration windows, quantizes, writes OUT and OUT.log.json.
    public static func run(_ r: Request, progress: ProgressBar? = nil) throws -> Result {
        let t0 = Date()
        try checkOutput(r)
        try r.options.check()
        let tm = try TextModel.open(r.model)
        guard tm.model.quantization == .dense else {
            throw ConvertError.invalidOption("\(r.model) is already an Int4 model (\(tm.model.quantization.rawValue)); convert its float original")
        }
        // A GGUF's metadata and tokenizer are copied; a folder's are written as llama.cpp's converter would.
        let source = try tm.gguf.map(GGUFOutputSource.init(file:)) ?? GGUFOutputSource.folder(tm)
        var windows: [[Int32]] = []
        var calibName = "none (round to nearest)"
        if r.options.method == .gptq {
            guard let path = r.calibrationText else { throw ConvertError.invalidOption("--calib-text FILE.txt is required for --method gptq") }
            guard let data = FileManager.default.contents(atPath: path) else { throw FormatError.io(path: path, message: "cannot read the calibration text") }
            guard let text = String(data: data, encoding: .utf8) else { throw FormatError.invalid(path: path, what: "not UTF-8 text") }
            let ids = tm.tokenizer.encode(text, addSpecial: false, parseSpecial: false).map(Int32.init)
            let bos: Int32? = tm.tokenizer.addBOS ? tm.tokenizer.bosTokenID.map(Int32.init) : nil
            windows = try calibrationWindows(tokens: ids, count: r.samples, length: r.sampleTokens, bos: bos)
            calibName = "\((path as NSString).lastPathComponent): \(windows.count) windows x \(r.sampleTokens) tokens"
        }
        let o = r.options
        let (modules, resumedFrom) = try quantizeResumable(r, model: tm.model, windows: windows, options: o, progress: progress) { modules in
            progress?.finish()
            let grid = o.target == .q4_1 ? "llama-q4_1 (group min/max) bits 4 asym" : "\(o.grid.rawValue) bits 4 sym"
            let prov = "squint \(o.method.rawValue) \(o.target.rawValue): grid \(grid) group 32 desc_act \(o.descAct) static_groups \(o.descAct) "
                + "damp \(o.dampPercent) scale float16; source \((r.model as NSString).lastPathComponent); calibration \(calibName)\(o.methodNote)"
            try writeGGUF(source: source, architecture: tm.model.architecture, dims: tm.model.dims, modules: modules,
                          target: o.target, provenance: prov, to: r.output, overwrite: r.force)
            return modules
        }
        let result = Result(output: r.output, method: o.method.rawValue, ggufType: o.target.rawValue, samples: windows.count,
                            tokens: windows.reduce(0) { $0 + $1.count }, blocks: tm.model.dims.layers, modules: modules.map(\.log),
                            seconds: Date().timeIntervalSince(t0), peakRSSBytes: peakRSSBytes(), resumedFromBlock: resumedFrom)
        let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFileWriter.write(Array(try enc.encode(result)), to: r.output + ".log.json", overwrite: true)
        return result
    }
}
