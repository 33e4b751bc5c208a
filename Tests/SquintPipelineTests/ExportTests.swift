import CSquintKernels
import Foundation
import XCTest
import SquintFormats
import SquintTensor
@testable import SquintPipeline
import TestSupport

/// `squint export` (Exporter): values checked against references made outside our code (gguf-py's
/// dequantisation, torch's AutoGPTQ formula, IEEE rounding computed here independently).
final class ExportTests: XCTestCase {
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("export") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func floats(_ f: TensorFile, _ name: String) throws -> [Float] {
        let v = try f.view(name)
        XCTAssertEqual(v.info.dtype, .f32, name)
        return v.bytes.withMemoryRebound(to: Float.self) { Array($0) }
    }

    func u16s(_ f: TensorFile, _ name: String) throws -> [UInt16] {
        try f.view(name).bytes.withMemoryRebound(to: UInt16.self) { Array($0) }
    }

    /// Writes float32 tensors as a safetensors file (test input).
    func writeF32(_ tensors: [(String, [Int], [Float])], to path: String) throws {
        let w = try SafetensorsWriter(tensors: tensors.map { .init(name: $0.0, dtype: .f32, shape: $0.1) })
        let byName = Dictionary(uniqueKeysWithValues: tensors.map { ($0.0, $0.2) })
        try w.write(to: path, overwrite: true) { t in byName[t.name]!.withUnsafeBytes { Array($0) } }
    }

    // MARK: GGUF

    /// Every ggml type of fixtures/gguf/quants.gguf, exported to float32, is bit for bit what
    /// `gguf.quants.dequantize` (gguf-py 0.19.0) gives, with the same row-major shape.
    func testGGUFExportIsBitIdenticalToGGUFPy() throws {
        let out = tmp + "/q.safetensors"
        let report = try Exporter.export(Fixtures.path("gguf/quants.gguf"), to: out, options: ExportOptions(pattern: ".*"))
        let got = try SafetensorsFile(path: out)
        let want = try SafetensorsFile(path: Fixtures.path("gguf/quants_expected.safetensors"))
        XCTAssertEqual(Set(got.tensors.map(\.name)), Set(want.tensors.map(\.name)))
        for w in want.tensors {
            let g = try XCTUnwrap(got.info(w.name))
            XCTAssertEqual(g.dtype, .f32, w.name)
            XCTAssertEqual(g.shape, w.shape, w.name)
            XCTAssertEqual(Array(try got.view(w.name).bytes), Array(try want.view(w.name).bytes), "\(w.name): not bit-identical")
        }
        XCTAssertEqual(got.metadata["source"], Fixtures.path("gguf/quants.gguf"))
        XCTAssertEqual(got.metadata["source_format"], "gguf")
        XCTAssertEqual(report.tensors.first { $0.name == "q4_k" }?.from, "Q4_K")
    }

    /// --raw keeps the ggml blocks (U8 rows) byte for byte.
    func testGGUFRawKeepsTheBlocks() throws {
        let src = Fixtures.path("gguf/quants.gguf")
        let out = tmp + "/raw.safetensors"
        try Exporter.export(src, to: out, options: ExportOptions(pattern: "^q6_k$", raw: true))
        let g = try GGUFFile(path: src), got = try SafetensorsFile(path: out)
        let t = try XCTUnwrap(g.ggufTensor(named: "q6_k"))
        XCTAssertEqual(got.info("q6_k")?.dtype, .u8)
        XCTAssertEqual(got.info("q6_k")?.shape, [33, 210])   // 33 rows of one 256-block (210 bytes)
        XCTAssertEqual(Array(try got.view("q6_k").bytes), Array(try g.bytes(of: t)))
    }

    // MARK: plain floats

    /// BF16 -> F32 is exact: every one of the 65,536 bit patterns widens to its bits << 16.
    func testBF16WidensExactly() throws {
        let src = tmp + "/bf16.safetensors"
        let all = (0...0xFFFF).map { UInt16($0) }
        let w = try SafetensorsWriter(tensors: [.init(name: "all", dtype: .bf16, shape: [256, 256])])
        try w.write(to: src, overwrite: true) { _ in all.withUnsafeBytes { Array($0) } }
        let out = tmp + "/f32.safetensors"
        try Exporter.export(src, to: out, options: ExportOptions(pattern: "all"))
        let got = try floats(try SafetensorsFile(path: out), "all")
        XCTAssertEqual(got.count, 65536)
        for (i, b) in all.enumerated() where got[i].bitPattern != UInt32(b) << 16 {
            XCTFail("bf16 \(String(b, radix: 16)) -> \(String(got[i].bitPattern, radix: 16))"); break
        }
        // The fixture's BF16 tensor too, and its integers copied unchanged.
        let fx = Fixtures.path("safetensors/all_dtypes.safetensors")
        try Exporter.export(fx, to: tmp + "/fx.safetensors", options: ExportOptions(pattern: "^t\\.(bf16|i64|u8)$"))
        let a = try SafetensorsFile(path: fx), b = try SafetensorsFile(path: tmp + "/fx.safetensors")
        let bits = try u16s(a, "t.bf16")
        XCTAssertEqual(try floats(b, "t.bf16").map(\.bitPattern), bits.map { UInt32($0) << 16 })
        for n in ["t.i64", "t.u8"] {
            XCTAssertEqual(b.info(n)?.dtype, a.info(n)?.dtype)
            XCTAssertEqual(Array(try b.view(n).bytes), Array(try a.view(n).bytes))
        }
        XCTAssertEqual(b.tensors.count, 3)
    }

    /// bf16 and f16 output round to nearest, ties to even: checked against IEEE rounding computed
    /// here (bf16 by integer arithmetic on the bits, f16 by Swift's Float16 conversion) and against
    /// the project's convert kernels, on exact ties, near-ties, overflow, subnormals and random values.
    func testNarrowingRoundsToNearestEven() throws {
        var values: [Float] = [
            Float(bitPattern: 0x3F80_8000),   // 1 + 2^-8: bf16 tie between 1.0 and 1.0078125 -> even (1.0)
            Float(bitPattern: 0x3F81_8000),   // bf16 tie -> even (up)
            Float(bitPattern: 0x3F80_8001),   // just above a tie -> up
            1 + 0x1p-11,                      // f16 tie -> 1.0
            1 + 3 * 0x1p-11,                  // f16 tie -> up
            65519, 65520, 70000, -1e-8, 0x1p-24, 0x1p-25, 3 * 0x1p-26, 0, -0.0, .infinity, -.infinity,
            Float(bitPattern: 0x7F7F_FFFF),   // largest float: bf16 rounds to Inf
        ]
        var rng = SplitMix64(seed: 20261205)
        while values.count < 2000 {   // random bit patterns: every magnitude, NaN left out
            let x = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            if !x.isNaN { values.append(x) }
        }
        let src = tmp + "/f32.safetensors"
        try writeF32([("v", [values.count], values)], to: src)
        for d in [ExportDType.bf16, .f16] {
            let out = tmp + "/\(d.rawValue).safetensors"
            try Exporter.export(src, to: out, options: ExportOptions(pattern: "v", dtype: d))
            let f = try SafetensorsFile(path: out)
            XCTAssertEqual(f.info("v")?.dtype, d.dtype)
            let got = try u16s(f, "v")
            var kernel = [UInt16](repeating: 0, count: values.count)
            if d == .bf16 { sq_f32_to_bf16(values, &kernel, values.count) } else { sq_f32_to_f16(values, &kernel, values.count) }
            XCTAssertEqual(got, kernel, "\(d)")
            for (i, x) in values.enumerated() {
                let want = d == .bf16 ? Self.bf16RNE(x) : Float16(x).bitPattern
                XCTAssertEqual(got[i], want, "\(d) of \(x) (bits \(String(x.bitPattern, radix: 16)))")
            }
        }
        let bf = try u16s(try SafetensorsFile(path: tmp + "/bf16.safetensors"), "v")
        XCTAssertEqual(Array(bf[0..<3]), [0x3F80, 0x3F82, 0x3F81])
        let h = try u16s(try SafetensorsFile(path: tmp + "/f16.safetensors"), "v")
        XCTAssertEqual(Array(h[3..<8]), [0x3C00, 0x3C02, 0x7BFF, 0x7C00, 0x7C00])
    }

    /// bf16 round to nearest even, written out: keep the top 16 bits, add one when the dropped 16 bits
    /// exceed half, or equal half and the kept part is odd (no NaN among the inputs).
    static func bf16RNE(_ x: Float) -> UInt16 {
        let b = x.bitPattern, kept = b >> 16, dropped = b & 0xFFFF
        return UInt16(truncatingIfNeeded: dropped > 0x8000 || (dropped == 0x8000 && kept & 1 == 1) ? kept + 1 : kept)
    }

    // MARK: Int4

    /// An AutoGPTQ folder with the modules of fixtures/int4 (two real ones, one act-order asymmetric).
    func autoGPTQFolder() throws -> (folder: String, fixture: SafetensorsFile, modules: [String]) {
        let fx = try SafetensorsFile(path: Fixtures.path("int4/autogptq_modules.safetensors"))
        let keep = fx.tensors.filter { t in [".qweight", ".qzeros", ".scales", ".g_idx", ".bias"].contains { t.name.hasSuffix($0) } }
        let folder = tmp + "/gptq"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let w = try SafetensorsWriter(tensors: keep.map { .init(name: $0.name, dtype: $0.dtype, shape: $0.shape) })
        try w.write(to: folder + "/model.safetensors", overwrite: true) { t in Array(try fx.view(t.name).bytes) }
        let modules = keep.map(\.name).filter { $0.hasSuffix(".qweight") }.map { String($0.dropLast(8)) }.sorted()
        XCTAssertEqual(modules.count, 3)
        return (folder, fx, modules)
    }

    /// W[o, i] = scale[g_idx[i], o] * (q[i, o] - (zst[g_idx[i], o] + 1)), AutoGPTQ v1's definition,
    /// computed here from the packed tensors (qweight: input i in nibble i % 8 of row i / 8; qzeros:
    /// output o in nibble o % 8 of column o / 8, stored minus one).
    func independentDequant(_ f: TensorFile, _ m: String) throws -> [Float] {
        let qv = try f.view(m + ".qweight"), zv = try f.view(m + ".qzeros"), sv = try f.view(m + ".scales"), gv = try f.view(m + ".g_idx")
        let q = qv.bytes.withMemoryRebound(to: UInt32.self) { Array($0) }
        let z = zv.bytes.withMemoryRebound(to: UInt32.self) { Array($0) }
        let s = sv.bytes.withMemoryRebound(to: UInt16.self) { Array($0) }
        let g = gv.bytes.withMemoryRebound(to: Int32.self) { Array($0) }
        let inF = qv.info.shape[0] * 8, out = qv.info.shape[1]
        var w = [Float](repeating: .nan, count: out * inF)
        for o in 0..<out {
            for i in 0..<inF {
                let grp = Int(g[i])
                let code = Int((q[(i / 8) * out + o] >> (4 * UInt32(i % 8))) & 0xF)
                let zero = Int((z[grp * (out / 8) + o / 8] >> (4 * UInt32(o % 8))) & 0xF) + 1
                w[o * inF + i] = Float(Float16(bitPattern: s[grp * out + o])) * Float(code - zero)
            }
        }
        return w
    }

    /// AutoGPTQ folder -> X.weight [out, in] equal to torch's dequantisation in the fixture and to the
    /// formula computed here; biases exported with them (F16 -> F32 exactly).
    func testAutoGPTQModulesExportAsDequantisedWeights() throws {
        let (folder, fx, modules) = try autoGPTQFolder()
        let out = tmp + "/w.safetensors"
        let report = try Exporter.export(folder, to: out, options: ExportOptions(pattern: "\\.(weight|bias)$"))
        let got = try SafetensorsFile(path: out)
        XCTAssertEqual(Set(got.tensors.map(\.name)), Set(modules.flatMap { [$0 + ".weight", $0 + ".bias"] }))
        for m in modules {
            let w = try floats(got, m + ".weight")
            XCTAssertEqual(got.info(m + ".weight")?.shape, fx.info(m + ".dequant_f32")?.shape)
            XCTAssertEqual(w.map(\.bitPattern), try floats(fx, m + ".dequant_f32").map(\.bitPattern), "\(m): torch reference")
            XCTAssertEqual(w.map(\.bitPattern), try independentDequant(fx, m).map(\.bitPattern), "\(m): AutoGPTQ formula")
            XCTAssertEqual(try floats(got, m + ".bias"), try u16s(fx, m + ".bias").map { Float(Float16(bitPattern: $0)) })
        }
        XCTAssertEqual(report.tensors.first { $0.name.hasSuffix(".weight") }?.from, "int4-autogptq")
        XCTAssertEqual(report.format, "safetensors")
    }

    /// The same modules in an SQ4 file export to the same weights; --raw writes the stored tensors.
    func testSQ4ModulesExportAsDequantisedWeightsAndRawAsStored() throws {
        let (folder, fx, modules) = try autoGPTQFolder()
        let sq4 = tmp + "/m.sq4"
        try TinyInt4.writeSQ4(fromAutoGPTQ: try SafetensorsFile(path: folder + "/model.safetensors"),
                              configPath: Fixtures.path("int4/config.json"), to: sq4)
        let out = tmp + "/w.safetensors"
        let report = try Exporter.export(sq4, to: out, options: ExportOptions(pattern: "weight$"))
        XCTAssertEqual(report.format, "squint-int4")
        let got = try SafetensorsFile(path: out)
        XCTAssertEqual(got.tensors.map(\.name).sorted(), modules.map { $0 + ".weight" })
        for m in modules {
            XCTAssertEqual(try floats(got, m + ".weight").map(\.bitPattern), try independentDequant(fx, m).map(\.bitPattern), m)
        }
        // --raw: the SQ4 tensors of one module, byte for byte, under their stored names.
        let raw = tmp + "/raw.safetensors"
        try Exporter.export(sq4, to: raw, options: ExportOptions(pattern: "^synthetic\\.", raw: true))
        let r = try SafetensorsFile(path: raw), s = try SquintInt4File(path: sq4)
        let names = s.tensors.map(\.name).filter { $0.hasPrefix("synthetic.") }
        XCTAssertEqual(Set(r.tensors.map(\.name)), Set(names))
        XCTAssertTrue(names.contains("synthetic.actorder_asym.q4_perm"))
        for n in names { XCTAssertEqual(Array(try r.view(n).bytes), Array(try s.view(n).bytes), n) }
    }

    // MARK: refusals

    func testExistingOutputIsRefusedWithoutOverwrite() throws {
        let src = Fixtures.path("gguf/quants.gguf"), out = tmp + "/o.safetensors"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: out))
        XCTAssertThrowsError(try Exporter.export(src, to: out, options: ExportOptions(pattern: "f32"))) {
            XCTAssertEqual($0 as? FormatError, .exists(path: out))
        }
        XCTAssertEqual(FileManager.default.contents(atPath: out), Data("keep me".utf8))
        try Exporter.export(src, to: out, options: ExportOptions(pattern: "^f32$", overwrite: true))
        XCTAssertEqual(try SafetensorsFile(path: out).tensors.map(\.name), ["f32"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp), ["o.safetensors"])   // no temp files left
    }

    func testNoMatchAndBadPatternAreErrorsNamingThePattern() throws {
        let src = Fixtures.path("gguf/quants.gguf")
        XCTAssertThrowsError(try Exporter.export(src, to: tmp + "/o.safetensors", options: ExportOptions(pattern: "^nothing$"))) {
            XCTAssertEqual($0 as? ExportError, .noMatch(pattern: "^nothing$", path: src, tensors: 13))
            XCTAssertTrue("\($0)".contains("'^nothing$'"))
        }
        XCTAssertThrowsError(try Exporter.export(src, to: tmp + "/o.safetensors", options: ExportOptions(pattern: "(["))) {
            guard case .badPattern("([", _)? = $0 as? ExportError else { return XCTFail("\($0)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/o.safetensors"))
    }

    func testOutputOverTheSourceIsRefused() throws {
        let src = tmp + "/in.safetensors"
        try writeF32([("a", [2], [1, 2])], to: src)
        XCTAssertThrowsError(try Exporter.export(src, to: src, options: ExportOptions(pattern: "a", overwrite: true))) {
            XCTAssertEqual($0 as? ExportError, .sameFile(src))
        }
    }

    /// Exporting twice gives the same bytes (deterministic writer, metadata from the arguments only).
    func testExportIsDeterministic() throws {
        let src = Fixtures.path("gguf/quants.gguf")
        try Exporter.export(src, to: tmp + "/a.safetensors", options: ExportOptions(pattern: "q", dtype: .bf16))
        try Exporter.export(src, to: tmp + "/b.safetensors", options: ExportOptions(pattern: "q", dtype: .bf16))
        XCTAssertEqual(FileManager.default.contents(atPath: tmp + "/a.safetensors"), FileManager.default.contents(atPath: tmp + "/b.safetensors"))
    }

    // MARK: torch

    /// Torch views (transposed, narrowed, strided, expanded) and a sharded torch folder: every tensor
    /// exported is the contiguous bytes torch itself gives (fixtures/torch/expected.json, by torch).
    func testTorchViewsAndShardedFoldersExportAsTorchHasThem() throws {
        let expected = try XCTUnwrap(try Fixtures.json("torch/expected.json") as? [String: Any])
        func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }
        for (source, keys) in [("torch/views.pt", ["views.pt"]),
                               ("torch/sharded", ["sharded/pytorch_model-00001-of-00002.bin", "sharded/pytorch_model-00002-of-00002.bin"])] {
            let out = tmp + "/t.safetensors"
            let report = try Exporter.export(Fixtures.path(source), to: out, options: ExportOptions(pattern: ".", raw: true, overwrite: true))
            let f = try SafetensorsFile(path: out)
            let rows = keys.flatMap { (expected[$0] as? [[String: Any]]) ?? [] }
            XCTAssertFalse(rows.isEmpty)
            XCTAssertEqual(f.tensors.count, rows.count, source)
            for r in rows {
                let name = try XCTUnwrap(r["name"] as? String)
                XCTAssertEqual(f.info(name)?.shape, r["shape"] as? [Int], name)
                XCTAssertEqual(f.info(name)?.dtype.rawValue, r["dtype"] as? String, name)
                XCTAssertEqual(hex(Array(try f.view(name).bytes)), r["hex"] as? String, "\(source) \(name)")
            }
            XCTAssertEqual(f.metadata["source_format"], report.format)
        }
        XCTAssertTrue(try Exporter.export(Fixtures.path("torch/sharded"), to: tmp + "/s.safetensors",
                                          options: ExportOptions(pattern: ".")).format.hasPrefix("sharded-"))
    }

    /// Real GGUF files in the cache (scripts/models.sh; skipped when absent): the tensors listed in
    /// fixtures/gguf/real_expected.json, exported (several 1M-element chunks each), have the CRC-32 of
    /// gguf-py's float32 dequantisation.
    func testRealGGUFTensorsExportLikeGGUFPy() throws {
        let cache = ProcessInfo.processInfo.environment["SQUINT_CACHE"] ?? (NSHomeDirectory() + "/.cache/squint")
        let all = try XCTUnwrap(try Fixtures.json("gguf/real_expected.json") as? [String: Any])
        var checked = 0
        for (name, value) in all {
            let e = try XCTUnwrap(value as? [String: Any]), p = "\(cache)/models/\(name)"
            guard let attrs = try? FileManager.default.attributesOfItem(atPath: p),
                  (attrs[.size] as? NSNumber)?.intValue == e["size"] as? Int else { continue }
            let rows = try XCTUnwrap(e["tensors"] as? [[String: Any]])
            let names = rows.compactMap { $0["name"] as? String }
            let pattern = "^(" + names.map { NSRegularExpression.escapedPattern(for: $0) }.joined(separator: "|") + ")$"
            let out = tmp + "/real.safetensors"
            try Exporter.export(p, to: out, options: ExportOptions(pattern: pattern, overwrite: true))
            let f = try SafetensorsFile(path: out)
            XCTAssertEqual(f.tensors.count, Set(names).count, name)
            for r in rows {
                let t = try XCTUnwrap(r["name"] as? String)
                XCTAssertEqual(f.info(t)?.shape, (r["ne"] as? [Int])?.reversed(), t)
                let v = try f.view(t)
                XCTAssertEqual(v.bytes.count == 0 ? 0 : sq_crc32(0, v.bytes.baseAddress!, v.bytes.count), (r["crc32"] as? NSNumber)?.uint32Value, "\(name) \(t)")
                checked += 1
            }
        }
        if checked == 0 { throw XCTSkip("no real GGUF file of real_expected.json in \(cache)/models") }
    }

    /// Every floating-point dtype of the safetensors fixture (F64, F32, F16, BF16, both F8) exported as
    /// f32 gives the values torch recorded (fixtures/safetensors/expected.json), -0.0 included.
    func testEveryFloatDTypeWidensToTorchsValues() throws {
        let all = try XCTUnwrap(try Fixtures.json("safetensors/expected.json") as? [String: Any])
        let files = try XCTUnwrap(all["files"] as? [[String: Any]])
        let rows = try XCTUnwrap(files.first { $0["file"] as? String == "all_dtypes.safetensors" }?["tensors"] as? [[String: Any]])
        let out = tmp + "/f.safetensors"
        try Exporter.export(Fixtures.path("safetensors/all_dtypes.safetensors"), to: out, options: ExportOptions(pattern: "^t\\.(f|bf)"))
        let f = try SafetensorsFile(path: out)
        var checked = 0
        for r in rows {
            guard let name = r["name"] as? String, name.hasPrefix("t.f") || name.hasPrefix("t.bf"),
                  let values = r["values"] as? [Double] else { continue }
            let got = try floats(f, name)
            XCTAssertEqual(got.map(\.bitPattern), values.map { Float($0).bitPattern }, name)
            checked += 1
        }
        XCTAssertEqual(checked, 6)
    }
}
