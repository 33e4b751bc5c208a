import Foundation
import XCTest
import TestSupport

/// The `squint` executable end to end: output, exit codes, and that bad input is reported as one
/// clear line naming the file (never a crash) with nothing left behind.
final class CLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("cli") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func testHelpListsTheSubcommands() throws {
        let r = try Fixtures.run(squint, ["--help"])
        XCTAssertEqual(r.status, 0)
        for c in ["inspect", "synth"] { XCTAssertTrue(r.out.contains(c), r.out) }
    }

    func testInspectJSONListsTensorsWithAbsoluteOffsets() throws {
        let file = Fixtures.path("safetensors/no_metadata.safetensors")
        let r = try Fixtures.run(squint, ["inspect", file, "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
        let files = (try Fixtures.json("safetensors/expected.json") as! [String: Any])["files"] as! [[String: Any]]
        let expected = try XCTUnwrap(files.first { $0["file"] as? String == "no_metadata.safetensors" })
        let rows = obj["tensors"] as! [[String: Any]]
        let want = expected["tensors"] as! [[String: Any]]
        XCTAssertEqual(rows.count, want.count)
        for w in want {
            let row = try XCTUnwrap(rows.first { $0["name"] as? String == w["name"] as? String })
            XCTAssertEqual(row["dtype"] as? String, w["dtype"] as? String)
            XCTAssertEqual(row["shape"] as? [Int], w["shape"] as? [Int])
            XCTAssertEqual(row["offset"] as? Int, w["offset"] as? Int)
            XCTAssertEqual(row["bytes"] as? Int, w["byte_count"] as? Int)
            XCTAssertEqual(row["file"] as? String, file)
        }
        XCTAssertEqual(obj["format"] as? String, "safetensors")
    }

    func testMissingFileIsOneClearErrorLine() throws {
        let r = try Fixtures.run(squint, ["inspect", "\(tmp)/nope.safetensors"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.hasPrefix("squint: error: \(tmp)/nope.safetensors: no such file"), r.err)
    }

    func testTruncatedFileIsReportedNotCrashed() throws {
        let src = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("safetensors/no_metadata.safetensors")))
        let bad = "\(tmp)/cut.safetensors"
        FileManager.default.createFile(atPath: bad, contents: src.prefix(src.count - 3))
        let r = try Fixtures.run(squint, ["inspect", bad])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains(bad), r.err)
        XCTAssertTrue(r.out.isEmpty)
    }

    func testHostilePickleIsRefusedAndNothingRuns() throws {
        let r = try Fixtures.run(squint, ["inspect", Fixtures.path("torch/hostile/os_system.pt")], cwd: tmp)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("refused"), r.err)
        XCTAssertTrue(r.err.contains("system"), r.err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp), [])
    }

    func testDiffExitCodes() throws {
        let a = Fixtures.path("safetensors/no_metadata.safetensors")
        let b = Fixtures.path("safetensors/all_dtypes.safetensors")
        XCTAssertEqual(try Fixtures.run(squint, ["inspect", a, "--diff", a]).status, 0)
        let r = try Fixtures.run(squint, ["inspect", a, "--diff", b, "--json"])
        XCTAssertEqual(r.status, 3)
        let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
        XCTAssertFalse((obj["added"] as! [String]).isEmpty)
    }

    func testSynthThenInspectSummary() throws {
        let out = "\(tmp)/model"
        let s = try Fixtures.run(squint, ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"), "--format", "bin", "-o", out])
        XCTAssertEqual(s.status, 0, s.err)
        let r = try Fixtures.run(squint, ["inspect", out, "--summary"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("layout: qwen-vl-bf16"), r.out)
        XCTAssertTrue(r.out.contains("check: all 61 tensors match config.json"), r.out)
        // A second synth to the same folder is refused and leaves it as it was.
        let again = try Fixtures.run(squint, ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"), "-o", out])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.err.contains("already exists"), again.err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(),
                       ["config.json", "generation_config.json", "pytorch_model.bin"])
    }

    func testBadArgumentsExitWithUsageCode() throws {
        let r = try Fixtures.run(squint, ["synth", "--config", "x.json", "--format", "onnx", "-o", "\(tmp)/o"])
        XCTAssertEqual(r.status, 64)   // EX_USAGE, ArgumentParser's code for a validation error
        XCTAssertTrue(r.err.contains("--format"), r.err)
    }
}

/// `squint tokenize` prints the official ids (fixtures/tokenizer/tokenizer_cases.json).
final class TokenizeCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()

    func testOfficialIdsForEveryCase() throws {
        let cases = (try Fixtures.json("tokenizer/tokenizer_cases.json") as! [String: Any])["cases"] as! [[String: Any]]
        for c in cases.prefix(12) {
            let text = c["text"] as! String
            if text.hasPrefix("-") { continue }   // would be read as an option
            let r = try Fixtures.run(squint, ["tokenize", "--vocab", Fixtures.path("tokenizer/qwen.tiktoken"), "--json", "--", text])
            XCTAssertEqual(r.status, 0, r.err)
            let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as! [String: Any]
            XCTAssertEqual(obj["ids"] as? [Int], c["ids"] as? [Int], c["name"] as? String ?? text)
        }
    }

    func testMissingVocabularyIsAClearError() throws {
        let r = try Fixtures.run(squint, ["tokenize", "--vocab", "/nonexistent/qwen.tiktoken", "hi"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("/nonexistent/qwen.tiktoken"), r.err)
    }
}

/// `squint inspect` of GGUF files end to end.
final class InspectGGUFCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()

    func testGGUFInspectJSONCarriesTheGGUFSection() throws {
        let r = try Fixtures.run(squint, ["inspect", Fixtures.path("gguf/writer_ref.gguf"), "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        XCTAssertEqual(j["format"] as? String, "gguf")
        XCTAssertEqual(j["layout"] as? String, "gguf-qwen2")
        let g = try XCTUnwrap(j["gguf"] as? [String: Any])
        XCTAssertEqual(g["alignment"] as? Int, 32)
        XCTAssertEqual((g["metadata"] as? [[String: Any]])?.count, 12)
        let rows = try XCTUnwrap(j["tensors"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["dtype"] as? String }, ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "F32", "Q8_0", "Q4_0", "Q4_1"])
    }

    func testHostileGGUFIsOneErrorLine() throws {
        let tmp = Fixtures.temporaryFolder("cli-gguf")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        var b = Array("GGUF".utf8) + [3, 0, 0, 0]
        b += [UInt8](repeating: 0xff, count: 8) + [UInt8](repeating: 0, count: 8)   // n_tensors = 2^64-1
        let p = "\(tmp)/bad.gguf"
        FileManager.default.createFile(atPath: p, contents: Data(b))
        let r = try Fixtures.run(squint, ["inspect", p])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.hasPrefix("squint: error: \(p): file is truncated: the header declares 18446744073709551615 tensors"), r.err)
        XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
    }
}

/// Messages a user sees for wrong usage: one prefix, the typo named, a suggestion, help with exit codes.
final class MessagesCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()

    func testAMistypedOptionIsNamedEvenWhenARequiredOptionIsMissing() throws {
        let r = try Fixtures.run(squint, ["validate", "a", "b", "--evl", "pairs.jsonl"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.err.hasPrefix("squint: error: Unknown option '--evl'. Did you mean '--eval'?"), r.err)
        XCTAssertFalse(r.err.contains("Missing expected argument"), r.err)
    }

    func testAMistypedSubcommandGetsASuggestion() throws {
        let r = try Fixtures.run(squint, ["valdate", "a", "b"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.err.hasPrefix("squint: error: unknown command 'valdate'; did you mean 'validate'?"), r.err)
    }

    func testEveryErrorHasTheSamePrefix() throws {
        let tmp = Fixtures.temporaryFolder("messages")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let cases: [([String], Int32)] = [
            (["inspect", tmp + "/nope.safetensors"], 1),                         // Squint's own error
            (["synth", "--config", "x.json", "--format", "onnx", "-o", tmp + "/o"], 64),   // validate()
            (["run", "model"], 64),                                               // missing option
            (["tokenize", "--vocab", tmp + "/none.tiktoken", "hi"], 1),           // thrown from run()
            (["inspect", "--bogus"], 64),                                         // unknown option
        ]
        for (args, status) in cases {
            let r = try Fixtures.run(squint, args)
            XCTAssertEqual(r.status, status, args.joined(separator: " "))
            XCTAssertTrue(r.err.hasPrefix("squint: error: "), "\(args): \(r.err)")
            XCTAssertFalse(r.err.contains("Error: "), "\(args): \(r.err)")
        }
    }

    func testAMissingPairsFileIsNotLineZero() throws {
        let r = try Fixtures.run(squint, ["convert", "/nonexistent-model", "--calib", "/nonexistent/pairs.jsonl", "-o", "/nonexistent/o.sq4"])
        XCTAssertEqual(r.status, 1)
        XCTAssertFalse(r.err.contains(":0:"), r.err)
    }

    func testAPathIsNamedOnceInAMessage() throws {
        let tmp = Fixtures.temporaryFolder("messages")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let bad = tmp + "/pairs.jsonl"
        FileManager.default.createFile(atPath: bad, contents: Data("root:x:0:0\n".utf8))
        let s = try Fixtures.run(squint, ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"), "--vocab", Fixtures.path("tokenizer/qwen.tiktoken"), "-o", tmp + "/model"])
        XCTAssertEqual(s.status, 0, s.err)
        let r = try Fixtures.run(squint, ["convert", tmp + "/model", "--calib", bad, "-o", tmp + "/o.sq4"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.err.components(separatedBy: bad).count - 1, 1, r.err)
    }

    func testEveryCommandsHelpListsExitCodesAndAnExample() throws {
        for c in ["inspect", "synth", "convert", "validate", "run", "chat", "tokenize", "bench"] {
            let r = try Fixtures.run(squint, [c, "--help"])
            XCTAssertEqual(r.status, 0, c)
            XCTAssertTrue(r.out.contains("Exit codes: 0"), "\(c) --help lists no exit codes")
            XCTAssertTrue(r.out.contains("Example: squint \(c) "), "\(c) --help has no example")
        }
    }

    /// Every command that computes takes --threads (the thread count is part of a run's configuration:
    /// docs/RELIABILITY.md), documented in its help and checked before any work.
    func testEveryComputingCommandTakesThreads() throws {
        let tmp = Fixtures.temporaryFolder("cli-threads")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let safetensors = Fixtures.path("safetensors/no_metadata.safetensors"), t = "\(tmp)/t.txt"
        let commands: [String: [String]] = [
            "inspect": [safetensors], "convert": [safetensors, "--method", "rtn", "-o", "\(tmp)/o.sq4"],
            "validate": [safetensors, safetensors, "--text", t], "run": [safetensors, "--prompt", "hi"], "chat": [safetensors],
            "perplexity": [safetensors, t], "bench": []]
        for (c, args) in commands {
            let help = try Fixtures.run(squint, [c, "--help"])
            XCTAssertTrue(help.out.contains("--threads <threads>"), "\(c) --help lists no --threads")
            for bad in ["0", "1025", "two"] {
                let r = try Fixtures.run(squint, [c] + args + ["--threads", bad])
                XCTAssertEqual(r.status, 64, "\(c) --threads \(bad): \(r.err)")
                XCTAssertTrue(r.err.contains("--threads"), "\(c) --threads \(bad): \(r.err)")
            }
        }
        // Accepted, and it takes effect: inspect --stats gives the same statistics on 1 and 2 threads.
        let one = try Fixtures.run(squint, ["inspect", safetensors, "--stats", "--json", "--threads", "1"])
        let two = try Fixtures.run(squint, ["inspect", safetensors, "--stats", "--json", "--threads", "2"])
        XCTAssertEqual(one.status, 0, one.err)
        XCTAssertEqual(one.out, two.out)
    }
}
