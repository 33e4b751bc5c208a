import ArgumentParser
import Foundation
import SquintPipeline
import SquintTensor

/// `squint perplexity`: a text model's perplexity over a text file, computed as llama.cpp's
/// `llama-perplexity` does, so the two print comparable numbers.
struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a text model (GGUF file or Hugging Face folder) over a text file, as llama-perplexity computes it.",
        discussion: """
            The text is tokenized whole (with BOS only if the model adds one), cut into non-overlapping \
            windows of --ctx tokens (the tail that does not fill one is dropped), and the second half of \
            each window is scored, as llama.cpp's llama-perplexity does; the figure after +/- is its \
            standard error carried through exp. GGUF weights are dequantised to float32 (llama.cpp \
            instead multiplies quantised weights with 8-bit activations, so the two differ by a fraction \
            of a percent). Models: Qwen2 (Qwen2.5, the language half of Qwen2-VL) and Llama (SmolLM2).

            Example: squint perplexity qwen2.5-coder-0.5b-instruct.gguf alice29.txt --ctx 512

            Exit codes: 0 success; 1 bad input (the message names the file and the problem); 64 bad usage.
            """)

    @Argument(help: "The model: a .gguf file or a folder with config.json, model.safetensors and tokenizer.json.")
    var model: String

    @Argument(help: "A UTF-8 text file.")
    var text: String

    @Option(name: .long, help: "Tokens per window (llama-perplexity's -c).")
    var ctx: Int = 512

    @Option(name: .long, help: "Score at most this many windows (llama-perplexity's --chunks).")
    var chunks: Int?

    @OptionGroup var threading: ThreadOptions

    @Flag(name: .long, help: "Print the result as JSON (result.perWindow: the running perplexity after each window, as llama-perplexity prints it; result.windowNLL: each window's own mean NLL).")
    var json = false

    func validate() throws {
        guard ctx >= 4 && ctx <= 1 << 20 else { throw ValidationError("--ctx must be between 4 and 1048576") }
        if let chunks, chunks < 1 { throw ValidationError("--chunks must be at least 1") }
    }

    func run() throws {
        try runReportingErrors {
            threading.applyForInference()
            guard let data = FileManager.default.contents(atPath: text) else {
                throw ValidationErrorExit(message: "\(text): cannot read the file")
            }
            guard let body = String(data: data, encoding: .utf8) else { throw ValidationErrorExit(message: "\(text): not UTF-8 text") }
            let t0 = Date()
            let loadBar = ProgressBar(label: "load", unit: .items("tensors"))
            let m = try TextModel.open(model) { done, total in loadBar.update(done, total) }
            let loadSeconds = Date().timeIntervalSince(t0)
            let bar = ProgressBar(label: "perplexity", unit: .items("windows"))
            let t1 = Date()
            let r = try m.perplexity(text: body, context: ctx, maxWindows: chunks) { done, total, ppl in
                bar.update(done, total, detail: String(format: "PPL %.4f", ppl))
            }
            let seconds = Date().timeIntervalSince(t1)
            if json {
                struct Out: Encodable {
                    let model: String, source: String, text: String, result: Perplexity.Result
                    let loadSeconds: Double, seconds: Double, tokensPerSecond: Double, threads: Int
                }
                print(try jsonString(Out(model: model, source: m.source, text: text, result: r, loadSeconds: loadSeconds,
                                         seconds: seconds, tokensPerSecond: Double(r.windows * r.context) / seconds,
                                         threads: Threads.count)))
            } else {
                print("model: \(model) [\(m.source)]")
                print("text: \(text): \(r.textTokens) tokens, \(r.windows) windows of \(r.context), \(r.scoredTokens) tokens scored")
                print(String(format: "Final estimate: PPL = %.4f +/- %.5f", r.perplexity, r.uncertainty))
                print(String(format: "%.1f s (%.1f tokens/s on %d threads; load %.1f s)", seconds,
                             Double(r.windows * r.context) / seconds, Threads.count, loadSeconds))
            }
        }
    }
}
