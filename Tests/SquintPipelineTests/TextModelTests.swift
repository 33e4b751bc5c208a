import Foundation
import XCTest
import SquintFormats
import SquintModels
import SquintTensor
import SquintTokenizer
@testable import SquintPipeline
import TestSupport

/// A real GGUF file on disk, written from the tiny random Qwen2ForCausalLM that transformers made
/// (fixtures/decoders/qwen2-tiny), opened back through `TextModel` (GGUF reader -> dequantisation ->
/// llama.cpp's names and metadata keys -> the shared decoder -> the file's tokenizer): its logits must
/// be transformers' own, and `squint perplexity` on it must be the perplexity of those logits.
final class TextModelTests: XCTestCase {
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("textmodel") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    /// The tiny Qwen2 written as a GGUF v3 file with F32 tensors under llama.cpp's names.
    func writeTinyQwen2GGUF() throws -> (path: String, ref: FixtureSafetensors) {
        let path = tmp + "/qwen2-tiny.gguf"
        try Self.writeTinyQwen2GGUF(to: path)
        return (path, try FixtureSafetensors(path: fixturePath("decoders/qwen2-tiny") + "/reference.safetensors"))
    }

    /// The same to `path` (TestSupport's writer); `blockType` and `vocabulary` as there.
    static func writeTinyQwen2GGUF(to path: String, blockType: GGMLType = .f32, vocabulary: [String]? = nil) throws {
        try TinyDecoderGGUF.write(to: path, blockType: blockType, vocabulary: vocabulary)
    }

    func testGGUFFileGivesTransformersLogits() throws {
        let (path, ref) = try writeTinyQwen2GGUF()
        XCTAssertTrue(TextModel.canOpen(path))
        let m = try TextModel.open(path)
        XCTAssertEqual(m.model.architecture.name, "qwen2")
        XCTAssertEqual(m.tokenizer.vocabularySize, m.model.dims.vocab)
        let ids = try ref.ints("input_ids").values
        let r = try m.model.prefill(tokens: ids, cache: m.model.makeCache())
        // Same float32 graph as transformers; bounds as DecoderParityTests (rtol 1e-5, atol 1e-4 on
        // logits of magnitude ~3: summation order and libm last bits only).
        let e = try ref.floats("logits").values
        XCTAssertEqual(r.logits.data.count, e.count)
        var worst: Float = 0
        for (a, b) in zip(r.logits.data, e) { worst = max(worst, abs(a - b) / (1e-4 + 1e-5 * abs(b))) }
        XCTAssertLessThanOrEqual(worst, 1, "logits differ from transformers beyond the float32 bound")
    }

    /// Float tensors of a GGUF are used where they lie in the mapped file, not copied to float32 (a
    /// 1.5B F16 model would otherwise cost 6 GB): every block linear's weight is the file's own F16
    /// bytes. The logits equal those of the copying path bit for bit: widening F16 is exact, and this
    /// model's layers are narrow enough for one widened tile, so both run the same sgemm.
    func testFloatTensorsAreUsedInPlaceNotCopied() throws {
        let path = tmp + "/f16.gguf"
        try Self.writeTinyQwen2GGUF(to: path, blockType: .f16)
        let m = try TextModel.open(path)
        let file = try XCTUnwrap(m.gguf)
        for l in 0..<m.model.dims.layers {
            for k in m.model.dims.blockLinears {
                let lin = try XCTUnwrap(m.model.linear(layer: l, k) as? Linear)
                XCTAssertEqual(lin.weightView.info.dtype, .f16)
                XCTAssertEqual(lin.weightView.bytes.baseAddress, try file.bytes(named: lin.name).baseAddress, "\(lin.name): not a copy")
            }
        }
        let shapes = file.ggufTensors.map { ($0.name, $0.shape) }
        let copied = try DecoderLM.fromGGUF(architecture: m.model.architecture, dims: m.model.dims, shapes: shapes, path: path) {
            try GGUFDequant.dequantize(try XCTUnwrap(file.ggufTensor(named: $0)), of: file)
        }
        XCTAssertEqual((copied.linear(layer: 0, .q) as? Linear)?.weightView.info.dtype, .f32)
        let ids: [Int32] = [5, 261, 116, 104, 101, 32, 263, 264]
        let a = try m.model.prefill(tokens: ids, cache: m.model.makeCache()).logits.data
        let b = try copied.prefill(tokens: ids, cache: copied.makeCache()).logits.data
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern))
    }

    func testPerplexityOfTheFileIsThatOfItsLogits() throws {
        let (path, _) = try writeTinyQwen2GGUF()
        let m = try TextModel.open(path)
        let text = "the theme in the thin thing then the end; " + String(repeating: "this is the text that the tiny model reads. ", count: 6)
        let ids = m.tokenizer.encode(text, addSpecial: true, parseSpecial: false).map(Int32.init)
        XCTAssertGreaterThanOrEqual(ids.count, 64)
        let r = try m.perplexity(text: text, context: 32)
        XCTAssertEqual(r.windows, ids.count / 32)
        XCTAssertEqual(r.scoredTokens, r.windows * 15)
        // Independently: the whole window's logits (no row selection, no cache reuse) and a
        // double-precision log-softmax of each scored position.
        var nll: [Double] = []
        for i in 0..<r.windows {
            let w = Array(ids[(i * 32)..<((i + 1) * 32)])
            let logits = try m.model.prefill(tokens: w, cache: m.model.makeCache()).logits
            let vocab = m.model.dims.vocab
            for p in 16..<31 {
                let row = logits.data[(p * vocab)..<((p + 1) * vocab)].map(Double.init)
                let mx = row.max()!
                let lse = mx + log(row.map { exp($0 - mx) }.reduce(0, +))
                nll.append(lse - row[Int(w[p + 1])])
            }
        }
        let mean = nll.reduce(0, +) / Double(nll.count)
        XCTAssertEqual(r.meanNLL, mean, accuracy: 1e-5 * mean)
        XCTAssertEqual(r.perplexity, exp(mean), accuracy: 1e-5 * exp(mean))
    }

    /// `run`'s text path: the prompt in ChatML with the template's default system prompt, control
    /// tokens parsed as such, and greedy ids equal to the Hugging Face folder's model (checked
    /// against transformers in DecoderParityTests) generating from the same prompt ids.
    func testGreedyAnswerFollowsTheFolderModelFromTheChatMLPrompt() throws {
        let (path, _) = try writeTinyQwen2GGUF()
        let m = try TextModel.open(path)
        try m.checkChatFormat()
        XCTAssertEqual(m.defaultSystemPrompt, "You are a tiny test model.")
        let prompt = m.chatPrompt(history: [("hi", "the end")], user: "the thin", system: nil)
        XCTAssertEqual(prompt, "<|im_start|>system\nYou are a tiny test model.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                       + "<|im_start|>assistant\nthe end<|im_end|>\n<|im_start|>user\nthe thin<|im_end|>\n<|im_start|>assistant\n")
        let ids = m.tokenizer.encode(prompt, addSpecial: true, parseSpecial: true).map(Int32.init)
        let imStart = Int32(m.tokenizer.tokenID(of: "<|im_start|>")!)
        XCTAssertEqual(ids.filter { $0 == imStart }.count, 5)          // parsed as control tokens, not as text
        var shown = ""
        let a = try m.answer(prompt: prompt, maxNewTokens: 12, sampling: .greedy, onText: { shown += $0 })
        let folder = try DecoderLM.load(folder: fixturePath("decoders/qwen2-tiny"))
        let expected = try folder.generateGreedy(prompt: ids, steps: 12).ids
        let stop = m.stopTokens
        let cut = expected.firstIndex(where: { stop.contains($0) }).map { $0 + 1 } ?? expected.count
        XCTAssertEqual(a.generatedIds, Array(expected[..<cut]))
        XCTAssertEqual(a.promptTokens, ids.count)
        XCTAssertEqual(shown, a.text)
        XCTAssertFalse(a.text.contains("<|"), "control tokens must not be shown: \(a.text)")
    }

    /// Qwen2.5's template opens the system turn in a tools branch first (with a Jinja expression
    /// inside), and only its plain branch holds the default text; SmolLM2's writes a real newline.
    func testDefaultSystemPromptIsTheTemplatesPlainSystemTurn() {
        let qwen = "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
            + "        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}"
            + "\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
            + "\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
        XCTAssertEqual(TextModel.defaultSystemPrompt(inTemplate: qwen), "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        let smol = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
            + "trained by Hugging Face<|im_end|>\n' }}{% endif %}"
        XCTAssertEqual(TextModel.defaultSystemPrompt(inTemplate: smol), "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        XCTAssertNil(TextModel.defaultSystemPrompt(inTemplate: "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}"))
    }

    func testRefusesNonDecoderGGUFAndUnknownArchitecturesByName() throws {
        let w = GGUFWriter()
        try w.add(key: "general.architecture", .string("mamba"))
        try w.addTensor(name: "x", type: .f32, shape: [2], values: [1, 2])
        try w.write(to: tmp + "/m.gguf", overwrite: false)
        XCTAssertThrowsError(try TextModel.open(tmp + "/m.gguf")) {
            XCTAssertTrue("\($0)".contains("architecture 'mamba' is not one Squint runs"), "\($0)")
        }
    }
}
