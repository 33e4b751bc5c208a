import ArgumentParser
import Foundation
import SquintPipeline
import SquintTensor

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure this machine's limits and Squint's hot paths at the real Qwen-VL-Chat sizes.",
        discussion: """
        Synthetic weights, nothing to download. Prints sgemm GFLOP/s and memory read GB/s, then one LLM \
        block (prefill 512 tokens, decode with 512 cached) and one ViT block (1024 tokens), each as a \
        fraction of the limit it is bound by; `decode` times the one-token matrix-vector kernels (Int4 \
        with float32 or int8 x, BF16, F16, F32) at real decoder shapes, weights streamed from DRAM. Compare thread counts with --threads 1 and --threads 2.

        Exit codes: 0 success; 1 error (the message says which); 64 bad command line.

        Example: squint bench --threads 2 --only llm
        """)

    @OptionGroup var threading: ThreadOptions

    @Option(help: "Only these parts: llm, vit, decode (comma-separated).")
    var only: String?

    @Flag(help: "Print JSON rows.")
    var json = false

    func run() throws {
        try runReportingErrors {
            threading.apply()
            let parts = only.map { Set($0.split(separator: ",").map(String.init)) }
            FileHandle.standardError.write(Data("squint bench: \(Threads.count) threads, OpenBLAS kernels \(BLASKernels.description)\n".utf8))
            let rows = try SquintPipeline.Bench.run(only: parts) { r in
                guard !json else { return }
                let frac = r.ofLimit.map { String(format: "  (%.0f%% of limit)", $0 * 100) } ?? ""
                let name = r.name.padding(toLength: 52, withPad: " ", startingAt: 0)
                print(name + String(format: " %9.4f s  %8.1f ", r.seconds, r.rate) + r.unit + frac)
            }
            if json { print(try jsonString(rows)) }
        }
    }
}
