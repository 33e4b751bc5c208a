import ArgumentParser
import Foundation
import SquintPipeline

/// `squint export`: selected tensors of any checkpoint as a safetensors file (numpy, torch, ...).
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write selected tensors of any checkpoint, dequantised, to a safetensors file.",
        discussion: """
        Reads any checkpoint `inspect` reads: safetensors files, torch .bin/.pt/.pth (zip and legacy), \
        sharded folders, GGUF files (every ggml type Squint reads is dequantised bit for bit as the \
        gguf Python package does; shapes are written row-major, i.e. ggml's ne reversed), Squint Int4 \
        (.sq4) files and AutoGPTQ Int4 folders.

        Names stay the file's own, with one exception: an Int4 module X (AutoGPTQ X.qweight, X.qzeros, \
        X.scales, X.g_idx, or an SQ4 record X.q4_*) is written as one tensor X.weight [out, in], \
        dequantised as the runtime does (scale * (code - zero), act order undone); its bias stays \
        X.bias. --tensors matches these output names. With --raw, every selected tensor is written \
        byte for byte as stored instead (Int4 codes, ggml blocks as U8 rows), under its stored name.

        Floating-point tensors are written as --dtype (default f32: exact for F16, BF16 and every ggml \
        type; bf16/f16 round to nearest, ties to even); integer tensors are copied unchanged. The \
        output's __metadata__ names the source and its format. The file is written atomically and an \
        existing one is never replaced without --force.

        Example:
          squint export model.gguf --tensors 'blk\\.0\\.attn_q' -o q.safetensors

        Exit codes: 0 success; 1 bad input, no tensor matches, or OUT exists (the message says which); \
        64 bad arguments (e.g. an invalid regular expression).
        """)

    @Argument(help: "A checkpoint file or a model folder.")
    var path: String

    @Option(help: "Regular expression selecting tensors by (output) name, searched anywhere in the name.")
    var tensors: String

    @Option(name: .shortAndLong, help: "The safetensors file to write.")
    var output: String

    @Option(help: "Type of floating-point tensors written: f32, bf16 or f16.")
    var dtype: String?

    @Flag(help: "Write selected tensors exactly as stored (no dequantisation or conversion; not with --dtype).")
    var raw = false

    @Flag(help: "Replace OUT if it exists.")
    var force = false

    @Flag(help: "Print what was written as JSON (docs/EXPORT.md).")
    var json = false

    func validate() throws {
        do { _ = try NSRegularExpression(pattern: tensors) } catch {
            throw ValidationError("--tensors '\(tensors)' is not a valid regular expression")
        }
        if let dtype, ExportDType(rawValue: dtype) == nil {
            throw ValidationError("--dtype must be f32, bf16 or f16 (got '\(dtype)')")
        }
        if raw && dtype != nil { throw ValidationError("--raw writes tensors as stored; it cannot be combined with --dtype") }
    }

    func run() throws {
        try runReportingErrors {
            let options = ExportOptions(pattern: tensors, dtype: dtype.flatMap(ExportDType.init) ?? .f32, raw: raw, overwrite: force)
            stopCleanlyOnInterrupt(output: output, message: { "export: interrupted; nothing was written at \(output)" }) {
                removeOwnTemporaries(besides: output)
            }
            // The bar shows only for exports big enough to take a while (it stays silent otherwise).
            var bar: ProgressBar?
            let report = try Exporter.export(path, to: output, options: options) { done, total in
                if bar == nil && !json && total >= 64 << 20 { bar = ProgressBar(label: "export", unit: .bytes) }
                bar?.update(done, total)
            }
            bar?.finish()
            if json {
                print(try jsonString(report))
            } else {
                for r in report.tensors {
                    let conv = r.from == r.dtype ? r.dtype : "\(r.from) -> \(r.dtype)"
                    print("\(r.name)  \(conv)  \(r.shape)")
                }
                print("wrote \(report.output): \(report.tensors.count) tensors, \(report.bytes) bytes (from \(report.format) \(report.source))")
            }
        }
    }
}
