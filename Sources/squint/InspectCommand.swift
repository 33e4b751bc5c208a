import ArgumentParser
import Foundation
import SquintPipeline
import SquintFormats
import SquintTensor

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what is inside a checkpoint file or model folder.",
        discussion: """
        Reads headers only (unless --stats): tensor names, dtypes, shapes, sizes, the file and absolute \
        byte offset of each tensor's data, totals by dtype and by module (transformer.h.N and \
        resblocks.N folded into per-block summaries), the recognised layout (Qwen-VL BF16, AutoGPTQ \
        Int4, Squint Int4) and the config. Accepts safetensors files, torch .bin/.pt/.pth files (zip \
        and legacy), sharded folders with an index, Squint Int4 files and GGUF files (metadata, ggml \
        types, bits per weight; --stats over dequantised values).

        --verify reads the file once and checks every checksum it carries: each tensor's CRC-32 of a \
        Squint Int4 file, each entry's CRC-32 of a torch zip (.bin/.pt), shard by shard.

        Exit codes: 0 ok; 1 the checkpoint is invalid or unreadable (or, with --verify, corrupt); \
        64 bad arguments; \
        3 (--diff) the checkpoints differ.

        Example: squint inspect tiny.sq4 --summary --verify
        """)

    @Argument(help: "A checkpoint file or a model folder.")
    var path: String

    @Flag(help: "Print JSON (schema: docs/INSPECT_JSON.md) instead of tables.")
    var json = false

    @Option(help: "Only list tensors whose name matches this regular expression.")
    var filter: String?

    @Flag(help: "Read every selected tensor and add min, max, mean, std, NaN and Inf counts (both cores).")
    var stats = false

    @Option(help: "Compare with another checkpoint: names added, removed or renamed, shape and dtype changes.")
    var diff: String?

    @Flag(help: "Summaries only: leave out the per-tensor table.")
    var summary = false

    @Flag(help: "Check every checksum the file carries (Squint Int4: each tensor's CRC-32; torch zip: each entry's CRC-32); exit 1 on a mismatch. safetensors and legacy torch files carry none.")
    var verify = false

    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        if let filter, (try? NSRegularExpression(pattern: filter)) == nil {
            throw ValidationError("--filter '\(filter)' is not a valid regular expression")
        }
        if diff != nil && stats { throw ValidationError("--stats cannot be combined with --diff") }
        if diff != nil && verify { throw ValidationError("--verify cannot be combined with --diff") }
    }

    func run() throws {
        threading.apply()
        try runReportingErrors {
            if let diff {
                // Names, shapes and types only: no config.json is read (a decoder folder's config is
                // not a Qwen-VL one).
                let a = try CheckpointOpener.openTensors(path), b = try CheckpointOpener.openTensors(diff)
                let v = Inspector.diffViews(a.file, b.file)
                var d = CheckpointDiff.compare(v.a, v.b, typeNamesA: v.typeNamesA, typeNamesB: v.typeNamesB)
                d.nameMapping = v.mapping
                if json {
                    print(try jsonString(d))
                } else {
                    print("\(a.file.path) (\(a.file.tensors.count) tensors) vs \(b.file.path) (\(b.file.tensors.count) tensors)")
                    if let m = d.nameMapping { print("names: " + m) }
                    print(d.isEmpty ? "no differences in names, shapes or dtypes (\(d.unchanged) tensors)"
                                    : "\(d.unchanged) tensors unchanged; differences:")
                    for l in d.summaryLines() { print("  " + l) }
                }
                if !d.isEmpty { throw ExitCode(3) }
                return
            }
            let a = try CheckpointOpener.open(path)
            let regex = try filter.map { try NSRegularExpression(pattern: $0) }
            let bar = stats && !json ? ProgressBar(label: "stats", unit: .bytes) : nil
            var report = try Inspector.inspect(
                a.file, format: a.format, config: a.config, quantization: a.quantization,
                squintInt4: a.isSquintInt4, filter: regex, stats: stats,
                progress: bar.map { b in { done, total in b.update(done, total) } })
            bar?.finish()
            if verify {
                let vbar = json ? nil : ProgressBar(label: "verify", unit: .bytes)
                let what = try Checksums.verify(a.file, threads: Threads.count, progress: vbar.map { b in { done, total in b.update(done, total) } })
                vbar?.finish()
                report.checksums = what.map { "verified: " + $0 }
                    ?? "none: this \(a.format) file carries no checksums (headers, sizes and offsets were checked)"
            }
            if json {
                print(try jsonString(report))
            } else {
                print(InspectText.render(report, showTensors: !summary))
                if let c = report.checksums { print("checksums: \(c)") }
            }
        }
    }
}
