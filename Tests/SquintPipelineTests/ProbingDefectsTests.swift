import Foundation
import XCTest
import SquintFormats
import SquintModels
import SquintTokenizer
import SquintImage
@testable import SquintPipeline
import TestSupport

/// Issue 17 ("defects found by probing the tool from outside"), at the pipeline level: each test
/// stands for a class of defect and failed before its fix.
final class ProbingDefectsTests: XCTestCase {
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("probing") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }
    static var vocab: String { Fixtures.path("tokenizer/qwen.tiktoken") }

    // MARK: - Item 5: inspect --stats says where non-finite values are

    func testStatsCountNonFiniteValuesAndLocateTheFirst() throws {
        let path = tmp + "/nan.safetensors"
        let tensors: [SafetensorsWriter.Tensor] = [.init(name: "ok", dtype: .f32, shape: [3]), .init(name: "bad", dtype: .f32, shape: [2, 3]),
                                                   .init(name: "evil\nname", dtype: .bf16, shape: [4])]
        let values: [String: [UInt8]] = [
            "ok": [Float(1), 2, 3].withUnsafeBytes { Array($0) },
            "bad": [Float(0), 1, 2, .infinity, 4, .nan].withUnsafeBytes { Array($0) },      // Inf at [1, 0], NaN at [1, 2]
            "evil\nname": [UInt16(0x3F80), 0x7FC0, 0x3F80, 0x3F80].withUnsafeBytes { Array($0) },   // BF16 1, NaN, 1, 1
        ]
        try SafetensorsWriter(tensors: tensors, path: path).write(to: path, overwrite: false) { values[$0.name]! }
        let ck = try CheckpointOpener.open(path)
        let r = try Inspector.inspect(ck.file, format: ck.format, config: nil, quantization: nil, stats: true)
        XCTAssertEqual(r.nonFinite, NonFiniteSummary(tensors: 2, nan: 2, inf: 1, firstTensor: "bad", firstIndex: [1, 0]))
        let text = InspectText.render(r)
        XCTAssert(text.contains("  non-finite: 2 NaN and 1 Inf values in 2 tensors; the first is bad[1, 0]\n"), text)
        // Item 3: the hostile name is one escaped line of the table, not two.
        XCTAssert(text.contains("evil\\nname "), text)
        XCTAssertFalse(text.contains("evil\nname"), text)
        // Every value finite: no summary.
        let fine = try Inspector.inspect(ck.file, format: ck.format, config: nil, quantization: nil,
                                         filter: try NSRegularExpression(pattern: "^ok$"), stats: true)
        XCTAssertNil(fine.nonFinite)
    }

    // MARK: - Item 2: checksums of torch files, shard by shard

    func testChecksumsOfAShardedTorchCheckpointAreVerifiedAndTheCorruptEntryNamed() throws {
        let folder = tmp + "/sharded"
        try FileManager.default.copyItem(atPath: Fixtures.path("torch/sharded"), toPath: folder)
        let ck = try CheckpointOpener.open(folder)
        XCTAssertEqual(try Checksums.verify(ck.file), "the CRC-32s of all 2 shards match")
        // One bit of one tensor in the second shard.
        let shard = folder + "/pytorch_model-00002-of-00002.bin"
        let t = try XCTUnwrap(ck.file.tensors.first { $0.file.hasSuffix("00002-of-00002.bin") && $0.byteCount > 0 })
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: shard)))
        bytes[t.offset] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: shard))
        XCTAssertThrowsError(try Checksums.verify(try CheckpointOpener.open(folder).file)) { e in
            guard case .invalid(let p, let what)? = e as? FormatError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, shard)
            XCTAssert(what.hasPrefix("zip entry '") && what.contains("CRC-32"), what)
        }
        // Formats without checksums say so (nil), and a legacy pickle has none.
        XCTAssertNil(try Checksums.verify(try SafetensorsFile(path: Fixtures.path("safetensors/no_metadata.safetensors"))))
        XCTAssertNil(try Checksums.verify(try TorchCheckpoint(path: Fixtures.path("torch/legacy.pt"))))
    }

    // MARK: - Item 7: one reader, one set of rules, for convert and validate

    func pairsFolder() throws -> String {
        let dir = tmp + "/pairs"
        try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.path("calibration/images/skimage_chelsea.png"), toPath: dir + "/images/cat.png")
        return dir
    }

    /// Both commands' readers on the same bytes: the same result or the same error.
    func bothReaders(_ bytes: [UInt8], in dir: String) throws -> (convert: Result<[Int], Error>, validate: Result<[Int], Error>) {
        let p = dir + "/pairs.jsonl"
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        let tok = try QwenTokenizer(vocabularyFile: Self.vocab)
        return (Result { try CalibrationSet(path: p, tokenizer: tok).samples.map(\.line) },
                Result { _ = try ValidationSample.load(pairs: p, tokenizer: tok); return try ImageTextPairs(path: p).pairs.map(\.line) })
    }

    func testConvertAndValidateReadPairsFilesByTheSameRules() throws {
        let dir = try pairsFolder()
        let p = dir + "/pairs.jsonl"
        let good = Array(#"{"image": "images/cat.png", "prompt": "Describe this image.", "caption": "A cat."}"#.utf8)
        // A leading BOM is skipped by both; CRLF line ends too.
        var r = try bothReaders([0xEF, 0xBB, 0xBF] + good + Array("\r\n\r\n".utf8) + good, in: dir)
        XCTAssertEqual(try r.convert.get(), [1, 3])
        XCTAssertEqual(try r.validate.get(), [1, 3])
        // Refusals: the same PairsFileError from both.
        let hostile: [([UInt8], PairsFileError)] = [
            (good + [0x0A] + Array(#"{"image": "images/cat.png", "prompt": "x"#.utf8) + [0xFF] + Array(#"", "caption": "y"}"#.utf8),
             .line(path: p, line: 2, problem: "not valid UTF-8 (byte 41 of the line, 0xff)")),
            (Array(#"{"image": "images/cat.png\u0000.txt", "prompt": "x", "caption": "y"}"#.utf8),
             .line(path: p, line: 1, problem: "the image path contains U+0000")),
            (Array(#"{"image": "images/cat.png", "prompt": "x", "caption": "y", "extra": 1}"#.utf8),
             .line(path: p, line: 1, problem: "unknown key \"extra\" (expected image, prompt, caption)")),
            (Array("\n \t\n".utf8), .file(path: p, problem: "no image-text pairs in the file")),
            (good + [0x0A] + Array(#"{"image": "images/dog.png", "prompt": "x", "caption": "y"}"#.utf8),
             .image(path: p, line: 2, image: "images/dog.png", problem: "no such file (looked at \(dir)/images/dog.png)")),
        ]
        for (bytes, expected) in hostile {
            r = try bothReaders(bytes, in: dir)
            for got in [r.convert, r.validate] {
                guard case .failure(let e) = got else { XCTFail("accepted: \(expected)"); continue }
                XCTAssertEqual(e as? PairsFileError, expected)
            }
        }
        // The image reader itself refuses a path with U+0000 (open(2) would use the prefix's file).
        XCTAssertThrowsError(try RGBImage.load(path: dir + "/images/cat.png\u{0}.txt")) {
            XCTAssertEqual("\($0)", "\(dir)/images/cat.png\\x00.txt: cannot read image: the path contains U+0000")
        }
        // A missing file is "cannot open", never "line 0".
        let none = dir + "/none.jsonl"
        XCTAssertThrowsError(try ImageTextPairs(path: none)) { XCTAssertEqual("\($0)", "\(none): cannot open the file: no such file") }
    }

    // MARK: - Item 6: samples are capped at the model's context

    func testALongCalibrationSampleIsCutToTheContextWithAWarning() throws {
        let dir = try pairsFolder()
        let p = dir + "/pairs.jsonl"
        let caption = Array(repeating: "word", count: 5000).joined(separator: " ")
        try #"{"image": "images/cat.png", "prompt": "Describe this image.", "caption": "\#(caption)"}"#
            .write(toFile: p, atomically: true, encoding: .utf8)
        let tok = try QwenTokenizer(vocabularyFile: Self.vocab)
        let full = try CalibrationSet(path: p, tokenizer: tok)
        XCTAssertGreaterThan(full.samples[0].tokens.count, 5000)
        XCTAssertEqual(full.warnings, [])
        let capped = try CalibrationSet(path: p, tokenizer: tok, maxTokens: 2048)
        XCTAssertEqual(capped.samples[0].tokens, Array(full.samples[0].tokens.prefix(2048)))
        XCTAssertEqual(capped.warnings, ["\(p):1: the pair renders to \(full.samples[0].tokens.count) tokens; only the first 2048 are used "
                                         + "(the model's context, seq_length)"])
        // A context that alone fills the model's context is refused (nothing would be calibrated on the caption).
        XCTAssertThrowsError(try CalibrationSet(path: p, tokenizer: tok, maxTokens: 100)) { e in
            guard case .calibrationLine(p, 1, let w)? = e as? ConvertError else { return XCTFail("\(e)") }
            XCTAssert(w.contains("at or beyond the model's context of 100 (seq_length)"), w)
        }
        // validate's samples: the same cap.
        let s = ValidationSample(label: "cat", ids: full.samples[0].tokens.map(Int32.init), contextLength: 290, pixelValues: nil)
        let cut = try XCTUnwrap(try s.capped(to: 2048))
        XCTAssertEqual(cut.ids, Array(s.ids.prefix(2048)))
        XCTAssertEqual(cut.contextLength, 290)
        XCTAssertNil(try cut.capped(to: 2048))
        XCTAssertThrowsError(try s.capped(to: 290))
    }

    // MARK: - Items 4 and 8: convert's outputs and state

    /// A tiny BF16 model folder (safetensors or torch bin shards) with its vocabulary.
    func tinyModel(_ format: Synth.Format, _ name: String) throws -> String {
        let out = "\(tmp)/\(name)"
        _ = try Synth.run(.init(configPath: Fixtures.path("qwen-vl-tiny/config.json"), seed: 20240611, format: format,
                                maxShardSize: 40_000_000, output: out, vocabPath: Self.vocab))
        return out
    }

    func testAutoGPTQFolderAppearsWithItsLogOrNotAtAllAndAFinishedRunIsNotResumed() throws {
        let model = try tinyModel(.safetensors, "model")
        var o = ConvertOptions(model: model, calibration: nil, output: "\(tmp)/out")
        o.method = .rtn; o.format = .autogptq
        var sawLog = false
        o.beforePublish = { staging in
            sawLog = FileManager.default.fileExists(atPath: "\(staging)/convert_log.json")
            throw ConvertError.interrupted(afterBlock: 1)      // a kill just before the rename
        }
        XCTAssertThrowsError(try Converter.run(o))
        XCTAssertTrue(sawLog, "the log must be in the folder before it is moved into place")
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.output))
        o.beforePublish = nil
        o.resume = true
        let r = try Converter.run(o)
        XCTAssertEqual(r.resumedFromBlock, 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(o.output)/convert_log.json"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: Converter.workFolder(for: o.output)))
        // --resume of the finished output: it says so (it used to answer "already exists").
        XCTAssertThrowsError(try Converter.run(o)) { e in
            XCTAssertEqual(e as? ConvertError, .workState(path: o.output, problem: "already complete: there is nothing to resume (pass --force to convert again)"))
        }
    }

    func testACalibrationErrorLeavesNoWorkFolder() throws {
        let model = try tinyModel(.safetensors, "model")
        let dir = try pairsFolder()
        try Data("not a PNG".utf8).write(to: URL(fileURLWithPath: dir + "/images/cat.png"))    // exists, does not decode
        try #"{"image": "images/cat.png", "prompt": "Describe this image.", "caption": "A cat."}"#
            .write(toFile: dir + "/pairs.jsonl", atomically: true, encoding: .utf8)
        let o = ConvertOptions(model: model, calibration: dir + "/pairs.jsonl", output: "\(tmp)/o.sq4")
        XCTAssertThrowsError(try Converter.run(o)) { e in
            guard case .calibrationImage(_, 1, "images/cat.png", _)? = e as? ConvertError else { return XCTFail("\(e)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.output))
        XCTAssertFalse(FileManager.default.fileExists(atPath: Converter.workFolder(for: o.output)), "empty state folder left behind")
    }

    func testATorchSourceIsVerifiedBeforeConversionUnlessTurnedOff() throws {
        let model = try tinyModel(.bin, "torch")
        let ck = try CheckpointOpener.open(model)
        let t = try XCTUnwrap(ck.file.tensors.first { $0.name == "transformer.h.1.mlp.w2.weight" })
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: t.file)))
        bytes[t.offset + 1000] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: t.file))
        var o = ConvertOptions(model: model, calibration: nil, output: "\(tmp)/o.sq4")
        o.method = .rtn
        XCTAssertThrowsError(try Converter.run(o)) { e in
            guard case .invalid(t.file, let what)? = e as? FormatError else { return XCTFail("\(e)") }
            XCTAssert(what.contains("CRC-32"), what)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: o.output))
        XCTAssertFalse(FileManager.default.fileExists(atPath: Converter.workFolder(for: o.output)))
        o.verifyChecksums = false
        XCTAssertNoThrow(try Converter.run(o))
        XCTAssertTrue(FileManager.default.fileExists(atPath: o.output))
    }

    // MARK: - Item 1, the same class elsewhere: Int(Double) of values from outside

    func testSizesAndBoxCoordinatesFromOutsideCannotOverflowAnIntConversion() throws {
        XCTAssertEqual(Synth.parseSize("4GB"), 4_000_000_000)
        for text in ["infGB", "1e300GB", "nanGB", "-1GB", "1e19B"] { XCTAssertNil(Synth.parseSize(text), text) }
        // A box far outside the 0...1000 grid (from the model's text) draws as one clamped to +-10^6:
        // clipped off-image, as before, instead of trapping in the Int conversion.
        let src = tmp + "/grey.png"
        try RGBImage(width: 30, height: 20, fill: (128, 128, 128)).writePNG(path: src)
        try Runner.drawBoxes([.init(ref: nil, x1: Int.min, y1: 100, x2: Int.max, y2: 500)], imagePath: src, output: tmp + "/a.png", overwrite: false)
        try Runner.drawBoxes([.init(ref: nil, x1: -1_000_000, y1: 100, x2: 1_000_000, y2: 500)], imagePath: src, output: tmp + "/b.png", overwrite: false)
        XCTAssertEqual(try RGBImage.load(path: tmp + "/a.png").pixels, try RGBImage.load(path: tmp + "/b.png").pixels)
        XCTAssertNotEqual(try RGBImage.load(path: tmp + "/a.png").pixels, try RGBImage.load(path: src).pixels)   // the box's edges are drawn
    }

    /// Headers alone can declare sizes whose sum overflows (torch broadcast views of up to 2^63 bytes
    /// over a one-element storage): inspect's totals saturate instead of trapping.
    func testInspectTotalsOfHugeDeclaredSizesSaturate() throws {
        final class Declared: TensorFile {
            let path = "<declared>"
            let tensors: [TensorInfo]
            var metadata: [String: String] { [:] }
            init(_ t: [TensorInfo]) { tensors = t }
            func view(_ name: String) throws -> TensorView { throw FormatError.missingTensor(path: path, name: name) }
        }
        let big = 1 << 62
        let file = Declared([TensorInfo(name: "a.w", dtype: .u8, shape: [big], file: "<declared>", offset: 0, byteCount: big),
                             TensorInfo(name: "a.v", dtype: .u8, shape: [big], file: "<declared>", offset: 0, byteCount: big)])
        let r = try Inspector.inspect(file, format: "pytorch", config: nil, quantization: nil)
        XCTAssertEqual(r.totalBytes, Int.max)
        XCTAssertEqual(r.totalsByDtype, [DTypeTotal(dtype: "U8", tensors: 2, elements: Int.max, bytes: Int.max)])
        XCTAssertEqual(r.modules.map(\.bytes), [Int.max])
    }
}
