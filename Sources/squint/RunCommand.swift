import ArgumentParser
import Foundation
import SquintModels
import SquintPipeline
import SquintTensor
import SquintTokenizer

/// Options shared by `run` and `chat`.
struct GenerationOptions: ParsableArguments {
    @Option(name: .customLong("max-new-tokens"), help: "Stop after this many tokens.")
    var maxNewTokens = 512

    @Flag(help: "Greedy decoding (argmax) instead of the model's sampling settings.")
    var greedy = false

    @Option(name: .customLong("top-p"), help: "Nucleus sampling threshold (default: generation_config.json, 0.3 for Qwen-VL-Chat).")
    var topP: Float?

    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0: off; default: generation_config.json).")
    var topK: Int?

    @Option(help: "Sampling temperature.")
    var temperature: Float?

    @Option(help: "Seed of the sampler (Squint's own generator: a seed reproduces Squint's choices, not torch's).")
    var seed: UInt64 = 0

    @Option(help: "qwen.tiktoken (default: the model folder's, then $SQUINT_VOCAB).")
    var vocab: String?

    @Flag(name: .customLong("int8-activations"), help: "Int4 models: decode with 8-bit activations (Q4 x Q8 integer products, ~2x faster, ~4e-3 relative error per product); text models also hold the lm_head as int8 (Q8 x Q8, as llama.cpp's Q8_0 output.weight).")
    var int8Activations = false

    @OptionGroup var threading: ThreadOptions

    @Flag(name: .customLong("no-verify"), help: "Skip the CRC-32 check of the weights (Squint Int4 tensors, torch zip entries; checked by default: one read of the file, about 1 s for the 4.6 GB Qwen-VL-Chat Int4).")
    var noVerify = false

    func validate() throws {
        if let topP, !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
        if let topK, topK < 0 { throw ValidationError("--top-k must be >= 0") }
        if let temperature, !(temperature > 0) { throw ValidationError("--temperature must be > 0") }
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be >= 1") }
    }

    /// Loads the model with these options' vocabulary, threads and Int4 decode path.
    func load(_ folder: String) throws -> LoadedModel {
        threading.applyForInference()
        let m = try LoadedModel(folder: folder, vocab: vocab, verifyChecksums: !noVerify)
        m.useInt8Activations(int8Activations)
        return m
    }

    func sampling(_ defaults: SamplingOptions) -> SamplingOptions {
        var s = defaults
        if greedy { s.doSample = false }
        if let topP { s.topP = topP }
        if let topK { s.topK = topK }
        if let temperature { s.temperature = temperature }
        s.seed = seed
        return s
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer a question about images with a Qwen-VL-Chat model, or a question with a text model (GGUF or folder: Qwen2.5, SmolLM2).",
        discussion: """
        The prompt is built as the official `from_list_format` + `chat` do: "Picture 1: <img>PATH</img>\\n" \
        per image, then the text (which may hold <ref>/<box> tags), in a ChatML conversation with the \
        system prompt "You are a helpful assistant.". Sampling follows generation_config.json unless \
        --greedy. Boxes in the answer are listed, and drawn with --draw.

        A text model (a .gguf file, or a folder with config.json, model.safetensors and tokenizer.json \
        of a Qwen2 or Llama model) answers --prompt in its ChatML chat format with the template's \
        default system prompt; sampling defaults to temperature 0.7, top-p 0.8, top-k 20 (Qwen2.5's \
        generation_config.json) unless --greedy.

        Exit codes: 0 answered; 1 unreadable model, image or vocabulary, or an output file exists; 64 bad command line.

        Example: squint run tiny.sq4 --image photo.jpg --prompt "What is in this picture?" --greedy
        """)

    @Argument(help: "Model folder (config.json, weights, qwen.tiktoken).")
    var model: String

    @Option(name: .customLong("image"), help: "An image (JPEG or PNG); repeat for several.")
    var images: [String] = []

    @Option(help: "The question.")
    var prompt: String

    @OptionGroup var generation: GenerationOptions

    @Option(help: "Write the prompt's input_ids, prefill logits [positions, vocab] and image_features to this safetensors file.")
    var dump: String?

    @Option(help: "Draw the answer's <box>es onto the (last) image and write a PNG here.")
    var draw: String?

    @Flag(help: "Replace existing --dump / --draw files.")
    var force = false

    @Flag(help: "Print a JSON result.")
    var json = false

    func validate() throws {
        if draw != nil && images.isEmpty { throw ValidationError("--draw needs an --image") }
    }

    func run() throws {
        try runReportingErrors {
            if TextModel.canOpen(model) { return try runText() }
            for f in [dump, draw].compactMap({ $0 }) where !force && FileManager.default.fileExists(atPath: f) {
                throw ValidationError("\(f) exists; pass --force to replace it")
            }
            let m = try generation.load(model)
            if m.checkpoint.isSynthetic { FileHandle.standardError.write(Data("note: \(syntheticNote(model))\n".utf8)) }
            let query = QwenTokenizer.fromListFormat(images.map { .image($0) } + [.text(prompt)])
            let result = try Runner.answer(
                m, query: query, maxNewTokens: generation.maxNewTokens, sampling: generation.sampling(m.generation),
                onToken: json ? nil : { print($0, terminator: ""); fflush(stdout) },
                dump: dump.map { path in { ids, logits, features in
                    try Runner.writeDump(path, ids: ids, logits: logits, features: features, overwrite: force) } })
            if let draw, let last = images.last {
                try Runner.drawBoxes(result.boxes, imagePath: last, output: draw, overwrite: force)
            }
            if json {
                print(try jsonString(result))
            } else {
                print("")
                for b in result.boxes { print("box: \(b.ref ?? "-") (\(b.x1),\(b.y1)),(\(b.x2),\(b.y2))") }
                let tokens = result.generatedIds.count
                FileHandle.standardError.write(Data(String(
                    format: "[%d prompt tokens; vision %.2f s, prefill %.2f s (%.1f tok/s), %d tokens in %.2f s (%.2f tok/s)]\n",
                    result.promptTokens, result.visionSeconds, result.prefillSeconds,
                    Double(result.promptTokens) / max(result.prefillSeconds, 1e-9), tokens, result.decodeSeconds,
                    Double(tokens) / max(result.decodeSeconds, 1e-9)).utf8))
                FileHandle.standardError.write(Data("[\(MemoryUsage.current().summary)]\n".utf8))
            }
        }
    }
}

/// The banner line for a model written by `squint synth`.
func syntheticNote(_ model: String) -> String {
    "\(model) has synthetic weights (squint synth): its answers are noise by design; the pipeline, not the model, is what is real"
}
