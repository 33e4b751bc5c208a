import Foundation
import XCTest
import SquintFormats
import TestSupport

/// Issue 17 end to end: hostile numbers in a model's config (config.json or an SQ4 header) and
/// corrupt torch data are one clear error line with exit 1, never a trap or a silent pass.
final class ProbingCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("cli-probing") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func tinyConfig(replacing old: String, with new: String) throws -> String {
        let text = try String(contentsOfFile: Fixtures.path("qwen-vl-tiny/config.json"), encoding: .utf8)
        XCTAssert(text.contains(old))
        return text.replacingOccurrences(of: old, with: new)
    }

    func assertOneLineError(_ r: (status: Int32, out: String, err: String), _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 1, r.err, file: file, line: line)
        XCTAssertEqual(Self.withoutNotes(r.err), "squint: error: \(expected)\n", file: file, line: line)
    }

    /// stderr without the "note: ... synthetic weights" line `run` prints first for a `synth` model.
    static func withoutNotes(_ err: String) -> String {
        err.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("note: ") }.joined(separator: "\n")
    }

    /// Before: SIGILL in Int(Double) ("Double value cannot be converted to Int"), or a negative range.
    func testHostileConfigNumbersInAModelFolderAreOneErrorLine() throws {
        let folder = tmp + "/model"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("safetensors/no_metadata.safetensors"), toPath: folder + "/model.safetensors")
        let cases: [(String, String, String)] = [
            ("\"mlp_ratio\": 4.9231", "\"mlp_ratio\": 1e300", "visual.mlp_ratio is 1e+300, allowed a finite number with 1 <= visual.width * mlp_ratio <= 1048576"),
            ("\"mlp_ratio\": 4.9231", "\"mlp_ratio\": -4.9231", "visual.mlp_ratio is -4.9231, allowed a finite number with 1 <= visual.width * mlp_ratio <= 1048576"),
            ("\"num_hidden_layers\": 2", "\"num_hidden_layers\": -1", "num_hidden_layers is -1, allowed 1...1024"),
            ("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 2147483648", "num_hidden_layers is 2147483648, allowed 1...1024"),
            ("\"num_attention_heads\": 4", "\"num_attention_heads\": 0", "num_attention_heads is 0, allowed 1...1024"),
        ]
        for (old, new, message) in cases {
            try tinyConfig(replacing: old, with: new).write(toFile: folder + "/config.json", atomically: true, encoding: .utf8)
            assertOneLineError(try Fixtures.run(squint, ["inspect", folder]), "\(folder)/config.json: \(message)")
            // synth reads the same config through the same checks.
            assertOneLineError(try Fixtures.run(squint, ["synth", "--config", folder + "/config.json", "-o", tmp + "/out"]),
                               "\(folder)/config.json: \(message)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/out"))
        }
    }

    /// An SQ4 file's header carries the config (its header CRC is valid): the same checks apply.
    func testHostileConfigInAnSQ4HeaderIsOneErrorLine() throws {
        let text = try tinyConfig(replacing: "\"mlp_ratio\": 4.9231", with: "\"mlp_ratio\": 1e300")
        let config = try Array(text.utf8).withUnsafeBytes { try StrictJSON.parseObject($0, path: "config.json", what: "config") }
        let header = SQ4Header(config: config, quantization: SQ4Quantization(), tokenizer: SQ4Tokenizer(),
                               provenance: SQ4Provenance(source: "test", calibration: "none", tool: "test"))
        let path = tmp + "/hostile.sq4"
        let w = try SquintInt4Writer(header: header, linears: [], tensors: [.init(name: "x", dtype: .f32, shape: [1])], path: path)
        try w.write(to: path, overwrite: false) { _, sink in try sink.write([0, 0, 128, 63]) }
        assertOneLineError(try Fixtures.run(squint, ["inspect", path]),
                           "\(path) (header config): visual.mlp_ratio is 1e+300, allowed a finite number with 1 <= visual.width * mlp_ratio <= 1048576")
    }

    /// Before: "pytorch files carry no checksums", exit 0.
    func testInspectVerifyChecksTorchZipCRCs() throws {
        let bad = Fixtures.path("torch/hostile_views/bad_crc.pt")
        let r = try Fixtures.run(squint, ["inspect", bad, "--verify", "--summary"])
        XCTAssertEqual(r.status, 1, r.out)
        let last = r.err.split(separator: "\n").last.map(String.init) ?? ""       // after any progress line
        XCTAssert(last.hasPrefix("squint: error: \(bad): invalid: zip entry 'archive/data/0' CRC-32 is "), r.err)
        let good = try Fixtures.run(squint, ["inspect", Fixtures.path("torch/all_dtypes.pt"), "--verify", "--summary"])
        XCTAssertEqual(good.status, 0, good.err)
        XCTAssert(good.out.contains("checksums: verified: all zip entry CRC-32s match"), good.out)
        let legacy = try Fixtures.run(squint, ["inspect", Fixtures.path("torch/legacy.pt"), "--verify", "--summary"])
        XCTAssertEqual(legacy.status, 0, legacy.err)
        XCTAssert(legacy.out.contains("checksums: none: this pytorch file carries no checksums"), legacy.out)
    }

    /// Item 5: NaN weights are reported where the logits first go bad (before: "!!!!" with exit 0, or
    /// a token id "outside the vocabulary"); a generation_config.json number that would make every
    /// logit NaN (temperature 0) is refused by key.
    func testRunRefusesNaNLogitsAndHostileGenerationSettings() throws {
        let model = tmp + "/model"
        let s = try Fixtures.run(squint, ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"),
                                          "--vocab", Fixtures.path("tokenizer/qwen.tiktoken"), "-o", model])
        XCTAssertEqual(s.status, 0, s.err)
        let weights = model + "/model.safetensors"
        let head = try XCTUnwrap(try SafetensorsFile(path: weights).info("lm_head.weight"))
        XCTAssertEqual(head.dtype, .bf16)
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: weights)))
        let row = head.offset + 100 * head.shape[1] * 2                    // token 100's row, first element
        bytes[row] = 0xC0; bytes[row + 1] = 0x7F                           // BF16 NaN
        try Data(bytes).write(to: URL(fileURLWithPath: weights))

        let generation = model + "/generation_config.json"
        let original = try Data(contentsOf: URL(fileURLWithPath: generation))
        var g = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        g["temperature"] = 0
        try JSONSerialization.data(withJSONObject: g).write(to: URL(fileURLWithPath: generation))
        let t = try Fixtures.run(squint, ["run", model, "--prompt", "hi", "--max-new-tokens", "2"])
        assertOneLineError(t, "\(generation): temperature is 0.0, allowed a number in 1e-6...1e6")
        try original.write(to: URL(fileURLWithPath: generation))

        // A token budget that would overflow the KV cache's size is refused, not a trap.
        assertOneLineError(try Fixtures.run(squint, ["run", model, "--prompt", "hi", "--max-new-tokens", "9223372036854775807"]),
                           "max new tokens is 9223372036854775807, allowed 1...1048576")
        for args in [["--greedy"], []] {
            let r = try Fixtures.run(squint, ["run", model, "--prompt", "hi", "--max-new-tokens", "4"] + args)
            XCTAssertEqual(r.status, 1, r.out)
            let err = Self.withoutNotes(r.err)
            XCTAssert(err.hasPrefix("squint: error: the logits at position ") && err.contains("are not finite (token id 100 is nan)")
                      && err.hasSuffix("`squint inspect --stats` finds them)\n"), r.err)
        }
    }
}
