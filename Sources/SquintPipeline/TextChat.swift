import Foundation
import SquintFormats
import SquintModels
import SquintTokenizer

/// `run` and `chat` for text models: the conversation rendered with the chat format the file carries
/// (ChatML, `<|im_start|>role\ncontent<|im_end|>\n`, for Qwen2.5 and SmolLM2), generation until an
/// end-of-generation token, and the answer decoded without its control tokens.
extension TextModel {
    /// The Jinja chat template the GGUF carries (`tokenizer.chat_template`), if any.
    public var chatTemplate: String? { storedChatTemplate ?? gguf?.value(forKey: "tokenizer.chat_template")?.string }

    /// Squint renders ChatML, which is what the template describes when it writes `<|im_start|>`.
    /// Other templates are refused by name (a Jinja engine is not part of Squint).
    public func checkChatFormat() throws {
        if let t = chatTemplate, !t.contains("<|im_start|>") {
            throw FormatError.unsupported(path: path, what: "the chat template is not ChatML (<|im_start|>); Squint renders ChatML only")
        }
        guard tokenizer.tokenID(of: "<|im_start|>") != nil, tokenizer.tokenID(of: "<|im_end|>") != nil else {
            throw FormatError.unsupported(path: path, what: "the vocabulary has no <|im_start|>/<|im_end|> tokens: not a ChatML chat model")
        }
    }

    /// The system prompt the template uses when the conversation has none: the text of its first
    /// literal `<|im_start|>system\n...<|im_end|>` (Qwen2.5: "You are Qwen, created by Alibaba Cloud.
    /// You are a helpful assistant."; SmolLM2: "You are a helpful AI assistant named SmolLM, trained by
    /// Hugging Face"); nil when the template has none.
    public var defaultSystemPrompt: String? { chatTemplate.flatMap(Self.defaultSystemPrompt(inTemplate:)) }

    public static func defaultSystemPrompt(inTemplate t: String) -> String? {
        // Every literal "<|im_start|>system" + newline (escaped in a Jinja string, or real) ... "<|im_end|>";
        // the first whose text is plain (no Jinja expression or string concatenation in it).
        var from = t.startIndex
        while let open = t.range(of: "<|im_start|>system", range: from..<t.endIndex) {
            from = open.upperBound
            var body = t[open.upperBound...]
            if body.hasPrefix("\\n") { body = body.dropFirst(2) } else if body.hasPrefix("\n") { body = body.dropFirst(1) } else { continue }
            guard let end = body.range(of: "<|im_end|>") else { continue }
            let text = String(body[..<end.lowerBound])
            if !text.isEmpty && !text.contains(where: { "{}'\"+".contains($0) }) { return text }
        }
        return nil
    }

    /// A ChatML conversation ending with the assistant's turn opened.
    public func chatPrompt(history: [(user: String, assistant: String)], user: String, system: String?) -> String {
        var s = ""
        if let sys = system ?? defaultSystemPrompt { s += "<|im_start|>system\n\(sys)<|im_end|>\n" }
        for turn in history {
            s += "<|im_start|>user\n\(turn.user)<|im_end|>\n<|im_start|>assistant\n\(turn.assistant)<|im_end|>\n"
        }
        return s + "<|im_start|>user\n\(user)<|im_end|>\n<|im_start|>assistant\n"
    }

    /// Ids that end an answer: the file's EOS and every end-of-generation text llama.cpp knows
    /// (`<|im_end|>`, `<|endoftext|>`, ...) that the vocabulary has.
    public var stopTokens: Set<Int32> {
        var s = Set(ByteLevelBPETokenizer.eogTexts.compactMap { tokenizer.tokenID(of: $0) }.map(Int32.init))
        if let e = tokenizer.eosTokenID { s.insert(Int32(e)) }
        return s
    }

    /// Qwen2.5's generation_config.json defaults (temperature 0.7, top-p 0.8, top-k 20), which GGUF
    /// files do not carry; `--greedy` and the other options override them.
    public static let defaultSampling = SamplingOptions(doSample: true, temperature: 0.7, topK: 20, topP: 0.8)

    public struct Answer: Codable, Sendable {
        public var text: String
        public var generatedIds: [Int32]
        public var promptTokens: Int
        public var prefillSeconds: Double
        public var decodeSeconds: Double
        public var stopped: Bool
    }

    /// Generates the answer to a rendered prompt. `onText` receives the answer's text as it grows
    /// (whole UTF-8 characters only, control tokens never shown); `shouldStop` is polled per token.
    public func answer(prompt: String, maxNewTokens: Int, sampling: SamplingOptions,
                       onText: ((String) -> Void)? = nil, shouldStop: (() -> Bool)? = nil) throws -> Answer {
        let ids = tokenizer.encode(prompt, addSpecial: true, parseSpecial: true).map(Int32.init)
        if let maxPos = model.dims.maxPositions, ids.count + maxNewTokens > maxPos {
            throw ModelError.input(message: "the prompt (\(ids.count) tokens) and --max-new-tokens \(maxNewTokens) exceed the model's context of \(maxPos)")
        }
        let stop = stopTokens
        var generated: [Int32] = []
        var shown = ""   // what onText has received: always a prefix of the final text
        var firstTokenAt: Date?
        var stopped = false
        let t0 = Date()
        let all = try model.generate(prompt: ids, maxNewTokens: maxNewTokens, sampling: sampling, stop: stop) { id in
            if firstTokenAt == nil { firstTokenAt = Date() }
            generated.append(id)
            if let onText, let bytes = try? self.tokenizer.decodeBytes(generated.map(Int.init), skipSpecialTokens: true) {
                // Whole characters only; a piece is shown once the text decoded so far extends what
                // was shown (an invalid byte sequence may decode differently once its neighbours come).
                let now = String(decoding: bytes[..<Self.completeUTF8Prefix(bytes)], as: UTF8.self)
                if now.count > shown.count && now.hasPrefix(shown) {
                    onText(String(now.dropFirst(shown.count)))
                    shown = now
                }
            }
            if shouldStop?() == true { stopped = true; return false }
            return true
        }
        let end = Date()
        let prefill = (firstTokenAt ?? end).timeIntervalSince(t0)
        let answerIds = all.filter { !stop.contains($0) }
        let text = String(decoding: try tokenizer.decodeBytes(answerIds.map(Int.init), skipSpecialTokens: true), as: UTF8.self)
        if let onText, text.count > shown.count, text.hasPrefix(shown) { onText(String(text.dropFirst(shown.count))) }
        return Answer(text: text, generatedIds: all, promptTokens: ids.count, prefillSeconds: prefill,
                      decodeSeconds: end.timeIntervalSince(firstTokenAt ?? end), stopped: stopped)
    }

    /// The length of the longest prefix of `bytes` that ends on a UTF-8 character boundary.
    static func completeUTF8Prefix(_ bytes: [UInt8]) -> Int {
        var i = bytes.count
        var back = 0
        while i > 0 && back < 4 {
            let b = bytes[i - 1]
            if b & 0xC0 != 0x80 {   // a lead byte or ASCII at i-1
                let need = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                return back + 1 >= need ? bytes.count : i - 1
            }
            i -= 1; back += 1
        }
        return bytes.count
    }
}
