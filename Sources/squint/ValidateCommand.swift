import ArgumentParser
import Foundation
import SquintModels
import SquintPipeline
import SquintFormats

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure how far a quantized model drifts from its original (Qwen-VL on image-caption pairs, text models on a text file).",
        discussion: """
        Qwen-VL (--eval PAIRS.jsonl): both models run on the same inputs with teacher forcing over each pair's prompt and caption \
        (the calibration rendering rule). Reported: KL(BF16 || Int4) per caption position (mean, \
        median, p99, max), top-1 / top-5 agreement, perplexity of each on the caption tokens, the \
        worst positions, the drift of the hidden state after every block and of the image features, \
        and how long the greedy continuations of the two models agree. See docs/VALIDATING.md.

        Text models (--text FILE; GGUF files or Hugging Face folders, e.g. F16 vs Q4_0): the windows \
        `squint perplexity` scores (--ctx, --chunks, its BOS rule), the same figures without greedy \
        continuations; the two models must share their tokenizer. --llama-base FILE.kld (one model): \
        Squint's logits against those llama-perplexity --kl-divergence-base stored for the same model \
        (KL(llama.cpp || Squint), same top-1; --text also checks the file's tokens against Squint's).

        Exit codes: 0 success (gate passed or no gate), 1 error (unreadable model, pairs, text or \
        .kld file, incompatible models or tokenizers), 4 gate failed (--max-kl / --min-top1), 64 bad command line.

        Without INT4, `validate BF16 --eval PAIRS --save-base FILE` records the BF16 side alone; then \
        `validate BF16 INT4 --eval PAIRS --base FILE` compares without running (or paging in) the BF16 \
        weights, so the two models are never in memory together (at full size 19.3 + 9.7 GB).

        Example: squint validate tiny-bf16 tiny.sq4 --eval fixtures/calibration/pairs.jsonl --report drift --max-kl 0.1
        Example: squint validate q05-f16.gguf q05-q4_0.gguf --text alice29.txt --chunks 10 --max-kl 0.1
        Example: squint validate q05-f16.gguf --llama-base q05-f16-alice-c512-10.kld --min-top1 0.99
        """)

    @Argument(help: "The original: a BF16 Qwen-VL folder (config.json, weights, qwen.tiktoken), or a text model (.gguf file or Hugging Face folder).")
    var bf16: String

    @Argument(help: "The quantized model: an SQ4 file or AutoGPTQ folder (Qwen-VL), or a text model (not with --llama-base).")
    var int4: String?

    @Option(help: "Qwen-VL: image-caption pairs, one JSON object a line: {\"image\", \"prompt\", \"caption\"}; image paths relative to this file.")
    var eval: String?

    @Option(help: "Text models: a UTF-8 text file, scored in the windows `squint perplexity` uses.")
    var text: String?

    @Option(help: "Text models: tokens per window (llama-perplexity's -c).")
    var ctx = 512

    @Option(help: "Text models: evaluate at most N windows (llama-perplexity's --chunks).")
    var chunks: Int?

    @Option(name: .customLong("llama-base"), help: "Compare Squint's logits of the model with a llama-perplexity --kl-divergence-base FILE made from the same model.")
    var llamaBase: String?

    @Option(help: "Qwen-VL: use only the first N pairs.")
    var limit: Int?

    @Option(name: .customLong("greedy-tokens"), help: "Qwen-VL: greedy tokens each model generates after each prompt (0: skip).")
    var greedyTokens = 16

    @Option(help: "How many worst positions (by KL) to list.")
    var worst = 10

    @Option(name: .customLong("max-kl"), help: "Gate: exit 4 when kl_mean (nats) exceeds this.")
    var maxKL: Double?

    @Option(name: .customLong("min-top1"), help: "Gate: exit 4 when top1_agreement (0...1) is below this.")
    var minTop1: Double?

    @Option(help: "Write an HTML page with plots to DIR/index.html (self-contained, opens offline).")
    var report: String?

    @Option(help: "Qwen-VL: qwen.tiktoken (default: the BF16 folder's, then $SQUINT_VOCAB).")
    var vocab: String?

    @Flag(help: "Print the result as JSON (keys: docs/VALIDATE_JSON.md).")
    var json = false

    @Option(name: .customLong("save-base"), help: "Also write the BF16 side (logits, hidden states, greedy tokens) to this file, for --base.")
    var saveBase: String?

    @Option(help: "Reuse the BF16 side from a --save-base file instead of running the BF16 model (refused unless made from the same model, eval file, --limit and at least as many --greedy-tokens).")
    var base: String?

    @Flag(help: "Replace an existing --report folder index.html (or a file at that path), or --save-base file.")
    var force = false

    @Flag(name: .customLong("no-verify"), help: "Skip the CRC-32 check of the weights (Squint Int4 tensors, torch zip entries; checked by default before anything runs).")
    var noVerify = false

    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        if let maxKL, !(maxKL >= 0) { throw ValidationError("--max-kl must be >= 0") }
        if let minTop1, !(minTop1 >= 0 && minTop1 <= 1) { throw ValidationError("--min-top1 must be in [0, 1]") }
        if let limit, limit < 1 { throw ValidationError("--limit must be >= 1") }
        if greedyTokens < 0 { throw ValidationError("--greedy-tokens must be >= 0") }
        if worst < 0 { throw ValidationError("--worst must be >= 0") }
        if saveBase != nil && base != nil { throw ValidationError("--save-base and --base contradict each other (save once, then reuse)") }
        if !(ctx >= 4 && ctx <= 1 << 20) { throw ValidationError("--ctx must be between 4 and 1048576") }
        if let chunks, chunks < 1 { throw ValidationError("--chunks must be at least 1") }
        if llamaBase != nil {
            if int4 != nil { throw ValidationError("--llama-base compares one model with llama.cpp's logits of it: give only MODEL") }
            if eval != nil { throw ValidationError("--llama-base takes its tokens from the file; --eval does not apply") }
            if saveBase != nil || base != nil { throw ValidationError("--llama-base already is a base file; --save-base/--base do not apply") }
        } else {
            if int4 == nil && !(saveBase != nil && eval != nil) {
                throw ValidationError("Missing expected argument '<int4>' (the quantized model; only BF16 --eval PAIRS --save-base FILE runs without one)")
            }
            if int4 == nil && (report != nil || maxKL != nil || minTop1 != nil) {
                throw ValidationError("--report, --max-kl and --min-top1 need INT4: without it validate only records the BF16 side (--save-base)")
            }
            if eval == nil && text == nil { throw ValidationError("Missing --eval PAIRS.jsonl (Qwen-VL) or --text FILE (text models)") }
            if eval != nil && text != nil { throw ValidationError("--eval (image-caption pairs) and --text (text models) exclude each other") }
        }
        if limit != nil && eval == nil { throw ValidationError("--limit applies to --eval; use --chunks with --text") }
        if chunks != nil && text == nil && llamaBase == nil { throw ValidationError("--chunks applies to --text or --llama-base; use --limit with --eval") }
    }

    func run() throws {
        threading.apply()
        var gateFailed = false
        try runReportingErrors {
            // The output paths first: a refusal must come before minutes of work, not after.
            if let report { try ValidateText.checkReportFolder(report, overwrite: force) }
            if let saveBase, !force, FileManager.default.fileExists(atPath: saveBase) { throw FormatError.exists(path: saveBase) }
            let r: ValidationReport
            if int4 == nil && llamaBase == nil { return try runBaseOnly() }
            if let llamaBase { r = try runLlamaBase(llamaBase) } else if let text { r = try runText(text) } else { r = try runQwenVL() }
            try emit(r)
            gateFailed = !r.gate.passed
        }
        if gateFailed { throw ExitCode(4) }
    }

    var arguments: [String] { ["squint"] + CommandLine.arguments.dropFirst() }

    /// The HTML report, then JSON or the table.
    func emit(_ r: ValidationReport) throws {
        if let report {
            FileHandle.standardError.write(Data("report: \(try ValidateText.writeHTML(r, folder: report, overwrite: force))\n".utf8))
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
            print(String(decoding: try enc.encode(r), as: UTF8.self))
        } else {
            print(ValidateText.table(r), terminator: "")
        }
    }

    static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationErrorExit(message: "\(path): " + (FileManager.default.fileExists(atPath: path) ? "cannot read the file" : "no such file"))
        }
        guard let body = String(data: data, encoding: .utf8) else { throw ValidationErrorExit(message: "\(path): not UTF-8 text") }
        return body
    }

    static func openText(_ path: String, _ role: String) throws -> TextModel {
        guard TextModel.canOpen(path) else {
            throw ValidationErrorExit(message: "\(path): not a text model (a .gguf file, or a folder whose config.json names Qwen2 or Llama); "
                + "--text and --llama-base compare text models (\(role))")
        }
        let bar = ProgressBar(label: "load \(role)", unit: .items("tensors"))
        defer { bar.finish() }
        return try TextModel.open(path) { bar.update($0, $1) }
    }

    func runText(_ textPath: String) throws -> ValidationReport {
        let body = try Self.readText(textPath)
        let a = try Self.openText(bf16, "original"), b = try Self.openText(int4 ?? "", "quantized")
        try TextValidator.checkComparable(a, b, text: body)
        let options = TextValidator.Options(context: ctx, chunks: chunks, worstCount: worst, maxKL: maxKL, minTop1: minTop1)
        let samples = try TextValidator.samples(model: a, text: body, options: options)
        var store: ValidationBase?
        if saveBase != nil || base != nil {
            let id = try TextValidator.baseIdentity(original: a, textPath: textPath, samples: samples)
            if let saveBase { store = try ValidationBase(saving: saveBase, identity: id, overwrite: force) }
            if let base { store = try ValidationBase(reading: base, identity: id, greedyTokens: 0) }
        }
        let bar = ProgressBar(label: "validate", unit: .items("passes"))
        var r = try TextValidator.run(original: a, quantized: b, originalName: bf16, quantizedName: int4 ?? "", samples: samples,
                                      options: options, base: store, progress: { bar.update($0, $1, detail: $2) })
        bar.finish()
        if let saveBase, let store {
            try store.commit()
            FileHandle.standardError.write(Data("base: \(saveBase)\n".utf8))
        }
        r.run = try TextValidator.runInfo(original: a, quantized: b, arguments: arguments)
        return r
    }

    func runLlamaBase(_ path: String) throws -> ValidationReport {
        let file = try LlamaKLDFile(path: path)
        let body = try text.map(Self.readText)
        let m = try Self.openText(bf16, "model")
        let bar = ProgressBar(label: "validate", unit: .items("chunks"))
        var r = try LlamaBaseComparison.run(model: m, modelName: bf16, base: file, text: body,
                                            options: .init(chunks: chunks, worstCount: worst, maxKL: maxKL, minTop1: minTop1),
                                            progress: { bar.update($0, $1, detail: $2) })
        bar.finish()
        let w = try TextValidator.weightsFile(m)
        let bytes = w.tensors.reduce(0) { $0 + $1.byteCount }
        r.run = .init(arguments: arguments, quantization: m.source, parameters: w.tensors.reduce(0) { $0 + $1.elementCount },
                      referenceBytes: bytes, candidateBytes: bytes)
        return r
    }

    /// `validate BF16 --eval PAIRS --save-base FILE`: the BF16 side alone, so that the Int4 model is
    /// later compared (`--base FILE`) without both models in memory at once.
    func runBaseOnly() throws {
        guard let eval, let saveBase else { throw ValidationErrorExit(message: "internal: --eval and --save-base are required") }
        let a = try LoadedModel(folder: bf16, vocab: vocab, verifyChecksums: !noVerify)
        let samples = try ValidationSample.load(pairs: eval, tokenizer: a.tokenizer, limit: limit)
        let id = try ValidationBase.identity(model: a.checkpoint.file, evalPath: eval, samples: samples, greedyTokens: greedyTokens,
                                             config: a.model.config)
        let store = try ValidationBase(saving: saveBase, identity: id, overwrite: force)
        let bar = ProgressBar(label: "base", unit: .items("blocks"))
        try Validator.recordBase(bf16: a.model, bf16Name: bf16, samples: samples,
                                 options: ValidateOptions(greedyTokens: greedyTokens, worstCount: worst), base: store,
                                 progress: { bar.update($0, $1, detail: $2) })
        bar.finish()
        try store.commit()
        if json {
            print("{\"base\": \(JSONValue.string(saveBase).compactText), \"samples\": \(samples.count), \"greedy_tokens\": \(greedyTokens)}")
        } else {
            print("base: \(saveBase) (\(samples.count) samples, BF16 only); compare a quantized model with: "
                + "squint validate \(bf16) INT4 --eval \(eval) --base \(saveBase)")
        }
    }

    func runQwenVL() throws -> ValidationReport {
        guard let eval, let int4 else { throw ValidationErrorExit(message: "internal: --eval and INT4 are required") }
        let a = try LoadedModel(folder: bf16, vocab: vocab, verifyChecksums: !noVerify)
        let b = try LoadedModel(folder: int4, vocab: vocab ?? a.vocabularyPath, verifyChecksums: !noVerify)
        guard b.isQuantized else {
            throw ValidationErrorExit(message: "\(int4): not an Int4 model (no quantized weights); validate compares "
                + "a BF16 model with its Int4 conversion: pass the SQ4 file or AutoGPTQ folder that `squint convert` wrote")
        }
        let samples = try ValidationSample.load(pairs: eval, tokenizer: a.tokenizer, limit: limit)
        var store: ValidationBase?
        if saveBase != nil || base != nil {
            let id = try ValidationBase.identity(model: a.checkpoint.file, evalPath: eval, samples: samples, greedyTokens: greedyTokens,
                                                 config: a.model.config)
            if let saveBase { store = try ValidationBase(saving: saveBase, identity: id, overwrite: force) }
            if let base { store = try ValidationBase(reading: base, identity: id, greedyTokens: greedyTokens) }
        }
        let bar = ProgressBar(label: "validate", unit: .items("blocks"))
        let tok = a.tokenizer
        var r = try Validator.run(bf16: a.model, int4: b.model, bf16Name: bf16, int4Name: int4, samples: samples,
                                  options: ValidateOptions(greedyTokens: greedyTokens, worstCount: worst, maxKL: maxKL, minTop1: minTop1),
                                  decode: { (try? tok.decode($0)) ?? $0.map(String.init).joined(separator: " ") }, base: store,
                                  progress: { bar.update($0, $1, detail: $2) })
        bar.finish()
        if let saveBase, let store {
            try store.commit()
            FileHandle.standardError.write(Data("base: \(saveBase)\n".utf8))
        }
        r.synthetic = a.checkpoint.isSynthetic || b.checkpoint.isSynthetic
        r.run = .init(bf16: a, int4: b, arguments: arguments)
        return r
    }
}
