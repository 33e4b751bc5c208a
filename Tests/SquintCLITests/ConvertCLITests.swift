import Foundation
import XCTest
import TestSupport

/// `squint convert` end to end: the JSON report and log against the official AutoGPTQ run's per-module
/// log, and refusals as one line with exit code 1 and nothing written.
final class ConvertCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("cli-convert") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func synthTiny() throws -> String {
        let model = "\(tmp)/model"
        let r = try Fixtures.run(squint, ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"), "--seed", "20240611",
                                          "--vocab", Fixtures.path("tokenizer/qwen.tiktoken"), "-o", model])
        XCTAssertEqual(r.status, 0, r.err)
        return model
    }

    func testConvertJSONReportsTheOfficialModulesAndLosses() throws {
        let model = try synthTiny()
        let r = try Fixtures.run(squint, ["convert", model, "--calib", Fixtures.path("calibration/pairs.jsonl"),
                                          "-o", "\(tmp)/tiny.sq4", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
        let modules = obj["modules"] as! [[String: Any]]
        let ref = (try Fixtures.json("qwen-vl-tiny/int4/gptq_log.json") as! [String: Any])["modules"] as! [[String: Any]]
        XCTAssertEqual(modules.map { $0["module"] as! String }, ref.map { $0["module"] as! String })
        for (m, w) in zip(modules, ref).prefix(5) {   // block 0: the same inputs as the official run
            XCTAssertEqual(m["avg_loss"] as! Double, w["avg_loss"] as! Double, accuracy: 1e-4 * (w["avg_loss"] as! Double))
        }
        XCTAssertEqual(obj["tokens"] as? Int, 2582)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(tmp)/tiny.sq4.log.json"))
        XCTAssertTrue(r.err.contains("convert ["), "no progress line on stderr")

        // A second run refuses to replace the file: one line, exit 1, the file untouched.
        let before = try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/tiny.sq4"))
        let again = try Fixtures.run(squint, ["convert", model, "--calib", Fixtures.path("calibration/pairs.jsonl"), "-o", "\(tmp)/tiny.sq4"])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.err.contains("already exists"), again.err)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(tmp)/tiny.sq4")), before)
    }

    /// The closing size summary (as llama-quantize's) against arithmetic from the tiny config:
    /// 2 blocks x (c_attn 128x384 + c_proj 128x128 + w1, w2 128x384 + mlp.c_proj 384x128) = 425,984
    /// weights; symmetric 4-bit codes with one F16 scale per 128 inputs = 4 + 16/128 = 4.125 bits.
    func testConvertEndsWithASizeSummaryAndAlignedLog() throws {
        let model = try synthTiny()
        let out = "\(tmp)/rtn.sq4"
        let r = try Fixtures.run(squint, ["convert", model, "--method", "rtn", "-o", out])
        XCTAssertEqual(r.status, 0, r.err)
        let j = try Fixtures.run(squint, ["convert", model, "--method", "rtn", "-o", "\(tmp)/rtn2.sq4", "--json"])
        let sizes = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as! [String: Any])["sizes"] as? [String: Any])
        XCTAssertEqual(sizes["quantized_weights"] as? Int, 425_984)
        XCTAssertEqual(sizes["quantized_bits_per_weight"] as! Double, 4.125, accuracy: 1e-12)
        func size(_ p: String) throws -> Int { (try FileManager.default.attributesOfItem(atPath: p)[.size] as! NSNumber).intValue }
        XCTAssertEqual(sizes["input_bytes"] as? Int, try size(model + "/model.safetensors"))
        let outBytes = try size("\(tmp)/rtn2.sq4") + size("\(tmp)/rtn2.sq4.log.json")
        XCTAssertEqual(sizes["output_bytes"] as? Int, outBytes)
        // BF16 source: 2 bytes a parameter plus the safetensors header.
        let params = sizes["parameters"] as! Int, input = sizes["input_bytes"] as! Int
        XCTAssertTrue(input - 2 * params > 0 && input - 2 * params < 65_536, "\(input) bytes for \(params) parameters")

        XCTAssertTrue(r.out.contains("4.125 bits per weight"), r.out)
        XCTAssertTrue(r.out.contains("peak memory (max RSS)"), r.out)
        // Every row of the per-module table has its columns at the same offsets as the header.
        let rows = r.out.split(separator: "\n").filter { $0.hasPrefix("  transformer.h.") || $0.hasPrefix("  module ") }
        XCTAssertEqual(rows.count, 11)
        XCTAssertEqual(Set(rows.map(\.count)).count, 1, rows.joined(separator: "\n"))
    }

    func testOptionErrorsAreRefusedBeforeAnyWork() throws {
        for args in [["--format", "gguf"], ["--method", "awq"], ["--memory-budget", "lots"], ["--resume", "--force"]] {
            let r = try Fixtures.run(squint, ["convert", "\(tmp)/none", "--calib", "x.jsonl", "-o", "\(tmp)/o"] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(tmp)/o"))
        }
        let r = try Fixtures.run(squint, ["convert", "\(tmp)/none", "-o", "\(tmp)/o"])
        XCTAssertTrue(r.err.contains("--calib"), r.err)
    }
}
