import Foundation
import XCTest
import SquintFormats
import TestSupport

/// `squint convert MODEL.gguf --format squint|autogptq` on the tiny Qwen2 GGUF, then `run`,
/// `perplexity` and `chat` on the SQ4 file moved alone into an empty folder: the file carries
/// everything they need. The answer equals the one the AutoGPTQ folder of the same settings gives
/// (the same codes; DecoderOutputsTests checks them against GPTQ's weights).
final class DecoderConvertCLITests: XCTestCase {
    let squint = Fixtures.squintExecutable()
    var tmp = ""
    override func setUpWithError() throws { tmp = Fixtures.temporaryFolder("decoder-convert-cli") }

    /// The tiny Qwen2 GGUF and a calibration text, in tmp.
    func tinyModelAndCalibration() throws -> (src: String, calib: String) {
        let src = try TinyDecoderGGUF.write(to: tmp + "/tiny.gguf")
        let calib = tmp + "/calib.txt"
        try Data(String(repeating: "the thin thing in the theme then went on; ", count: 12).utf8).write(to: URL(fileURLWithPath: calib))
        return (src, calib)
    }

    /// `squint convert SRC -o bad.gguf COMMON ARGS` is refused for each (ARGS, message): exit 64, the
    /// message on stderr, nothing written.
    func assertRefused(_ src: String, with common: [String], _ cases: [([String], String)], line: UInt = #line) throws {
        for (args, message) in cases {
            let r = try Fixtures.run(squint, ["convert", src, "-o", tmp + "/bad.gguf"] + common + args)
            XCTAssertEqual(r.status, 64, r.err, line: line)
            XCTAssertTrue(r.err.contains(message), r.err, line: line)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/bad.gguf"), line: line)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }

    func testConvertedSQ4RunsAloneAndAnswersAsTheAutoGPTQFolder() throws {
        let (src, calib) = try tinyModelAndCalibration()
        let common = ["--calib-text", calib, "--samples", "4", "--sample-tokens", "48", "--group-size", "32", "--desc-act"]
        var r = try Fixtures.run(squint, ["convert", src, "--format", "squint", "-o", tmp + "/out.sq4"] + common)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("wrote \(tmp)/out.sq4 (squint, gptq, 2 blocks, 4 samples, 192 tokens)"), r.out)
        r = try Fixtures.run(squint, ["convert", src, "--format", "autogptq", "-o", tmp + "/gptq"] + common)
        XCTAssertEqual(r.status, 0, r.err)
        // inspect reads the folder (its config.json is a Qwen2 one: it was refused as "missing key 'visual'")
        let i = try Fixtures.run(squint, ["inspect", tmp + "/gptq", "--summary", "--json"])
        XCTAssertEqual(i.status, 0, i.err)
        let inspected = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(i.out.utf8)) as? [String: Any])
        XCTAssertEqual(inspected["layout"] as? String, "autogptq-int4")
        let q = try XCTUnwrap(inspected["quantization"] as? [String: Any])
        XCTAssertEqual(q["bits"] as? Int, 4)
        XCTAssertEqual(q["group_size"] as? Int, 32)
        XCTAssertEqual(q["desc_act"] as? Bool, true)
        r = try Fixtures.run(squint, ["convert", src, "--format", "squint", "-o", tmp + "/out.sq4"] + common)
        XCTAssertEqual(r.status, 1, "an existing output is not replaced without --force")

        let alone = tmp + "/alone"
        try FileManager.default.createDirectory(atPath: alone, withIntermediateDirectories: false)
        try FileManager.default.moveItem(atPath: tmp + "/out.sq4", toPath: alone + "/model.sq4")
        let ask = ["--prompt", "the thin", "--greedy", "--max-new-tokens", "5", "--json"]
        let a = try Fixtures.run(squint, ["run", "model.sq4"] + ask, cwd: alone)
        XCTAssertEqual(a.status, 0, a.err)
        let b = try Fixtures.run(squint, ["run", tmp + "/gptq"] + ask)
        XCTAssertEqual(b.status, 0, b.err)
        func ids(_ out: String) throws -> [Int] {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            return try XCTUnwrap((o["generatedIds"] ?? o["generated_ids"]) as? [Int])
        }
        XCTAssertFalse(try ids(a.out).isEmpty)
        XCTAssertEqual(try ids(a.out), try ids(b.out))

        let text = alone + "/text.txt"
        try Data(String(repeating: "the thin thing in the theme. ", count: 10).utf8).write(to: URL(fileURLWithPath: text))
        let p = try Fixtures.run(squint, ["perplexity", "model.sq4", "text.txt", "--ctx", "32", "--json"], cwd: alone)
        XCTAssertEqual(p.status, 0, p.err)
        let pq = try Fixtures.run(squint, ["perplexity", tmp + "/gptq", text, "--ctx", "32", "--json"])
        XCTAssertEqual(pq.status, 0, pq.err)
        func perplexity(_ out: String) throws -> Double {   // (this compared two absent top-level keys before)
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            return try XCTUnwrap((o["result"] as? [String: Any])?["perplexity"] as? Double)
        }
        XCTAssertEqual(try perplexity(p.out), try perplexity(pq.out))

        let c = try Fixtures.run(squint, ["chat", "model.sq4", "--greedy", "--max-new-tokens", "3"], cwd: alone, stdin: "the thin\n:quit\n")
        XCTAssertEqual(c.status, 0, c.err)
        XCTAssertTrue(c.out.contains("sq4 qwen2"), c.out)
    }

    /// `squint convert FOLDER --format gguf` on a Hugging Face folder (the fixture's config.json and
    /// weights with the tokenizer files a conversion of the same model wrote) gives the tensors the
    /// same command gives from the GGUF of those weights, byte for byte, with a JSON report; an Int4
    /// folder is refused by name with nothing written.
    func testGGUFFromAFolderOnTheCommandLine() throws {
        let src = try TinyDecoderGGUF.write(to: tmp + "/tiny.gguf")
        let rtn = ["--method", "rtn", "--group-size", "32"]
        var r = try Fixtures.run(squint, ["convert", src, "--format", "autogptq", "-o", tmp + "/int4"] + rtn)
        XCTAssertEqual(r.status, 0, r.err)
        let fm = FileManager.default, hf = tmp + "/hf"
        try fm.createDirectory(atPath: hf, withIntermediateDirectories: false)
        for f in ["config.json", "model.safetensors"] { try fm.copyItem(atPath: Fixtures.path("decoders/qwen2-tiny/" + f), toPath: hf + "/" + f) }
        for f in ["tokenizer.json", "tokenizer_config.json"] { try fm.copyItem(atPath: tmp + "/int4/" + f, toPath: hf + "/" + f) }
        r = try Fixtures.run(squint, ["convert", hf, "--format", "gguf", "--method", "rtn", "--json", "-o", tmp + "/hf.gguf"])
        XCTAssertEqual(r.status, 0, r.err)
        let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        XCTAssertEqual(j["gguf_type"] as? String, "q4_0")
        XCTAssertEqual(j["blocks"] as? Int, 2)
        XCTAssertEqual((j["modules"] as? [Any])?.count, 14)
        r = try Fixtures.run(squint, ["convert", src, "--format", "gguf", "--method", "rtn", "-o", tmp + "/src.gguf"])
        XCTAssertEqual(r.status, 0, r.err)
        let a = try GGUFFile(path: tmp + "/src.gguf"), b = try GGUFFile(path: tmp + "/hf.gguf")
        XCTAssertEqual(b.value(forKey: "general.architecture")?.string, "qwen2")
        XCTAssertEqual(b.value(forKey: "tokenizer.ggml.tokens")?.strings, a.value(forKey: "tokenizer.ggml.tokens")?.strings)
        XCTAssertEqual(b.ggufTensors.count, a.ggufTensors.count)
        for t in a.ggufTensors {
            let u = try XCTUnwrap(b.ggufTensor(named: t.name), t.name)
            XCTAssertEqual(Array(try b.bytes(of: u)), Array(try a.bytes(of: t)), t.name)
        }
        r = try Fixtures.run(squint, ["convert", tmp + "/int4", "--format", "gguf", "--method", "rtn", "-o", tmp + "/x.gguf"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("already an Int4 model"), r.err)
        XCTAssertFalse(fm.fileExists(atPath: tmp + "/x.gguf"))
    }

    /// `--rtn down` on the command line: the GGUF's provenance names it, the table and the JSON mark the
    /// RTN modules, and the GGUF's ffn_down tensors are byte for byte those of `--method rtn`. Wrong uses
    /// are refused before anything runs (exit 64).
    func testRTNLinearsOnTheCommandLine() throws {
        let (src, calib) = try tinyModelAndCalibration()
        let gptq = ["--calib-text", calib, "--samples", "4", "--sample-tokens", "48", "--format", "gguf"]
        var r = try Fixtures.run(squint, ["convert", src, "--rtn", "down", "--json", "-o", tmp + "/mixed.gguf"] + gptq)
        XCTAssertEqual(r.status, 0, r.err)
        let j = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        let mods = try XCTUnwrap(j["modules"] as? [[String: Any]])
        XCTAssertEqual(mods.filter { $0["method"] as? String == "rtn" }.map { $0["module"] as? String },
                       ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"])
        r = try Fixtures.run(squint, ["convert", src, "--format", "gguf", "--method", "rtn", "-o", tmp + "/rtn.gguf"])
        XCTAssertEqual(r.status, 0, r.err)
        r = try Fixtures.run(squint, ["convert", src, "--rtn", "down", "-o", tmp + "/mixed2.gguf"] + gptq)
        XCTAssertEqual(r.status, 0, r.err)
        let downRows = r.out.split(separator: "\n").filter { $0.contains("ffn_down") }
        XCTAssertEqual(downRows.count, 2, r.out)
        XCTAssertTrue(downRows.allSatisfy { $0.split(separator: " ").dropFirst().first == "rtn" }, r.out)
        let a = try GGUFFile(path: tmp + "/mixed.gguf"), b = try GGUFFile(path: tmp + "/rtn.gguf")
        for t in a.ggufTensors where t.name.contains("ffn_down") {
            XCTAssertEqual(Array(try a.bytes(of: t)), Array(try b.bytes(of: XCTUnwrap(b.ggufTensor(named: t.name)))), t.name)
        }
        let prov = a.value(forKey: "squint.quantization")?.string
        XCTAssertTrue(prov?.hasSuffix("; round to nearest: down") == true, prov ?? "no provenance")
        try assertRefused(src, with: gptq, [(["--rtn", "down", "--method", "rtn"], "--rtn picks linears"),
                                (["--rtn", "down,mlp"], "--rtn takes a comma list of q, k, v, qkv, o, gate, up, gate_up, down, not 'down,mlp'")])
    }

    /// `--scale-search`: the provenance names it, the scales (so the block bytes) change, and it is
    /// refused where there are no static groups or no Hessian.
    func testScaleSearchOnTheCommandLine() throws {
        let (src, calib) = try tinyModelAndCalibration()
        let gptq = ["--calib-text", calib, "--samples", "4", "--sample-tokens", "48", "--format", "gguf", "--grid", "llama-q4_0"]
        var r = try Fixtures.run(squint, ["convert", src, "--desc-act", "--scale-search", "-o", tmp + "/searched.gguf"] + gptq)
        XCTAssertEqual(r.status, 0, r.err)
        r = try Fixtures.run(squint, ["convert", src, "--desc-act", "-o", tmp + "/plain.gguf"] + gptq)
        XCTAssertEqual(r.status, 0, r.err)
        let a = try GGUFFile(path: tmp + "/searched.gguf"), b = try GGUFFile(path: tmp + "/plain.gguf")
        let prov = a.value(forKey: "squint.quantization")?.string
        XCTAssertTrue(prov?.hasSuffix("; scales searched (diag(H)-weighted)") == true, prov ?? "no provenance")
        var differing = 0
        for t in a.ggufTensors where t.name.hasPrefix("blk.") && t.type == .q4_0 {
            if Array(try a.bytes(of: t)) != Array(try b.bytes(of: XCTUnwrap(b.ggufTensor(named: t.name)))) { differing += 1 }
        }
        XCTAssertGreaterThan(differing, 0, "the searched scales change the blocks")
        // llama.cpp's weights diag(H)·sqrt(σ² + w²): named in the provenance, other scales again.
        r = try Fixtures.run(squint, ["convert", src, "--desc-act", "--scale-search", "--scale-weights", "imatrix",
                                      "-o", tmp + "/imatrix.gguf"] + gptq)
        XCTAssertEqual(r.status, 0, r.err)
        let c = try GGUFFile(path: tmp + "/imatrix.gguf")
        let provC = c.value(forKey: "squint.quantization")?.string
        XCTAssertTrue(provC?.hasSuffix("; scales searched (diag(H)·sqrt(σ²+w²)-weighted)") == true, provC ?? "no provenance")
        differing = 0
        for t in c.ggufTensors where t.name.hasPrefix("blk.") && t.type == .q4_0 {
            if Array(try c.bytes(of: t)) != Array(try a.bytes(of: XCTUnwrap(a.ggufTensor(named: t.name)))) { differing += 1 }
        }
        XCTAssertGreaterThan(differing, 0, "the weighting changes the blocks")
        try assertRefused(src, with: gptq, [(["--scale-search"], "--scale-search needs static groups"),
                                (["--scale-search", "--desc-act", "--method", "rtn"], "--scale-search needs --method gptq"),
                                (["--desc-act", "--scale-weights", "imatrix"], "--scale-weights needs --scale-search"),
                                (["--desc-act", "--scale-search", "--scale-weights", "diag"], "--scale-weights must be hessian or imatrix, not 'diag'")])
    }

    /// `--hessian-shrink 1`: GPTQ on a diagonal Hessian is round-to-nearest on the same grid, so every
    /// block tensor equals `--method rtn`'s byte for byte; 0.5 differs from both; the provenance says it;
    /// bad values and RTN are refused before anything is written.
    func testHessianShrinkOnTheCommandLine() throws {
        let (src, calib) = try tinyModelAndCalibration()
        let common = ["--format", "gguf", "--grid", "llama-q4_0", "--desc-act"]
        let gptq = ["--calib-text", calib, "--samples", "4", "--sample-tokens", "48"] + common
        for (name, args) in [("full", gptq + ["--hessian-shrink", "1"]), ("half", gptq + ["--hessian-shrink", "0.5"]),
                             ("plain", gptq), ("rtn", common + ["--method", "rtn"])] {
            let r = try Fixtures.run(squint, ["convert", src, "-o", tmp + "/\(name).gguf"] + args)
            XCTAssertEqual(r.status, 0, r.err)
        }
        let files = try ["full", "half", "plain", "rtn"].map { try GGUFFile(path: tmp + "/\($0).gguf") }
        XCTAssertTrue(files[1].value(forKey: "squint.quantization")?.string?.hasSuffix("; H shrunk toward its diagonal by 0.5") == true)
        func blocks(_ f: GGUFFile) throws -> [String: [UInt8]] {
            var d: [String: [UInt8]] = [:]
            for t in f.ggufTensors where t.name.hasPrefix("blk.") && t.type == .q4_0 { d[t.name] = Array(try f.bytes(of: t)) }
            return d
        }
        let (full, half, plain, rtn) = (try blocks(files[0]), try blocks(files[1]), try blocks(files[2]), try blocks(files[3]))
        XCTAssertFalse(rtn.isEmpty)
        XCTAssertEqual(full, rtn)
        XCTAssertNotEqual(half, rtn)
        XCTAssertNotEqual(half, plain)
        let halfLog = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tmp + "/half.gguf.log.json"))) as? [String: Any])
        XCTAssertEqual(Set(((halfLog["modules"] as? [[String: Any]]) ?? []).map { $0["hessian_shrink"] as? Double }), [0.5])
        try assertRefused(src, with: [], [(gptq + ["--hessian-shrink", "1.5"], "--hessian-shrink must be in 0...1"),
                                (common + ["--method", "rtn", "--hessian-shrink", "0.5"], "--hessian-shrink needs --method gptq")])
    }

    /// `--preset recommended` is the five options it names (and `--static-groups` for SQ4): the same
    /// block bytes and provenance as spelling them out; an option it sets may be repeated with the same
    /// value; another value, RTN, Q4_1, --asym and unknown names are refused before anything is written.
    func testPresetOnTheCommandLine() throws {
        let (src, calib) = try tinyModelAndCalibration()
        let gptq = ["--calib-text", calib, "--samples", "4", "--sample-tokens", "48"]
        let spelled = ["--grid", "llama-q4_0", "--desc-act", "--scale-search", "--scale-weights", "imatrix", "--hessian-shrink", "0.5"]
        for (name, args) in [("preset", ["--preset", "recommended"]), ("spelled", spelled),
                             ("repeated", ["--preset", "recommended", "--hessian-shrink", "0.5", "--desc-act"]), ("plain", [])] {
            let r = try Fixtures.run(squint, ["convert", src, "--format", "gguf", "-o", tmp + "/\(name).gguf"] + gptq + args)
            XCTAssertEqual(r.status, 0, r.err)
        }
        let files = try ["preset", "spelled", "repeated", "plain"].map { try GGUFFile(path: tmp + "/\($0).gguf") }
        func blocks(_ f: GGUFFile) throws -> [String: [UInt8]] {
            var d: [String: [UInt8]] = [:]
            for t in f.ggufTensors where t.name.hasPrefix("blk.") { d[t.name] = Array(try f.bytes(of: t)) }
            return d
        }
        let (preset, spelledOut, repeated, plain) = (try blocks(files[0]), try blocks(files[1]), try blocks(files[2]), try blocks(files[3]))
        func differing(_ a: [String: [UInt8]], _ b: [String: [UInt8]]) -> [String] { a.keys.filter { a[$0] != b[$0] }.sorted() }
        XCTAssertFalse(preset.isEmpty)
        XCTAssertEqual(Set(preset.keys), Set(spelledOut.keys))
        XCTAssertEqual(differing(preset, spelledOut), [], "the preset's blocks differ from the spelled-out options'")
        XCTAssertEqual(differing(repeated, spelledOut), [], "repeating an option with the preset's value changes the blocks")
        XCTAssertFalse(differing(preset, plain).isEmpty, "the preset changes the blocks")
        let prov = files[0].value(forKey: "squint.quantization")?.string
        XCTAssertEqual(prov, files[1].value(forKey: "squint.quantization")?.string)
        XCTAssertTrue(prov?.contains("H shrunk toward its diagonal by 0.5") == true && prov?.contains("sqrt(σ²+w²)") == true, prov ?? "no provenance")
        // SQ4: the preset adds --static-groups (without it --scale-search would be refused there).
        for (name, args) in [("preset", ["--preset", "recommended"]), ("spelled", spelled + ["--static-groups"])] {
            let r = try Fixtures.run(squint, ["convert", src, "--format", "squint", "--group-size", "32", "-o", tmp + "/\(name).sq4"] + gptq + args)
            XCTAssertEqual(r.status, 0, r.err)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: tmp + "/preset.sq4")), try Data(contentsOf: URL(fileURLWithPath: tmp + "/spelled.sq4")))
        try assertRefused(src, with: ["--format", "gguf"] + gptq, [(["--preset", "best"], "--preset must be recommended, not 'best'"),
                                (["--preset", "recommended", "--grid", "autogptq"], "--preset recommended sets --grid llama-q4_0: drop --grid autogptq"),
                                (["--preset", "recommended", "--hessian-shrink", "0.25"], "sets --hessian-shrink 0.5: drop --hessian-shrink 0.25"),
                                (["--preset", "recommended", "--scale-weights", "hessian"], "sets --scale-weights imatrix"),
                                (["--preset", "recommended", "--method", "rtn"], "is a GPTQ recipe: not with --method rtn"),
                                (["--preset", "recommended", "--gguf-type", "q4_1"], "writes Q4_0: not with --gguf-type q4_1"),
                                (["--preset", "recommended", "--asym"], "is symmetric: not with --asym")])
    }

    /// SQ4 holds equal groups only (and the AutoGPTQ output is packed through the same records): a group
    /// size that does not divide every block linear's inputs (the tiny model's down_proj has 96 inputs,
    /// 64 does not divide them; SmolLM2-135M's 576 at 128 found it, after the whole conversion) is
    /// refused before any work, naming the sizes that fit, with nothing left behind.
    func testGroupSizeThatDoesNotDivideTheInputs() throws {
        let (src, calib) = try tinyModelAndCalibration()
        let gptq = ["--calib-text", calib, "--samples", "4", "--sample-tokens", "48", "--group-size", "64"]
        for (format, out) in [("squint", "t.sq4"), ("autogptq", "ag")] {
            let r = try Fixtures.run(squint, ["convert", src, "--format", format, "-o", tmp + "/" + out] + gptq)
            XCTAssertEqual(r.status, 1, r.err)
            XCTAssertTrue(r.err.contains("--group-size 64 does not divide the 96 inputs of down in \(src); Squint's SQ4 and AutoGPTQ "
                                         + "outputs need equal groups: use --group-size 32 or -1"), r.err)
            XCTAssertFalse(r.err.contains("convert ["), "refused before any work: \(r.err)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp).sorted(), ["calib.txt", "tiny.gguf"], "nothing left behind")
        }
        // A size that divides every input (32: 64 and 96) converts.
        let r = try Fixtures.run(squint, ["convert", src, "--format", "squint", "-o", tmp + "/t.sq4"] + gptq.dropLast(2) + ["--group-size", "32"])
        XCTAssertEqual(r.status, 0, r.err)
    }
}
