import Foundation
import TestSupport
import XCTest

/// Replays every committed fuzz seed and regression file (fixtures/fuzz/<harness>/, issue 12.2) through
/// the same harness code the fuzzer runs (FuzzHarnesses.swift, symlinked from Fuzz/): each input must
/// either be read or be refused with the reader's own typed error. Regression files are inputs that
/// once crashed a reader; a trap here fails the whole run, which is the point.
final class FuzzCorpusReplayTests: XCTestCase {
    /// Seeds that are valid files of their format: they must be read without any error, so the replay
    /// cannot pass merely because every reader refuses everything.
    static let mustParse: [FuzzHarness: [String]] = [
        .safetensors: ["all_dtypes.safetensors", "mha.safetensors", "no_tensors.safetensors"],
        .shardIndex: ["safetensors_sharded.index.json", "qwen_vl_tiny.index.json"],
        .torchZip: ["all_dtypes.pt", "module_state.pt", "views.pt"],
        .torchLegacy: ["legacy.pt"],
        .sq4: ["tiny.sq4"],
        .autogptq: ["tiny_module"],
        .config: ["qwen_vl_tiny.json", "qwen_vl_chat_bf16.json"],
        .json: ["quantize_config.json", "config.json"],
        .calibration: ["two_pairs.jsonl"],
        .png: ["png_rgb8_1x1.png", "png_palette8_trns_33x25.png"],
        .jpeg: ["jpeg_rgb_1x1.jpg", "jpeg_grey_progressive_33x65.jpg"],
        .tokenizerJSON: ["gpt2.json", "smollm.json", "qwen2-nfc.json", "llama3-sequence.json"],
        .kld: ["ctx4_vocab3_1chunk.kld", "ctx8_vocab16_2chunks.kld"],
    ]

    func testEveryCorpusAndRegressionFileIsReadOrRefusedWithTheReadersTypedError() throws {
        let root = Fixtures.path("fuzz")
        for harness in FuzzHarness.allCases {
            let folder = root + "/" + harness.rawValue
            let files = try inputs(under: folder)
            XCTAssertFalse(files.isEmpty, "no seeds in \(folder)")
            let context = try FuzzContext(harness: harness, fixtures: Fixtures.path(""))
            var parsed = Set<String>()
            for file in files {
                let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
                do {
                    try context.run(bytes)
                    parsed.insert((file as NSString).lastPathComponent)
                } catch {
                    XCTAssertTrue(harness.isExpected(error),
                                  "\(harness.rawValue): \(file) was refused with \(type(of: error)) (\(error)), not the reader's typed error")
                }
            }
            for name in Self.mustParse[harness] ?? [] {
                XCTAssertTrue(parsed.contains(name), "\(harness.rawValue): the valid seed \(name) was not read")
            }
        }
    }

    /// Every regular file under `folder` (seeds and regressions/), README.md excepted, sorted.
    private func inputs(under folder: String) throws -> [String] {
        guard let e = FileManager.default.enumerator(atPath: folder) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            let p = folder + "/" + rel
            if FileManager.default.fileExists(atPath: p, isDirectory: &isDir), !isDir.boolValue,
               (rel as NSString).lastPathComponent != "README.md" { out.append(p) }
        }
        return out.sorted()
    }
}
