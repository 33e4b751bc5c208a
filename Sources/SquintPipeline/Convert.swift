import CSquintKernels
import Foundation
import SquintFormats
import SquintModels
import SquintQuant
import SquintTensor
import SquintTokenizer

/// `squint convert`: BF16 Qwen-VL-Chat -> GPTQ Int4 with AutoGPTQ's semantics (SPEC §5.1), on a CPU.
///
/// The driver, step by step as `BaseGPTQForCausalLM.quantize` does it:
/// 1. every calibration pair is rendered to tokens, its image goes through the ViT + resampler and
///    the spliced embeddings (the input of block 0) are stored, one sequence per sample (batch 1);
/// 2. block by block, for each true-sequential group [c_attn] [c_proj] [w1, w2] [mlp.c_proj], the
///    block runs on every sample while each group module's input is added to its Hessian (one
///    `add_batch` per sequence); each module is quantized by `fasterquant` and replaced by its
///    fake-quantized weight, so later groups see earlier ones quantized;
/// 3. the quantized block runs once more on every sample; its outputs are the next block's inputs.
///
/// w1 and w2 read the same input, so their Hessians are identical: one is accumulated and used for
/// both (the same float32 operations AutoGPTQ performs twice).
///
/// Memory: the source stays mapped; RAM holds one block's fake-quantized weights, its Hessians and
/// the activations the budget allows (the rest is read back from zstd files). State is saved after
/// every block in a work folder beside the output (`.NAME.squint-convert`), so `--resume` continues
/// an interrupted run and writes the same bytes.
public enum Converter {
    /// Recorded in the output's provenance (no timestamps: outputs are deterministic).
    public static let toolVersion = "squint 0.1"

    /// The true-sequential groups of a Qwen block, in order (SPEC §5.1).
    public static let sequentialGroups: [[QwenLM.BlockLinear]] = [[.cAttn], [.cProj], [.w1, .w2], [.mlpProj]]

    /// Where a run keeps its resume state for output `output`.
    public static func workFolder(for output: String) -> String { WorkFolder<BlockProgress>.path(for: output) }

    /// After a failed run (disk full, a bad image found late, ...): what the work folder still holds
    /// and how to continue, or nil when nothing was saved.
    public static func resumeHint(for output: String) -> String? {
        let work = workFolder(for: output)
        // Every kind of run's state starts with the common part (ResumeState).
        guard let state = try? WorkFolder<BlockProgress>.read("\(work)/state.json") else { return nil }
        let what = state.blocksDone == 1 ? "1 finished block is" : "\(state.blocksDone) finished blocks are"
        return "\(state.blocksDone == 0 ? "the calibration activations are" : what) saved in \(work): "
            + "fix the problem and run the same command with --resume to continue, or delete that folder to start over"
    }

    /// Runs a conversion (or a repack of an AutoGPTQ checkpoint into SQ4). On error nothing is left
    /// at the output; the work folder keeps the blocks finished so far (for --resume).
    /// `writeProgress` shows the output's bytes being written (by default a "write" bar whenever there
    /// is a `progress` bar).
    public static func run(_ o: ConvertOptions, progress: ProgressBar? = nil, writeProgress: ProgressBar? = nil) throws -> ConvertResult {
        let t0 = Date()
        let fm = FileManager.default
        let dest = (o.output as NSString).standardizingPath
        if fm.fileExists(atPath: dest) && !o.force {
            // Outputs appear complete or not at all, so an existing one with --resume is a finished run.
            if o.resume { throw ConvertError.workState(path: dest, problem: "already complete: there is nothing to resume (pass --force to convert again)") }
            throw FormatError.exists(path: dest)
        }
        let parent = Paths.parent(of: dest)
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw FormatError.io(path: dest, message: "parent folder \(parent) does not exist")
        }
        // A folder we cannot write to is found before the input is verified (minutes on a 19 GB model).
        if access(parent, W_OK) != 0 {
            let reason = String(cString: strerror(errno)).lowercased()
            throw FormatError.io(path: workFolder(for: dest), message: "cannot create the work folder: \(reason)")
        }
        let opened = try CheckpointOpener.open(o.model)
        if o.verifyChecksums {
            // Torch zip entries (and SQ4 tensors) carry CRC-32s: a flipped bit is caught before hours of work.
            let bar = progress == nil ? nil : ProgressBar(label: "verify", unit: .bytes)
            try Checksums.verify(opened.file, threads: Threads.count, progress: bar.map { b in { @Sendable done, total in b.update(done, total) } })
            bar?.finish()
        }
        let configPath = "\(opened.folder)/config.json"
        guard let config = opened.config, let configData = fm.contents(atPath: configPath) else {
            throw ConvertError.source(path: configPath, problem: "no config.json next to the weights")
        }
        let configJSON = try configData.withUnsafeBytes { try StrictJSON.parseObject($0, path: configPath, what: "config.json") }
        if opened.quantization != nil || opened.file.tensors.contains(where: { $0.name.hasSuffix(".qweight") }) {
            return try ConvertRepack.run(o, opened: opened, config: config, configJSON: configJSON, started: t0)
        }
        try o.validate(inFeatures: [config.hiddenSize, config.mlpWidth])

        let vocabPath = try findVocab(o.vocab, folder: opened.folder)
        let tokenizer = try QwenTokenizer(vocabularyFile: vocabPath)
        let tiktokenSHA = try sha256Hex(file: vocabPath)
        let sourceSHA = try sourceChecksum(opened)
        let calib = o.method == .gptq
            ? try CalibrationSet(path: o.calibration!, tokenizer: tokenizer, maxSamples: o.maxSamples, maxTokens: config.seqLength) : nil
        for w in calib?.warnings ?? [] { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }

        let fingerprint = [Converter.toolVersion, "source \(sourceSHA)", "calib \(calib?.sha256 ?? "none") max \(o.maxSamples ?? -1)",
                           "method \(o.method.rawValue) bits \(o.bits) group \(o.groupSize) sym \(o.sym) desc_act \(o.descAct)",
                           "static \(o.staticGroups) damp \(o.dampPercent) hinv \(o.hinvPrecision.rawValue)"].joined(separator: "; ")
        let folder = try WorkFolder<ConvertWorkState>(output: dest, fingerprint: fingerprint, resume: o.resume, force: o.force)
        let work = folder.path
        var state = folder.saved
        // A run that fails before its first state.json (a bad image, a model that does not bind) did
        // no work worth keeping: it leaves no work folder, so the corrected command needs no --force.
        func discardFreshWork<T>(_ body: () throws -> T) throws -> T {
            do { return try body() } catch {
                if folder.fresh { folder.remove() }
                throw error
            }
        }
        let resumedFrom = state?.blocksDone
        removeStaleTemporaries(for: dest)

        let model = try discardFreshWork { try QwenVLModel(config: config, weights: opened.file) }
        let L = config.numHiddenLayers, h = config.hiddenSize
        let n = calib?.samples.count ?? 0
        let passes = o.method == .gptq ? sequentialGroups.count + 1 : 0
        let totalUnits = (o.method == .gptq ? n + L * (passes * n + 5) : L * 5)
        var doneUnits = 0
        var stageSeconds: [String: Double] = [:]
        // The ETA weighs each unit by its estimated FLOPs (ConvertWork): one image through the ViT
        // costs as much as ~100 samples through one block of Qwen-7B, and the GPTQ solves between
        // passes have no unit of their own.
        let cost = ConvertWork(config: config, method: o.method, tokens: calib?.samples.map(\.tokens.count) ?? [])
        var doneWork = 0.0
        func tick(_ detail: String, work: Double = 0) {
            doneUnits += 1; doneWork += work
            progress?.update(doneUnits, totalUnits, detail: detail, work: doneWork, workTotal: cost.total)
        }
        var spilled = 0
        // The store a block's outputs went to is the next block's inputs: handed on, its RAM copies
        // spare reading the samples back from disk. Budget shares: inputs and outputs 1/4 each, the
        // block's scratch stores the other half (Converter.quantizeBlock).
        var carried: ActivationStore? = nil

        if let st = state {
            doneUnits = o.method == .gptq ? n + st.blocksDone * (passes * n + 5) : st.blocksDone * 5
            doneWork = cost.calibration + Double(st.blocksDone) * cost.block
        }
        // Verification, the source checksum and binding are done: the rate counts from here.
        progress?.restartClock(done: doneUnits, work: doneWork)

        // 1. Calibration: block-0 inputs of every sample.
        if state == nil {
            try discardFreshWork {
                let tc = Date()
                let tokens = calib?.samples.map(\.tokens.count) ?? []
                if let calib {
                    let store = try ActivationStore(folder: "\(work)/acts-0", hidden: h, tokens: tokens, budget: o.memoryBudget / 4)
                    carried = store
                    for (i, s) in calib.samples.enumerated() {
                        let px: FloatTensor
                        do { px = try Runner.pixelValues([s.imagePath])! } catch {
                            throw ConvertError.calibrationImage(path: calib.path, line: s.line, image: s.image, problem: "\(error)")
                        }
                        let features = try model.vision.encode(pixelValues: px)
                        let x = try model.language.embed(ids: s.tokens.map { Int32($0) }, imageFeatures: features)
                        try store.put(i, x.data)
                        tick("calibration \(i + 1)/\(n): ViT + embeddings", work: cost.image)
                    }
                    spilled = max(spilled, store.spilledBytes)
                }
                releasePages(of: opened.file) { $0.hasPrefix("transformer.visual.") || $0 == "transformer.wte.weight" }
                state = ConvertWorkState(fingerprint: fingerprint, blocksDone: 0, tokens: tokens, log: [])
                try folder.write(state!)
                stageSeconds["calibration", default: 0] += Date().timeIntervalSince(tc)
            }
        }
        var st = state!

        // 2-3. Block by block.
        let qconfig = try QuantizerConfig(bits: o.bits, symmetric: o.sym, perChannel: true)
        var gopts = GPTQOptions(quantizer: qconfig, blockSize: 128, percDamp: Float(o.dampPercent), groupSize: o.groupSize,
                                actOrder: o.descAct, staticGroups: o.staticGroups)
        gopts.hinvPrecision = o.hinvPrecision
        for l in st.blocksDone..<L {
            let prefix = "transformer.h.\(l)."
            let inputs = o.method == .gptq
                ? try carried ?? ActivationStore(folder: "\(work)/acts-\(l)", hidden: h, tokens: st.tokens, budget: o.memoryBudget / 4) : nil
            let outputs = o.method == .gptq
                ? try ActivationStore(folder: "\(work)/acts-\(l + 1)", hidden: h, tokens: st.tokens, budget: o.memoryBudget / 4) : nil
            let (packed, logs, scratchSpilled) = try quantizeBlock(l, model: model, weights: opened.file, inputs: inputs, outputs: outputs,
                                                   options: o, gptq: gopts, quantizer: qconfig,
                                                   stageSeconds: &stageSeconds, cost: cost, tick: tick)
            spilled = max(spilled, (inputs?.spilledBytes ?? 0) + (outputs?.spilledBytes ?? 0) + scratchSpilled)
            try writeBlockFile("\(work)/block-\(l).safetensors", prefix: prefix, packed: packed)
            releasePages(of: opened.file) { $0.hasPrefix(prefix) }
            st.blocksDone = l + 1
            st.log += logs
            try folder.write(st)
            try? fm.removeItem(atPath: "\(work)/acts-\(l)")
            carried = outputs
            try o.afterBlock?(l)
        }

        // Output.
        let tw = Date()
        progress?.finish()
        let wbar = writeProgress ?? (progress == nil ? nil : ProgressBar(label: "write", unit: .bytes))
        let wrote: ((Int, Int) -> Void)? = wbar.map { b in { done, total in b.update(done, total) } }
        defer { wbar?.finish() }
        let blockFiles = try (0..<L).map { try SafetensorsFile(path: "\(work)/block-\($0).safetensors") }
        let calibText = calib?.summary ?? "none (round to nearest)"
        let written: [String]
        let logPath: String
        switch o.format {
        case .squint:
            let header = SQ4Header(config: configJSON,
                                   quantization: SQ4Quantization(bits: o.bits, groupSize: o.groupSize, sym: o.sym, descAct: o.descAct,
                                                                 staticGroups: o.staticGroups, dampPercent: o.dampPercent,
                                                                 trueSequential: true, method: o.method == .gptq ? .gptq : .rtn),
                                   tokenizer: SQ4Tokenizer(qwenTiktokenSHA256: tiktokenSHA, vocabTensor: ConvertOutput.vocabularyTensor),
                                   provenance: SQ4Provenance(source: (opened.folder as NSString).lastPathComponent, sourceSHA256: sourceSHA,
                                                             calibration: calibText, tool: toolVersion),
                                   generationConfig: try DecoderOutputs.parseJSONFile("\(opened.folder)/generation_config.json"))
            // The vocabulary travels inside the file, so `squint run model.sq4` needs nothing beside it.
            try ConvertOutput.writeSQ4(to: dest, overwrite: o.force, header: header, config: config, source: opened.file,
                                       blockFiles: blockFiles, vocabulary: Array(try Data(contentsOf: URL(fileURLWithPath: vocabPath))),
                                       written: wrote)
            written = [dest]
            logPath = dest + ".log.json"
        case .autogptq:
            let staging = "\(work)/output"
            try? fm.removeItem(atPath: staging)
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: false)
            var files = try ConvertOutput.writeAutoGPTQ(folder: staging, options: o, config: config, configJSON: configJSON,
                                                        source: opened.file, blockFiles: blockFiles, progress: wrote)
            if let g = fm.contents(atPath: "\(opened.folder)/generation_config.json") {
                try AtomicFileWriter.write(Array(g), to: "\(staging)/generation_config.json", overwrite: false); files.append("generation_config.json")
            }
            try AtomicFileWriter.write(Array(try Data(contentsOf: URL(fileURLWithPath: vocabPath))), to: "\(staging)/qwen.tiktoken", overwrite: false)
            files.append("qwen.tiktoken")
            written = files.sorted().map { "\(dest)/\($0)" }
            logPath = "\(dest)/convert_log.json"
        }
        stageSeconds["write", default: 0] += Date().timeIntervalSince(tw)
        var result = ConvertResult(output: dest, format: o.format.rawValue, method: o.method.rawValue, mode: "quantized",
                                   files: written, log: logPath, samples: n, tokens: st.tokens.reduce(0, +), blocks: L,
                                   resumedFromBlock: resumedFrom, modules: st.log, peakRSSBytes: peakRSSBytes(),
                                   spilledBytes: spilled, seconds: Date().timeIntervalSince(t0), stageSeconds: stageSeconds)
        result.peakRSSBytes = peakRSSBytes()
        if o.format == .autogptq {
            // The log goes into the staging folder before the rename: the output folder appears at its
            // path complete, convert_log.json included, or not at all (issue 17).
            let staging = "\(work)/output"
            try writeLog(result, calibration: calibText, to: "\(staging)/convert_log.json", overwrite: false)
            try o.beforePublish?(staging)
            // Replacing an old output (only with --force) and the rename are one step for Ctrl-C.
            let placed = try CommitGate.commit(to: dest) { () throws -> Bool in
                if fm.fileExists(atPath: dest) { try fm.removeItem(atPath: dest) }
                return rename(staging, dest) == 0
            }
            guard placed else {
                throw FormatError.io(path: dest, message: "cannot move the finished folder into place: \(String(cString: strerror(errno)))")
            }
            folder.remove()
        } else {
            folder.remove()
            try writeLog(result, calibration: calibText, to: logPath, overwrite: true)
        }
        progress?.finish()
        return result
    }

    /// Quantizes block `l` of `model` in place of AutoGPTQ's per-layer loop body: per sequential
    /// group, one pass over the samples in `inputs` accumulating the group's Hessians, then
    /// `fasterquant` (or RTN when `inputs` is nil) and the fake-quantized weight swapped in; finally
    /// the quantized block runs on every sample into `outputs`. The block's original layers are put
    /// back before returning (the fake-quantized float32 copies are freed).
    static func quantizeBlock(_ l: Int, model: QwenVLModel, weights: TensorFile, inputs: ActivationStore?,
                              outputs: ActivationStore?, options o: ConvertOptions, gptq gopts: GPTQOptions,
                              quantizer qconfig: QuantizerConfig, stageSeconds: inout [String: Double],
                              cost: ConvertWork? = nil, tick: (String, Double) -> Void) throws
        -> (packed: [(QwenLM.BlockLinear, AutoGPTQPacking.Packed)], logs: [ConvertModuleLog], scratchSpilled: Int) {
        let L = model.config.numHiddenLayers, h = model.config.hiddenSize, f = model.config.mlpWidth
        let n = inputs?.tokens.count ?? 0
        let prefix = "transformer.h.\(l)."
        var originals: [QwenLM.BlockLinear: any LinearLayer] = [:]
        var packed: [(QwenLM.BlockLinear, AutoGPTQPacking.Packed)] = []
        var logs: [ConvertModuleLog] = []
        // Debugging aid for parity work (docs/QUANTIZING.md): SQUINT_DEBUG_DUMP=DIR writes each block's
        // calibration inputs as raw little-endian float32 files DIR/block<l>_sample<i>.f32 [tokens, hidden].
        if let dir = ProcessInfo.processInfo.environment["SQUINT_DEBUG_DUMP"], let inputs {
            for i in 0..<n { let d = try inputs.get(i); try d.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: "\(dir)/block\(l)_sample\(i).f32")) } }
        }
        defer { for (m, lin) in originals { model.language.replaceLinear(layer: l, m, with: lin) } }
        // Each group's pass resumes where the previous one stopped (QwenLM.blockFrom), from activations
        // kept per sample: the attention output (c_proj's input, after [c_attn]), the residual after
        // attention (after [c_proj]) and mlp.c_proj's input (after [w1, w2]). Together the passes cost
        // one block forward instead of ~2.4, with bit-identical results. Scratch stores: RAM within a
        // share of --memory-budget, zstd files beyond it, removed when the block is done.
        let budget = o.memoryBudget
        let tokens = inputs?.tokens ?? []
        let scratchFolder = (inputs?.folder ?? "") + "-scratch"
        let attnOut = inputs == nil ? nil : try ActivationStore(folder: scratchFolder + "/attn", hidden: h, tokens: tokens, budget: budget / 8, persistent: false)
        let residual = inputs == nil ? nil : try ActivationStore(folder: scratchFolder + "/residual", hidden: h, tokens: tokens, budget: budget / 8, persistent: false)
        let mlpIn = inputs == nil ? nil : try ActivationStore(folder: scratchFolder + "/mlp", hidden: f, tokens: tokens, budget: budget / 4, persistent: false)
        defer { if inputs != nil { try? FileManager.default.removeItem(atPath: scratchFolder) } }
        for group in sequentialGroups {
            var hessians: [QwenLM.BlockLinear: Hessian] = [:]
            var passSeconds = 0.0
            if let inputs, let attnOut, let residual, let mlpIn {
                // One Hessian per distinct input: w2 reads exactly what w1 reads.
                let observed: [QwenLM.BlockLinear] = group == [.w1, .w2] ? [.w1] : group
                let box = HessianBox()
                for m in observed { box.h[m] = Hessian(columns: model.language.linear(layer: l, m).inFeatures) }
                let capture: QwenLM.BlockLinear? = group == [.cProj] ? .cProj : group == [.mlpProj] ? .mlpProj : nil
                model.language.linearInputObserver = { layer, m, x, tokens in
                    guard layer == l, box.error == nil else { return }
                    if m == capture { box.captured = Array(UnsafeBufferPointer(start: x, count: tokens * (m == .mlpProj ? f : h))) }
                    guard var hh = box.h[m] else { return }
                    box.h[m] = nil   // keep the matrix uniquely referenced while it is updated
                    let t = Date()
                    defer { box.seconds += Date().timeIntervalSince(t) }
                    do { try hh.addBatch(Array(UnsafeBufferPointer(start: x, count: tokens * hh.columns)), tokens: tokens) } catch {
                        box.error = error
                    }
                    box.h[m] = hh
                }
                defer { model.language.linearInputObserver = nil }
                let tp = Date()
                // Only as far as the group's input: the rest of the block would not change H.
                let last = observed.last!
                for i in 0..<n {
                    switch group {
                    case [.cAttn], [.cProj]:
                        var x = FloatTensor(shape: [tokens[i], h], data: try inputs.get(i))
                        model.language.blockInputs(l, &x, upTo: last)
                        if group == [.cProj] { try attnOut.put(i, box.takeCaptured()) }
                    case [.w1, .w2]:
                        var x = FloatTensor(shape: [tokens[i], h], data: try inputs.get(i))
                        model.language.blockFrom(l, &x, start: .cProj, input: try attnOut.get(i), upTo: last)
                        attnOut.drop(i)
                        try residual.put(i, x.data)        // x + c_proj(attention), before ln_2
                    default:
                        var x = FloatTensor(shape: [tokens[i], h], data: try residual.get(i))
                        model.language.blockFrom(l, &x, start: .w1, input: nil, upTo: last)
                        try mlpIn.put(i, box.takeCaptured())
                    }
                    tick("block \(l + 1)/\(L) \(group.map(\.rawValue).joined(separator: "+")) inputs, sample \(i + 1)/\(n)", cost?.pass(group, sample: i) ?? 0)
                }
                if let e = box.error { throw e }
                passSeconds = Date().timeIntervalSince(tp)
                stageSeconds["hessian", default: 0] += box.seconds
                stageSeconds["group_forward", default: 0] += passSeconds - box.seconds
                hessians = box.h
                if group == [.w1, .w2] { hessians[.w2] = hessians[.w1] }
            }
            for m in group {
                let name = prefix + m.rawValue
                let wView = try weights.view(name + ".weight")
                let rows = wView.info.shape[0], cols = wView.info.shape[1]
                let W = Kernels.floats(wView)                    // [out, in]
                let bias: [Float]? = weights.info(name + ".bias") != nil ? Kernels.floats(try weights.view(name + ".bias")) : nil
                let tq = Date()
                let q: QuantizedWeight
                var damp = 0.0
                if let H = hessians.removeValue(forKey: m) {
                    damp = absoluteDamp(diagonal: H.diagonal, percent: gopts.percDamp)
                    // Handed over without copies where nothing else holds them (w1 shares its Hessian with w2).
                    q = try GPTQ.fasterquant(weight: consume W, rows: rows, columns: cols, hessian: H.takeMatrix(), options: gopts)
                } else {
                    q = try RTN.quantize(weight: W, rows: rows, columns: cols, groupSize: o.groupSize, quantizer: qconfig)
                    tick("block \(l + 1)/\(L) \(m.rawValue) rtn", cost?.solve(m) ?? 0)
                }
                if inputs != nil { tick("block \(l + 1)/\(L) \(m.rawValue) quantized", cost?.solve(m) ?? 0) }
                let quantSeconds = Date().timeIntervalSince(tq)
                stageSeconds["gptq", default: 0] += quantSeconds
                logs.append(ConvertModuleLog(module: name, shapeOutIn: [rows, cols], nsamples: n, tokens: inputs?.tokens.reduce(0, +) ?? 0,
                                             avgLoss: n > 0 ? q.avgLoss(nsamples: n) : 0, lossSum: q.lossSum,
                                             dampPercent: o.dampPercent, damp: damp, hessianSeconds: passSeconds, quantSeconds: quantSeconds))
                do {
                    packed.append((m, try AutoGPTQPacking.pack(q: q.q, scale: q.scale, zero: q.zero, gIdx: q.gIdx, bias: bias,
                                                               inFeatures: cols, outFeatures: rows, groups: q.groups, bits: o.bits)))
                } catch let e as QuantError {
                    throw ConvertError.invalidOption("\(name): \(e)")
                }
                if inputs != nil {
                    // fasterquant writes Q into layer.weight: later groups and the final pass see it.
                    let mem = InMemoryTensorFile(path: "<fake-quantized \(name)>")
                    try mem.add(name: name + ".weight", shape: [rows, cols], f32: q.q)
                    if originals[m] == nil { originals[m] = model.language.linear(layer: l, m) }
                    model.language.replaceLinear(layer: l, m, with: Linear(weight: try mem.view(name + ".weight"), bias: bias))
                }
            }
        }
        // The quantized block's outputs are the next block's inputs: residual + mlp.c_proj(its input).
        if let inputs, let outputs, let residual, let mlpIn {
            let tf = Date()
            for i in 0..<n {
                var x = FloatTensor(shape: [inputs.tokens[i], h], data: try residual.get(i))
                model.language.blockFrom(l, &x, start: .mlpProj, input: try mlpIn.get(i), upTo: nil)
                residual.drop(i); mlpIn.drop(i)
                try outputs.put(i, x.data)
                tick("block \(l + 1)/\(L) quantized block outputs, sample \(i + 1)/\(n)", cost?.outputs(sample: i) ?? 0)
            }
            stageSeconds["block_outputs", default: 0] += Date().timeIntervalSince(tf)
        }
        return (packed, logs, (attnOut?.spilledBytes ?? 0) + (residual?.spilledBytes ?? 0) + (mlpIn?.spilledBytes ?? 0))
    }

    /// A killed run can leave the atomic writer's hidden temporary file (`.NAME.tmp-PID-N`) beside
    /// the output; those of processes that no longer exist are removed when a run starts.
    static func removeStaleTemporaries(for dest: String) {
        let fm = FileManager.default
        let parent = Paths.parent(of: dest)
        let prefix = ".\((dest as NSString).lastPathComponent).tmp-"
        for name in (try? fm.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count).prefix { $0 != "-" }), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? fm.removeItem(atPath: "\(parent)/\(name)") }
        }
    }

    /// Drops this process's resident pages of the mapped tensors `which` selects (they stay in the
    /// page cache and fault back in if read again), so RSS follows the working set (one block)
    /// rather than every block the run has walked through. Only for views of a file mapping.
    static func releasePages(of file: TensorFile, _ which: (String) -> Bool) {
        for t in file.tensors where which(t.name) {
            if let v = try? file.view(t.name) { releasePages(v) }
        }
    }

    static func releasePages(_ v: TensorView) {
        guard v.owner is MappedFile, let base = v.bytes.baseAddress else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: base) + page - 1) / page * page    // whole pages inside the tensor only
        let end = (Int(bitPattern: base) + v.bytes.count) / page * page
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, Int32(MADV_DONTNEED)) }
    }

    final class HessianBox {
        var h: [QuantSlot: Hessian] = [:]
        var error: Error?
        var seconds = 0.0
        /// The input of the module a pass stops at, copied for the next pass.
        var captured: [Float]?
        func takeCaptured() -> [Float] { defer { captured = nil }; return captured! }
        typealias QuantSlot = QwenLM.BlockLinear
    }

    /// percdamp · mean(diag H) after the dead-column fix, as `fasterquant` adds it (for the log).
    static func absoluteDamp(diagonal: [Float], percent: Float) -> Double {
        var s = 0.0
        for d in diagonal { s += Double(d == 0 ? 1 : d) }
        return Double(percent * (Float(s) / Float(diagonal.count)))
    }

    static func findVocab(_ given: String?, folder: String) throws -> String {
        let candidates = [given, "\(folder)/qwen.tiktoken", ProcessInfo.processInfo.environment["SQUINT_VOCAB"]].compactMap { $0 }
        guard let v = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw ConvertError.source(path: "\(folder)/qwen.tiktoken",
                                      problem: "no tokenizer vocabulary: put qwen.tiktoken in the model folder, pass --vocab FILE or set SQUINT_VOCAB")
        }
        return v
    }

    /// SHA-256 of the source checkpoint: of its index file when sharded (the index names every
    /// tensor's shard), else of the single weight file.
    static func sourceChecksum(_ c: OpenedCheckpoint) throws -> String {
        let fm = FileManager.default
        for index in ["model.safetensors.index.json", "pytorch_model.bin.index.json"] where fm.fileExists(atPath: "\(c.folder)/\(index)") {
            return try sha256Hex(file: "\(c.folder)/\(index)")
        }
        if let first = c.file.tensors.first { return try sha256Hex(file: first.file) }
        return try sha256Hex(file: c.folder)
    }

    /// The five packed modules of one block, AutoGPTQ names and layout (bias always present, zeros
    /// where the module has none, as AutoGPTQ's QuantLinear buffer).
    static func writeBlockFile(_ path: String, prefix: String, packed: [(QwenLM.BlockLinear, AutoGPTQPacking.Packed)]) throws {
        var tensors: [SafetensorsWriter.Tensor] = []
        var bytes: [String: [UInt8]] = [:]
        func add<T>(_ name: String, _ dtype: DType, _ shape: [Int], _ v: [T]) {
            tensors.append(.init(name: name, dtype: dtype, shape: shape))
            bytes[name] = v.withUnsafeBytes { Array($0) }
        }
        for (m, p) in packed {
            let n = prefix + m.rawValue
            add(n + ".qweight", .i32, [AutoGPTQPacking.packedCount(p.inFeatures, bits: p.bits), p.outFeatures], p.qweight.map { $0.littleEndian })
            add(n + ".qzeros", .i32, [p.groups, AutoGPTQPacking.packedCount(p.outFeatures, bits: p.bits)], p.qzeros.map { $0.littleEndian })
            add(n + ".scales", .f16, [p.groups, p.outFeatures], p.scales.map { $0.littleEndian })
            add(n + ".g_idx", .i32, [p.inFeatures], p.gIdx.map { $0.littleEndian })
            add(n + ".bias", .f16, [p.outFeatures], p.bias.map { $0.littleEndian })
        }
        try SafetensorsWriter(tensors: tensors, metadata: ["format": "pt"], path: path).write(to: path, overwrite: true) { t in bytes[t.name]! }
    }

    static func writeLog(_ r: ConvertResult, calibration: String, to path: String, overwrite: Bool) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFileWriter.write(Array(try e.encode(r)), to: path, overwrite: overwrite)
    }
}
