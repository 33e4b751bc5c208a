import ArgumentParser
import Foundation
import SquintPipeline
import SquintFormats
import SquintModels
import SquintQuant

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a BF16 Qwen-VL-Chat to GPTQ Int4 (AutoGPTQ semantics) on a CPU, or repack an AutoGPTQ checkpoint.",
        discussion: """
        Calibration pairs (one JSON object per line: image, prompt, caption; image paths relative to \
        the jsonl's folder) run through the whole model; blocks are then quantized one by one with \
        AutoGPTQ's true-sequential GPTQ. Defaults are the official Qwen-VL-Chat-Int4 settings. State is \
        saved after every block beside the output: an interrupted run continues with --resume and \
        writes the same bytes. Nothing is written at OUT until the result is complete, and an \
        existing OUT is never replaced without --force. An AutoGPTQ checkpoint as MODEL_DIR is \
        repacked into an SQ4 file without re-quantising. With --format gguf, MODEL is a Qwen2/Llama \
        GGUF file or Hugging Face folder calibrated on a plain text (--calib-text) and OUT a GGUF whose \
        block linears hold the GPTQ codes as Q4_0 (or Q4_1); a folder's config and tokenizer become GGUF \
        metadata as llama.cpp's converter writes them. A Qwen2/Llama GGUF file or Hugging Face folder with --format squint (one \
        self-contained SQ4 file: config, tokenizer, chat template, generation config inside) or --format \
        autogptq (a transformers GPTQ folder) is quantized from --calib-text the same way, group 128 by \
        default; text models save their state after every block too (--resume). See docs/QUANTIZING.md.

        Exit codes: 0 written; 1 bad input, the output exists, or the run failed (the message says what was kept \
        and how to resume); 64 bad command line.

        Example: squint convert tiny-bf16 --calib fixtures/calibration/pairs.jsonl -o tiny.sq4
        """)

    @Argument(help: "The source model folder (BF16 Qwen-VL-Chat, or an AutoGPTQ Int4 checkpoint to repack), or a Qwen2/Llama GGUF file or Hugging Face folder (text models; --format gguf takes either too).")
    var model: String

    @Option(name: .customLong("calib"), help: "Calibration pairs (jsonl). Required for --method gptq.")
    var calib: String?

    @Option(name: .customLong("calib-text"), help: "Text models (Qwen2/Llama): calibration text (plain UTF-8), cut into --samples windows of --sample-tokens tokens.")
    var calibText: String?

    @Option(help: "Text models: calibration windows (the first N of the text).")
    var samples: Int = 32

    @Option(name: .customLong("sample-tokens"), help: "Text models: tokens per calibration window.")
    var sampleTokens: Int = 512

    @Option(name: .customLong("gguf-type"), help: "--format gguf: block-linear type, q4_0 (symmetric) or q4_1 (asymmetric: the group's min/max grid).")
    var ggufType: String = "q4_0"

    @Option(name: .customLong("grid"), help: "Text models, symmetric: the 4-bit grid, autogptq (default; scale 2·max|w|/15) or llama-q4_0 (d = signed max / -8, as llama-quantize; also for --format squint/autogptq).")
    var gridOption: String?
    var grid: String { gridOption ?? "autogptq" }

    @Option(help: ArgumentHelp("Text models, --method gptq: a named set of options. recommended = --grid llama-q4_0 --desc-act --scale-search --scale-weights imatrix --hessian-shrink 0.5 (+ --static-groups for SQ4/AutoGPTQ): lower KL and perplexity than llama.cpp's importance-matrix Q4_0 on three models (docs/QUALITY.md). Options it sets may be repeated with the same value, not another.", valueName: "name"))
    var preset: String?

    @Option(name: .shortAndLong, help: "Output: an SQ4 file (--format squint), a folder (--format autogptq) or a Qwen2/Llama GGUF file or Hugging Face folder (text models; --format gguf takes either too).")
    var output: String

    @Option(help: "squint (one SQ4 file), autogptq (safetensors shards + configs, AutoGPTQ v1 layout) or gguf (Qwen2/Llama GGUF file or Hugging Face folder in, Q4_0/Q4_1 GGUF out).")
    var format: String = "squint"

    @Option(help: "Bits per weight (AutoGPTQ bits). squint: 4; autogptq: 2, 3, 4 or 8 (Squint runs 4-bit files; others are for AutoGPTQ/transformers).")
    var bits: Int = 4

    @Option(name: .customLong("group-size"), help: "Inputs per scale group (AutoGPTQ group_size); -1 = one group per row. Default 128 (gguf: 32, the only size Q4_0 holds).")
    var groupSize: Int?

    @Flag(help: "Symmetric (default, sym=True) or asymmetric grid.")
    var symmetry: Symmetry = .sym

    @Flag(name: .customLong("desc-act"), help: "Quantize columns in decreasing Hessian-diagonal order (desc_act).")
    var descAct = false

    @Flag(name: .customLong("static-groups"), help: "Find all group parameters before error feedback (static_groups).")
    var staticGroups = false

    @Option(help: "Relative damping of the Hessian diagonal (damp_percent).")
    var damp: Double = 0.01

    @Option(help: "gptq, or rtn (round to nearest: no calibration).")
    var method: String = "gptq"

    @Option(help: ArgumentHelp("Text models, --method gptq: block linears to round to nearest instead (comma list of q, k, v, o, gate, up, down; qkv and gate_up for fused layouts), e.g. --rtn down.", valueName: "linears"))
    var rtn: String?

    /// `--rtn` as linears (nil when a name is unknown).
    var rtnLinears: Set<DecoderLinear>? {
        guard let rtn else { return [] }
        let names = rtn.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let ls = names.compactMap(DecoderLinear.init(rawValue:))
        return ls.count == names.count && !ls.isEmpty ? Set(ls) : nil
    }

    @Option(name: .customLong("max-samples"), help: "Use only the first N calibration pairs.")
    var maxSamples: Int?

    @Option(name: .customLong("memory-budget"), help: "RAM for calibration activations (e.g. 4GB): a quarter each for a block's inputs and outputs, half for those kept between its passes; the rest waits on disk, zstd-compressed.")
    var memoryBudget: String = "4GB"

    @Option(help: "qwen.tiktoken (default: the model folder's, then $SQUINT_VOCAB).")
    var vocab: String?

    @Option(help: ArgumentHelp("Inverse-Hessian factor precision: mixed (default), double or float.", visibility: .hidden))
    var hinv: String = "mixed"

    @Flag(help: "Continue an interrupted run from its saved state.")
    var resume = false

    @Flag(help: "Replace an existing output and discard a previous run's state.")
    var force = false

    @Flag(name: .customLong("no-verify"), help: "Skip the checksum check of the source (torch zip entry CRC-32s; checked by default before anything runs: one read of the weights).")
    var noVerify = false

    @Flag(name: .customLong("scale-search"), help: "Text models, --method gptq with static groups (--desc-act for GGUF): choose each group's scale to minimise its diag(H)-weighted rounding error (as llama.cpp's importance-weighted Q4_0) instead of from its largest weight.")
    var scaleSearch = false

    @Option(name: .customLong("scale-weights"), help: "With --scale-search: what each rounding error is weighted by: hessian (default; diag(H)) or imatrix (diag(H)·sqrt(σ²+w²), σ² the row's mean square weight, as llama.cpp's importance-weighted Q4_0).")
    var scaleWeightsOption: String?
    var scaleWeights: String { scaleWeightsOption ?? "hessian" }

    @Option(name: .customLong("hessian-shrink"), help: "Text models, --method gptq: multiply the off-diagonal entries of each Hessian by (1 - A) before damping, A in 0...1 (default 0: GPTQ; 1: importance-weighted rounding to nearest). A regulariser when calibration tokens are few per input column.")
    var hessianShrinkOption: Double?
    var hessianShrink: Double { hessianShrinkOption ?? 0 }

    @OptionGroup var threading: ThreadOptions

    @Flag(help: "Print the result and the per-module log as JSON.")
    var json = false

    enum Symmetry: String, EnumerableFlag { case sym, asym }

    /// `--preset NAME`: fills in the options the preset stands for (before any other check, so those
    /// checks see them); an option the user gave with another value is refused, never overridden.
    mutating func applyPreset() throws {
        guard let preset else { return }
        guard preset == "recommended" else { throw ValidationError("--preset must be recommended, not '\(preset)'") }
        guard format == "gguf" || isTextDecoder else { throw ValidationError("--preset applies to text models (Qwen2/Llama) only") }
        guard method == "gptq" else { throw ValidationError("--preset recommended is a GPTQ recipe: not with --method \(method)") }
        if format == "gguf" && ggufType != "q4_0" { throw ValidationError("--preset recommended writes Q4_0: not with --gguf-type \(ggufType)") }
        if symmetry != .sym { throw ValidationError("--preset recommended is symmetric: not with --asym") }
        func conflict(_ option: String, _ given: String, _ wanted: String) -> ValidationError {
            ValidationError("--preset recommended sets \(option) \(wanted): drop \(option) \(given) or the preset")
        }
        if let g = gridOption, g != "llama-q4_0" { throw conflict("--grid", g, "llama-q4_0") }
        if let w = scaleWeightsOption, w != "imatrix" { throw conflict("--scale-weights", w, "imatrix") }
        if let a = hessianShrinkOption, a != 0.5 { throw conflict("--hessian-shrink", String(a), "0.5") }
        gridOption = "llama-q4_0"; scaleWeightsOption = "imatrix"; hessianShrinkOption = 0.5
        descAct = true; scaleSearch = true
        if format != "gguf" { staticGroups = true }   // GGUF's groups are static with --desc-act already
    }

    mutating func validate() throws {
        try applyPreset()
        if resume && force { throw ValidationError("--resume and --force contradict each other") }
        if rtn != nil {
            guard format == "gguf" || isTextDecoder else { throw ValidationError("--rtn applies to text models (Qwen2/Llama) only") }
            guard method == "gptq" else { throw ValidationError("--rtn picks linears to round to nearest inside a GPTQ run; with --method rtn every linear is") }
            guard rtnLinears != nil else {
                throw ValidationError("--rtn takes a comma list of \(DecoderLinear.allCases.map(\.rawValue).joined(separator: ", ")), not '\(rtn!)'")
            }
        }
        if hessianShrink != 0 {
            guard format == "gguf" || isTextDecoder else { throw ValidationError("--hessian-shrink applies to text models (Qwen2/Llama) only") }
            guard method == "gptq" else { throw ValidationError("--hessian-shrink needs --method gptq (it changes GPTQ's Hessian)") }
            guard hessianShrink.isFinite && hessianShrink >= 0 && hessianShrink <= 1 else {
                throw ValidationError("--hessian-shrink must be in 0...1, got \(hessianShrink)")
            }
        }
        if scaleWeights != "hessian" {
            guard GPTQOptions.ScaleWeights(rawValue: scaleWeights) != nil else {
                throw ValidationError("--scale-weights must be hessian or imatrix, not '\(scaleWeights)'")
            }
            guard scaleSearch else { throw ValidationError("--scale-weights needs --scale-search") }
        }
        if scaleSearch {
            guard format == "gguf" || isTextDecoder else { throw ValidationError("--scale-search applies to text models (Qwen2/Llama) only") }
            guard method == "gptq" else { throw ValidationError("--scale-search needs --method gptq (it weights by the Hessian)") }
            guard format == "gguf" ? descAct : staticGroups else {
                throw ValidationError("--scale-search needs static groups: --desc-act for GGUF output, --static-groups for SQ4/AutoGPTQ")
            }
        }
        if format == "gguf" {
            guard let target = DecoderConvert.GGUFTarget(rawValue: ggufType) else {
                throw ValidationError("--gguf-type must be q4_0 or q4_1, not '\(ggufType)'")
            }
            guard method == "gptq" || method == "rtn" else { throw ValidationError("--method must be gptq or rtn, not '\(method)'") }
            if method == "gptq" && calibText == nil { throw ValidationError("--calib-text FILE.txt is required for --method gptq --format gguf") }
            guard DecoderConvert.Options.Grid(rawValue: grid) != nil else { throw ValidationError("--grid must be autogptq or llama-q4_0") }
            if target == .q4_1 && grid != "autogptq" { throw ValidationError("--grid applies to --gguf-type q4_0 only (q4_1 uses the group's min/max)") }
            guard samples > 0 && sampleTokens > 1 else { throw ValidationError("--samples must be positive and --sample-tokens at least 2") }
            return
        }
        if isTextDecoder {
            guard format == "squint" || format == "autogptq" else { throw ValidationError("--format must be squint, autogptq or gguf, not '\(format)'") }
            guard method == "gptq" || method == "rtn" else { throw ValidationError("--method must be gptq or rtn, not '\(method)'") }
            guard bits == 4 else { throw ValidationError("--bits must be 4 for text models") }
            if method == "gptq" && calibText == nil { throw ValidationError("--calib-text FILE.txt is required for --method gptq on a text model") }
            guard samples > 0 && sampleTokens > 1 else { throw ValidationError("--samples must be positive and --sample-tokens at least 2") }
            guard DecoderConvert.Options.Grid(rawValue: grid) != nil else { throw ValidationError("--grid must be autogptq or llama-q4_0") }
            if grid != "autogptq" && symmetry != .sym { throw ValidationError("--grid llama-q4_0 is a symmetric grid: it cannot be combined with --asym") }
            return
        }
        if grid != "autogptq" { throw ValidationError("--grid applies to text models (Qwen2/Llama) only") }
        guard ConvertOptions.OutputFormat(rawValue: format) != nil else { throw ValidationError("--format must be squint, autogptq or gguf, not '\(format)'") }
        guard ConvertOptions.Method(rawValue: method) != nil else { throw ValidationError("--method must be gptq or rtn, not '\(method)'") }
        guard SquintPipeline.Synth.parseSize(memoryBudget) != nil else { throw ValidationError("--memory-budget '\(memoryBudget)' is not a size (examples: 4GB, 512MB)") }
        if method == "gptq" && calib == nil { throw ValidationError("--calib PAIRS.jsonl is required for --method gptq") }
    }

    /// A Qwen2/Llama GGUF file or Hugging Face folder (or --calib-text given): DecoderOutputs.swift.
    var isTextDecoder: Bool { format != "gguf" && (calibText != nil || TextModel.canOpen(model)) }

    func run() throws {
        threading.apply()
        if format == "gguf" { return try runGGUF() }
        if isTextDecoder { return try runTextDecoder() }
        try runReportingErrors {
            var o = ConvertOptions(model: model, calibration: calib, output: output)
            o.format = .init(rawValue: format)!
            o.method = .init(rawValue: method)!
            o.bits = bits; o.groupSize = groupSize ?? 128; o.sym = symmetry == .sym; o.descAct = descAct
            o.staticGroups = staticGroups; o.dampPercent = damp; o.maxSamples = maxSamples
            o.memoryBudget = SquintPipeline.Synth.parseSize(memoryBudget)!
            guard o.setHinvPrecision(hinv) else { throw ValidationError("--hinv must be mixed, double or float") }
            o.vocab = vocab; o.resume = resume; o.force = force; o.verifyChecksums = !noVerify
            stopCleanlyOnInterrupt(output: output, message: {
                "convert: interrupted; nothing was written at \(output)"
                    + (Converter.resumeHint(for: output).map { "; " + $0 } ?? "")
            }) {
                removeOwnTemporaries(besides: output)
                // An AutoGPTQ output is staged inside the work folder, which --resume clears.
            }
            var r = try withResumeNote { try Converter.run(o, progress: ProgressBar(label: "convert", unit: .items("steps"))) }
            r.sizes = try? ConvertSizes.measure(source: model, output: r.output, files: Array(Set(r.files + (r.log.map { [$0] } ?? []))))
            if json {
                print(try jsonString(r))
            } else {
                let resumed = r.resumedFromBlock.map { " (resumed at block \($0))" } ?? ""
                print("wrote \(r.output) (\(r.format), \(r.mode) with \(r.method), \(r.blocks) blocks, \(r.samples) samples, \(r.tokens) tokens)\(resumed)")
                print(Self.moduleTable(r.modules), terminator: "")
                if let s = r.sizes {
                    for l in s.summaryLines(seconds: r.seconds, peakRSSBytes: r.peakRSSBytes) { print(l) }
                } else {
                    print(String(format: "time: %.1f s, peak memory (max RSS) %.1f MiB", r.seconds, Double(r.peakRSSBytes) / 1048576))
                }
                if let log = r.log { print("log:         \(log)") }
            }
        }
    }

    /// Runs a conversion; a failure during the work (disk full, a file that turns out unreadable) also
    /// says what was kept and how to continue. Ctrl-C's message already says how to resume; refusals
    /// before any work get no note.
    func withResumeNote<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch {
            let refusal: Bool
            switch error {
            case ConvertError.interrupted, ConvertError.workState, ConvertError.invalidOption, FormatError.exists: refusal = true
            default: refusal = false
            }
            waitIfInterrupted()
            if !refusal, let hint = Converter.resumeHint(for: output) {
                printError("\(userMessage(error))\nnote: \(hint)")
                throw ExitCode(1)
            }
            throw error
        }
    }

    /// The per-module log as a table with aligned columns.
    static func moduleTable(_ modules: [ConvertModuleLog]) -> String {
        guard !modules.isEmpty else { return "" }
        let w = max(6, modules.map(\.module.count).max() ?? 0)
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        var t = "  " + pad("module", w) + "  " + lpad("avg_loss", 12) + "  " + lpad("damp", 10) + "  " + lpad("hessian s", 9) + "  " + lpad("quant s", 8) + "\n"
        for m in modules {
            t += "  " + pad(m.module, w) + "  " + lpad(m.method ?? String(format: "%.6g", m.avgLoss), 12) + "  " + lpad(String(format: "%.4g", m.damp), 10)
                + "  " + lpad(String(format: "%.2f", m.hessianSeconds), 9) + "  " + lpad(String(format: "%.2f", m.quantSeconds), 8) + "\n"
        }
        return t
    }

    /// A text-model conversion's request from the options every output format shares.
    func decoderRequest(defaultGroupSize: Int) -> DecoderConvert.Request {
        var r = DecoderConvert.Request(model: model, calibrationText: calibText, output: output)
        r.samples = samples; r.sampleTokens = sampleTokens; r.force = force; r.resume = resume
        r.options.method = method == "rtn" ? .rtn : .gptq
        r.options.groupSize = groupSize ?? defaultGroupSize
        r.options.descAct = descAct
        r.options.dampPercent = Float(damp)
        r.options.grid = DecoderConvert.Options.Grid(rawValue: grid)!
        r.options.rtnLinears = rtnLinears ?? []
        r.options.scaleSearch = scaleSearch
        r.options.scaleWeights = GPTQOptions.ScaleWeights(rawValue: scaleWeights) ?? .hessian
        r.options.hessianShrink = Float(hessianShrink)
        return r
    }

    func runTextDecoder() throws {
        try runReportingErrors {
            stopCleanlyOnInterrupt(output: output, message: {
                "convert: interrupted; nothing was written at \(output)" + (Converter.resumeHint(for: output).map { "; " + $0 } ?? "")
            }) {
                removeOwnTemporaries(besides: output)
            }
            var r = decoderRequest(defaultGroupSize: 128)
            r.options.staticGroups = staticGroups; r.options.sym = symmetry == .sym
            let res = try withResumeNote { try DecoderOutputs.run(r, format: format == "autogptq" ? .autogptq : .squint,
                                                                  progress: ProgressBar(label: "convert", unit: .items("steps"))) }
            if json { print(try jsonString(res)); return }
            print("wrote \(res.output) (\(res.format), \(res.method), \(res.blocks) blocks, \(res.samples) samples, \(res.tokens) tokens)"
                + (res.resumedFromBlock.map { " (resumed at block \($0))" } ?? ""))
            print(Self.moduleTable(res.modules), terminator: "")
            print(String(format: "time: %.1f s, peak memory (max RSS) %.1f MiB", res.seconds, Double(res.peakRSSBytes) / 1048576))
        }
    }

    func runGGUF() throws {
        try runReportingErrors {
            stopCleanlyOnInterrupt(output: output, message: {
                "convert: interrupted; nothing was written at \(output)" + (Converter.resumeHint(for: output).map { "; " + $0 } ?? "")
            }) {
                removeOwnTemporaries(besides: output)
            }
            var r = decoderRequest(defaultGroupSize: 32)
            r.options.target = DecoderConvert.GGUFTarget(rawValue: ggufType)!
            let res = try withResumeNote { try DecoderConvert.run(r, progress: ProgressBar(label: "convert", unit: .items("steps"))) }
            if json { print(try jsonString(res)); return }
            print("wrote \(res.output) (gguf \(res.ggufType), \(res.method), \(res.blocks) blocks, \(res.samples) samples, \(res.tokens) tokens)"
                + (res.resumedFromBlock.map { " (resumed at block \($0))" } ?? ""))
            print(Self.moduleTable(res.modules), terminator: "")
            print(String(format: "peak RSS %.1f MiB, %.1f s; log: %@", Double(res.peakRSSBytes) / 1048576, res.seconds, res.output + ".log.json"))
        }
    }
}
