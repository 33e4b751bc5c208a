import ArgumentParser
import Foundation
import SquintPipeline

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a complete Qwen-VL checkpoint folder with bit-exact synthetic weights.",
        discussion: """
        The weights follow docs/SYNTHETIC_WEIGHTS.md (one SplitMix64 stream per tensor, BF16), so any \
        config can be tested, up to the real 9.6B Qwen-VL-Chat, without downloading anything. With the \
        official config and --format bin the folder has the official release's shard names, \
        tensor-to-shard map and total size. The folder is written aside and moved into place when \
        complete; an existing folder is never replaced unless --force is given.

        Exit codes: 0 written; 1 bad config or the output exists (nothing partial is left); 64 bad command line.

        Example: squint synth --config fixtures/qwen-vl-tiny/config.json --vocab fixtures/tokenizer/qwen.tiktoken -o tiny-bf16
        """)

    @Option(help: "A Qwen-VL config.json.")
    var config: String

    @Option(help: "Seed of the weight streams (the reference tiny model uses 20240611).")
    var seed: UInt64 = 20240611

    @Option(help: "safetensors or bin (torch zip pickles, like the official BF16 release).")
    var format: String = "safetensors"

    @Option(name: .customLong("shard-size"), help: "Largest shard, e.g. 2GB, 500MB, or bytes. Default: one safetensors file; 2GB for bin, as the official release.")
    var shardSize: String?

    @Option(help: "A qwen.tiktoken to copy into the folder.")
    var vocab: String?

    @Option(name: .shortAndLong, help: "Output folder (must not exist unless --force).")
    var output: String

    @Flag(help: "Replace an existing output folder.")
    var force = false

    @Flag(help: "Print a JSON summary.")
    var json = false

    func validate() throws {
        guard SquintPipeline.Synth.Format(rawValue: format) != nil else {
            throw ValidationError("--format must be safetensors or bin, not '\(format)'")
        }
        if let shardSize, SquintPipeline.Synth.parseSize(shardSize) == nil {
            throw ValidationError("--shard-size '\(shardSize)' is not a size (examples: 2GB, 500MB, 39747574)")
        }
    }

    func run() throws {
        try runReportingErrors {
            let opts = SquintPipeline.Synth.Options(
                configPath: config, seed: seed, format: .init(rawValue: format)!,
                maxShardSize: shardSize.flatMap(SquintPipeline.Synth.parseSize), output: output,
                overwrite: force, vocabPath: vocab)
            stopCleanlyOnInterrupt(output: output, message: { "synth: interrupted; nothing was written at \(output)" }) {
                try? FileManager.default.removeItem(atPath: SquintPipeline.Synth.stagingFolder(for: output))
            }
            let r = try SquintPipeline.Synth.run(opts, progress: ProgressBar(label: "synth", unit: .bytes))
            if json {
                print(try jsonString(r))
            } else {
                let gbps = Double(r.bytes) / max(r.seconds, 1e-9) / 1e9
                print("wrote \(r.output): \(r.tensors) tensors, \(r.bytes) bytes of BF16 in \(r.files.count) files, "
                    + String(format: "%.1f s (%.2f GB/s)", r.seconds, gbps))
            }
        }
    }
}
