import ArgumentParser
import Foundation
import SquintModels
import SquintPipeline
import SquintFormats

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure how far an Int4 model drifts from its BF16 original on image-caption pairs.",
        discussion: """
        Both models run on the same inputs with teacher forcing over each pair's prompt and caption \
        (the calibration rendering rule). Reported: KL(BF16 || Int4) per caption position (mean, \
        median, p99, max), top-1 / top-5 agreement, perplexity of each on the caption tokens, the \
        worst positions, the drift of the hidden state after every block and of the image features, \
        and how long the greedy continuations of the two models agree. See docs/VALIDATING.md.

        Exit codes: 0 success (gate passed or no gate), 1 error (unreadable model or pairs file, \
        incompatible models), 4 gate failed (--max-kl / --min-top1), 64 bad command line.

        Example: squint validate tiny-bf16 tiny.sq4 --eval fixtures/calibration/pairs.jsonl --report drift --max-kl 0.1
        """)

    @Argument(help: "The BF16 model folder (config.json, weights, qwen.tiktoken).")
    var bf16: String

    @Argument(help: "The Int4 model: an SQ4 file, or a folder with an SQ4 file or an AutoGPTQ checkpoint.")
    var int4: String

    @Option(help: "Image-caption pairs, one JSON object a line: {\"image\", \"prompt\", \"caption\"}; image paths relative to this file.")
    var eval: String

    @Option(help: "Use only the first N pairs.")
    var limit: Int?

    @Option(name: .customLong("greedy-tokens"), help: "Greedy tokens each model generates after each prompt (0: skip).")
    var greedyTokens = 16

    @Option(help: "How many worst positions (by KL) to list.")
    var worst = 10

    @Option(name: .customLong("max-kl"), help: "Gate: exit 4 when kl_mean (nats) exceeds this.")
    var maxKL: Double?

    @Option(name: .customLong("min-top1"), help: "Gate: exit 4 when top1_agreement (0...1) is below this.")
    var minTop1: Double?

    @Option(help: "Write an HTML page with plots to DIR/index.html (self-contained, opens offline).")
    var report: String?

    @Option(help: "qwen.tiktoken (default: the BF16 folder's, then $SQUINT_VOCAB).")
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

    func validate() throws {
        if let maxKL, !(maxKL >= 0) { throw ValidationError("--max-kl must be >= 0") }
        if let minTop1, !(minTop1 >= 0 && minTop1 <= 1) { throw ValidationError("--min-top1 must be in [0, 1]") }
        if let limit, limit < 1 { throw ValidationError("--limit must be >= 1") }
        if greedyTokens < 0 { throw ValidationError("--greedy-tokens must be >= 0") }
        if worst < 0 { throw ValidationError("--worst must be >= 0") }
        if saveBase != nil && base != nil { throw ValidationError("--save-base and --base contradict each other (save once, then reuse)") }
    }

    func run() throws {
        var gateFailed = false
        try runReportingErrors {
            // The output path first: a refusal must come before minutes of work, not after.
            if let report { try ValidateText.checkReportFolder(report, overwrite: force) }
            if let saveBase, !force, FileManager.default.fileExists(atPath: saveBase) { throw FormatError.exists(path: saveBase) }
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
            r.run = .init(bf16: a, int4: b, arguments: ["squint"] + CommandLine.arguments.dropFirst())
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
            gateFailed = !r.gate.passed
        }
        if gateFailed { throw ExitCode(4) }
    }
}
