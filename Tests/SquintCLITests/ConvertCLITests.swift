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
