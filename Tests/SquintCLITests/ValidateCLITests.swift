import Foundation
import XCTest
import SquintFormats
import TestSupport

/// `squint validate`, `run` and `--dump` with Int4 models, end to end: the BF16 tiny model written by
/// `synth`, the official AutoGPTQ Int4 tiny model rebuilt byte for byte (TestSupport.TinyInt4), and an
/// SQ4 file converted from it.
final class ValidateCLITests: XCTestCase {
    static var tmp = ""
    let squint = Fixtures.squintExecutable()
    var bf16: String { Self.tmp + "/bf16" }
    var int4: String { Self.tmp + "/int4" }
    var sq4: String { Self.tmp + "/tiny.sq4" }
    let pairs = Fixtures.path("calibration/pairs.jsonl")

    override class func setUp() {
        tmp = Fixtures.temporaryFolder("validate-cli")
        let r = try! Fixtures.run(Fixtures.squintExecutable(), ["synth", "--config", Fixtures.path("qwen-vl-tiny/config.json"),
                                                                "--vocab", Fixtures.path("tokenizer/qwen.tiktoken"), "-o", tmp + "/bf16"])
        precondition(r.status == 0, r.err)
        try! TinyInt4.writeAutoGPTQFolder(synthetic: try! SafetensorsFile(path: tmp + "/bf16/model.safetensors"), to: tmp + "/int4")
        precondition(try! TinyInt4.sha256(ofFile: tmp + "/int4/model.safetensors") == TinyInt4.manifestSHA256)
        try! FileManager.default.copyItem(atPath: Fixtures.path("tokenizer/qwen.tiktoken"), toPath: tmp + "/int4/qwen.tiktoken")
        try! TinyInt4.writeSQ4(fromAutoGPTQ: try! SafetensorsFile(path: tmp + "/int4/model.safetensors"),
                               configPath: tmp + "/int4/config.json", to: tmp + "/tiny.sq4")
        try! FileManager.default.copyItem(atPath: Fixtures.path("images/photos/skimage_chelsea.png"), toPath: tmp + "/image.png")
    }
    override class func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func json(_ s: String) throws -> [String: Any] { try JSONSerialization.jsonObject(with: Data(s.utf8)) as! [String: Any] }

    func testJSONHasTheDocumentedKeys() throws {
        let r = try Fixtures.run(squint, ["validate", bf16, int4, "--eval", pairs, "--limit", "1", "--greedy-tokens", "4", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let o = try json(r.out)
        for k in ["kl_mean", "kl_median", "kl_p99", "kl_max", "top1_agreement", "top5_agreement", "ppl_bf16", "ppl_int4", "ppl_ratio",
                  "per_block", "image_features", "worst", "greedy", "greedy_tokens", "greedy_agreement", "greedy_prefix_agreement",
                  "kl_histogram", "gate", "samples", "positions", "seconds", "forward_seconds", "bf16_model", "int4_model"] {
            XCTAssertNotNil(o[k], "missing key \(k)")
        }
        // Documented: every key above appears in docs/VALIDATE_JSON.md.
        let doc = try String(contentsOfFile: Fixtures.packageRoot() + "/docs/VALIDATE_JSON.md", encoding: .utf8)
        for k in o.keys { XCTAssert(doc.contains("`\(k)`"), "docs/VALIDATE_JSON.md does not document \(k)") }
        XCTAssertEqual((o["per_block"] as! [Any]).count, 3)   // embeddings, block 0, block 1 + ln_f
        XCTAssertEqual(o["samples"] as? Int, 1)
        // Pair 0 renders to 338 tokens, 287 of them context (fixtures/calibration/RENDERING.md): 51 caption predictions.
        XCTAssertEqual(o["positions"] as? Int, 51)
        XCTAssertEqual(((o["greedy"] as! [[String: Any]])[0]["bf16_ids"] as! [Int]).count, 4)
        XCTAssertGreaterThan(o["kl_mean"] as! Double, 0)
        XCTAssertEqual((o["gate"] as! [String: Any])["passed"] as? Bool, true)
    }

    func testAModelAgainstItselfHasNoDriftAndSQ4EqualsAutoGPTQ() throws {
        // The SQ4 file holds the same codes and scales as the AutoGPTQ folder, so the two Int4 models
        // compute the same function; only the GEMM tiling can differ in summation order.
        let r = try Fixtures.run(squint, ["validate", int4, sq4, "--eval", pairs, "--limit", "1", "--greedy-tokens", "4",
                                          "--max-kl", "1e-6", "--min-top1", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let o = try json(r.out)
        XCTAssertLessThan(o["kl_max"] as! Double, 1e-6)
        XCTAssertEqual(o["top1_agreement"] as? Double, 1)
        XCTAssertEqual(o["greedy_prefix_agreement"] as? Double, 1)
    }

    func testGateExitCodes() throws {
        let fail = try Fixtures.run(squint, ["validate", bf16, int4, "--eval", pairs, "--limit", "1", "--greedy-tokens", "0", "--max-kl", "0"])
        XCTAssertEqual(fail.status, 4, fail.err)
        XCTAssert(fail.out.contains("gate: FAILED: kl_mean"), fail.out)
        let top1 = try Fixtures.run(squint, ["validate", bf16, int4, "--eval", pairs, "--limit", "1", "--greedy-tokens", "0",
                                             "--min-top1", "1", "--json"])
        let o = try json(top1.out)
        XCTAssertEqual(top1.status, (o["top1_agreement"] as! Double) < 1 ? 4 : 0)
        let pass = try Fixtures.run(squint, ["validate", bf16, int4, "--eval", pairs, "--limit", "1", "--greedy-tokens", "0",
                                             "--max-kl", "10", "--min-top1", "0"])
        XCTAssertEqual(pass.status, 0, pass.err)
        XCTAssert(pass.out.contains("gate: PASSED"), pass.out)
        let usage = try Fixtures.run(squint, ["validate", bf16, int4, "--eval", pairs, "--min-top1", "1.5"])
        XCTAssertEqual(usage.status, 64)
        let missing = try Fixtures.run(squint, ["validate", bf16, int4, "--eval", Self.tmp + "/nope.jsonl"])
        XCTAssertEqual(missing.status, 1)
        XCTAssert(missing.err.contains("nope.jsonl"), missing.err)
    }

    func testHTMLReportIsSelfContained() throws {
        let dir = Self.tmp + "/report"
        let r = try Fixtures.run(squint, ["validate", bf16, int4, "--eval", pairs, "--limit", "1", "--greedy-tokens", "2", "--report", dir,
                                          "--max-kl", "1e-9", "--force"])
        XCTAssertEqual(r.status, 4, r.err)
        let html = try String(contentsOfFile: dir + "/index.html", encoding: .utf8)
        XCTAssert(html.hasPrefix("<!DOCTYPE html>"))
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 2, "per-block drift and KL histogram plots")
        for banned in ["http:", "https:", "//", "src=", "href=", "<script", "<link", "@import", "url("] {
            XCTAssertFalse(html.lowercased().contains(banned), "the report must not reference \(banned)")
        }
        XCTAssert(html.contains("block 1 + ln_f"))
    }

    /// What the screenshots in docs/VALIDATING.md show, as structure: the page fits a phone (viewport,
    /// plots scale with a viewBox, tables scroll inside a box), the axes are labelled, an error of 0
    /// sits on a labelled 0 line, the gate's threshold is drawn and
    /// the failing figure is marked, and the header says what was run on what.
    func testHTMLReportReadsOnAnyScreen() throws {
        let dir = Self.tmp + "/report-structure"
        let r = try Fixtures.run(squint, ["validate", bf16, int4, "--eval", pairs, "--limit", "1", "--greedy-tokens", "0", "--report", dir,
                                          "--max-kl", "1e-9", "--min-top1", "0"])
        XCTAssertEqual(r.status, 4, r.err)
        let html = try String(contentsOfFile: dir + "/index.html", encoding: .utf8)
        XCTAssert(html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"))
        let svgs = html.components(separatedBy: "<svg").dropFirst()
        XCTAssertEqual(svgs.count, 2)
        for svg in svgs {
            let tag = String(svg.prefix { $0 != ">" })
            XCTAssert(tag.range(of: #"viewBox="0 0 \d+ \d+""#, options: .regularExpression) != nil, tag)
            XCTAssert(tag.contains("width=\"100%\""), tag)
            XCTAssertFalse(tag.contains("height=\""), "a fixed height would not scale: \(tag)")
        }
        // Every table sits in a box that scrolls sideways.
        XCTAssert(html.contains(".scroll{overflow-x:auto"))
        let tables = html.components(separatedBy: "<table").count - 1
        XCTAssertGreaterThanOrEqual(tables, 4)
        XCTAssertEqual(html.components(separatedBy: "<div class=\"scroll\"><table").count - 1, tables)
        // Axis labels, the zero line, the gate.
        XCTAssert(html.contains(">positions</text>"), "histogram y axis label")
        XCTAssert(html.contains("class=\"axis-label\">relative error"), "drift plot y axis label")
        // The AutoGPTQ folder and the SQ4 file hold the same F16 embeddings: their drift is exactly 0.
        let zero = Self.tmp + "/report-zero"
        let z = try Fixtures.run(squint, ["validate", int4, sq4, "--eval", pairs, "--limit", "1", "--greedy-tokens", "0", "--report", zero])
        XCTAssertEqual(z.status, 0, z.err)
        let zhtml = try String(contentsOfFile: zero + "/index.html", encoding: .utf8)
        XCTAssert(zhtml.contains("class=\"zero-label\">0</text>"), "a drift of exactly 0 gets its own labelled line")
        XCTAssertFalse(zhtml.contains(">1e-9<"), "zero must not be drawn at 1e-9")
        XCTAssert(html.contains("class=\"gate-line\""))
        XCTAssert(html.contains("gate --max-kl 1e-09"))
        XCTAssert(html.contains("<tr class=\"fail\"><th>KL mean (nats)</th>"), "the failing figure is marked")
        XCTAssert(html.contains("✓ ≥ 0.00 % (--min-top1)"), "the passing figure shows its threshold")
        // The header.
        for k in ["<th>command</th><td><code>squint validate ", "<th>Squint</th><td>0.", "<th>date</th><td>20", "<th>BF16 model</th>",
                  "<th>Int4 model</th>", "bits per weight", "<th>quantization</th><td>gptq, 4-bit, group"] {
            XCTAssert(html.contains(k), "header lacks \(k)")
        }
    }

    /// --report's path is checked before anything is loaded (the models here do not even exist), and
    /// nothing the user has is replaced without --force; no raw Foundation error reaches the user.
    func testReportPathIsCheckedFirstAndNeverReplacedWithoutForce() throws {
        let file = Self.tmp + "/report-file"
        FileManager.default.createFile(atPath: file, contents: Data("keep".utf8))
        let r = try Fixtures.run(squint, ["validate", Self.tmp + "/no-model", Self.tmp + "/no-int4", "--eval", pairs, "--report", file])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.hasPrefix("squint: error: \(file): is a file"), r.err)
        XCTAssertTrue(r.err.contains("--force"), r.err)
        XCTAssertFalse(r.err.contains("Domain"), r.err)
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "keep")

        let folder = Self.tmp + "/report-folder"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: folder + "/index.html", contents: Data("mine".utf8))
        let f = try Fixtures.run(squint, ["validate", Self.tmp + "/no-model", Self.tmp + "/no-int4", "--eval", pairs, "--report", folder])
        XCTAssertEqual(f.status, 1)
        XCTAssertTrue(f.err.hasPrefix("squint: error: \(folder): already exists"), f.err)
        XCTAssertEqual(try String(contentsOfFile: folder + "/index.html", encoding: .utf8), "mine")

        let forced = try Fixtures.run(squint, ["validate", bf16, int4, "--eval", pairs, "--limit", "1", "--greedy-tokens", "0",
                                               "--report", folder, "--force"])
        XCTAssertEqual(forced.status, 0, forced.err)
        XCTAssertTrue(try String(contentsOfFile: folder + "/index.html", encoding: .utf8).hasPrefix("<!DOCTYPE html>"))
    }

    func testTheSecondModelMustBeQuantized() throws {
        let r = try Fixtures.run(squint, ["validate", bf16, bf16, "--eval", pairs, "--limit", "1"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.hasPrefix("squint: error: \(bf16): not an Int4 model"), r.err)
    }

    /// --save-base writes the BF16 side once; --base reuses it and gives the same figures (the logits
    /// are stored as computed, so KL and agreement are exact; hidden states are F16, so per-block
    /// errors move by at most about 2^-11 ≈ 4.9e-4 relative); a file made from anything else is refused.
    func testSavedBaseGivesTheSameDriftAndIsRefusedForOtherInputs() throws {
        let base = Self.tmp + "/base.safetensors"
        let args = ["--eval", pairs, "--limit", "2", "--greedy-tokens", "3", "--json"]
        let a = try Fixtures.run(squint, ["validate", bf16, sq4, "--save-base", base] + args)
        XCTAssertEqual(a.status, 0, a.err)
        let b = try Fixtures.run(squint, ["validate", bf16, int4, "--base", base] + args)
        XCTAssertEqual(b.status, 0, b.err)
        let direct = try Fixtures.run(squint, ["validate", bf16, int4] + args)
        let ob = try json(b.out), od = try json(direct.out)
        for k in ["kl_mean", "kl_mean_se", "kl_max", "kl_p999", "kl_p99", "kl_p90", "kl_median", "kl_p10", "top1_agreement",
                  "top1_agreement_se", "top5_agreement", "ppl_bf16", "ppl_int4", "ppl_ratio", "ppl_ratio_se", "ln_ppl_ratio", "ln_ppl_ratio_se",
                  "greedy_agreement"] {
            XCTAssertEqual(ob[k] as? Double, od[k] as? Double, k)
        }
        let pb = ob["per_block"] as! [[String: Any]], pd = od["per_block"] as! [[String: Any]]
        for (x, y) in zip(pb, pd) {
            XCTAssertEqual(x["relative_error"] as! Double, y["relative_error"] as! Double, accuracy: 1e-3, x["name"] as! String)
        }
        // Uncertainties as llama-perplexity reports them, from the values themselves.
        let n = Double(od["positions"] as! Int), p = od["top1_agreement"] as! Double
        XCTAssertEqual(od["top1_agreement_se"] as! Double, (p * (1 - p) / n).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(od["ppl_ratio"] as! Double, exp(od["ln_ppl_ratio"] as! Double), accuracy: 1e-9)
        XCTAssertEqual(od["ppl_ratio_se"] as! Double, (od["ppl_ratio"] as! Double) * (od["ln_ppl_ratio_se"] as! Double), accuracy: 1e-9)

        // Refusals: another BF16 model, other samples, more greedy tokens than stored, an existing file.
        for (extra, why) in [(["validate", int4, sq4, "--base", base, "--eval", pairs, "--limit", "2", "--greedy-tokens", "3"], "another BF16 model"),
                             (["validate", bf16, sq4, "--base", base, "--eval", pairs, "--limit", "1", "--greedy-tokens", "3"], "other samples"),
                             (["validate", bf16, sq4, "--base", base, "--eval", pairs, "--limit", "2", "--greedy-tokens", "5"], "greedy tokens"),
                             (["validate", bf16, sq4, "--save-base", base, "--eval", pairs, "--limit", "2"], "already exists")] {
            let r = try Fixtures.run(squint, extra)
            XCTAssertEqual(r.status, 1, why)
            XCTAssertTrue(r.err.hasPrefix("squint: error: \(base): "), r.err)
            XCTAssertTrue(r.err.contains(why), "\(why): \(r.err)")
        }
    }

    /// `validate BF16 --eval PAIRS --save-base FILE` without INT4 records the BF16 side alone (so the two
    /// models need not be in memory together); the file is byte for byte the one a run with INT4 saves,
    /// and --base from it gives the direct run's figures. Without --save-base INT4 is still required,
    /// and gates need it.
    func testBaseRecordedWithoutTheQuantizedModelEqualsTheOneSavedBesideIt() throws {
        let args = ["--eval", pairs, "--limit", "2", "--greedy-tokens", "3"]
        let alone = Self.tmp + "/alone.base", beside = Self.tmp + "/beside.base"
        let a = try Fixtures.run(squint, ["validate", bf16, "--save-base", alone] + args + ["--json"])
        XCTAssertEqual(a.status, 0, a.err)
        let summary = try json(a.out)
        XCTAssertEqual(summary["base"] as? String, alone)
        XCTAssertEqual(summary["samples"] as? Int, 2)
        XCTAssertEqual(try Fixtures.run(squint, ["validate", bf16, sq4, "--save-base", beside] + args).status, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: alone)), try Data(contentsOf: URL(fileURLWithPath: beside)))
        let b = try Fixtures.run(squint, ["validate", bf16, sq4, "--base", alone, "--json"] + args)
        let direct = try Fixtures.run(squint, ["validate", bf16, sq4, "--json"] + args)
        let ob = try json(b.out), od = try json(direct.out)
        for k in ["kl_mean", "kl_max", "top1_agreement", "top5_agreement", "ppl_bf16", "ppl_int4", "greedy_agreement"] {
            XCTAssertEqual(ob[k] as? Double, od[k] as? Double, k)
        }
        for (extra, why) in [(["validate", bf16] + args, "Missing expected argument"),
                             (["validate", bf16, "--save-base", Self.tmp + "/x.base", "--max-kl", "0.1"] + args, "need INT4")] {
            let r = try Fixtures.run(squint, extra)
            XCTAssertEqual(r.status, 64, why)
            XCTAssertTrue(r.err.contains(why), "\(why): \(r.err)")
        }
    }

    func testInspectRecognisesTheSQ4File() throws {
        let r = try Fixtures.run(squint, ["inspect", sq4, "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let o = try json(r.out)
        XCTAssertEqual(o["format"] as? String, "squint-int4")
        XCTAssertEqual(o["layout"] as? String, "squint-int4")
    }

    func testRunAndDumpAcceptInt4FolderAndSQ4File() throws {
        let ref = try FixtureSafetensors(path: Fixtures.path("qwen-vl-tiny/int4/reference_trimmed.safetensors"))
        let want = try ref.ints("greedy_ids").values.map(Int.init)
        for model in [int4, sq4] {
            let r = try Fixtures.run(squint, ["run", model, "--image", "image.png", "--prompt", "What is in this picture? Answer briefly.",
                                              "--greedy", "--max-new-tokens", "8", "--vocab", Fixtures.path("tokenizer/qwen.tiktoken"),
                                              "--dump", "dump.safetensors", "--force", "--json"], cwd: Self.tmp)
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssertEqual(try json(r.out)["generated_ids"] as? [Int], want, model)
            let dump = try FixtureSafetensors(path: Self.tmp + "/dump.safetensors")
            XCTAssertEqual(try dump.ints("input_ids").values, try ref.ints("input_ids").values)
            let logits = try dump.floats("logits"), topk = try ref.ints("topk_ids").values
            let v = logits.shape[1], last = logits.shape[0] - 1
            let row = logits.values[(last * v)..<((last + 1) * v)]
            XCTAssertEqual(row.indices.max { row[$0] < row[$1] }! - last * v, Int(topk[last * 20]))
        }
    }

    /// `--int8-activations` (Q4 x Q8 decode) keeps the official Int4 greedy answer on the tiny model.
    func testInt8ActivationsKeepTheGreedyIds() throws {
        let ref = try FixtureSafetensors(path: Fixtures.path("qwen-vl-tiny/int4/reference_trimmed.safetensors"))
        let r = try Fixtures.run(squint, ["run", sq4, "--image", "image.png", "--prompt", "What is in this picture? Answer briefly.",
                                          "--greedy", "--max-new-tokens", "8", "--vocab", Fixtures.path("tokenizer/qwen.tiktoken"),
                                          "--int8-activations", "--threads", "1", "--json"], cwd: Self.tmp)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(try json(r.out)["generated_ids"] as? [Int], try ref.ints("greedy_ids").values.map(Int.init))
    }
}
