import CSquintKernels
import Foundation
import TestSupport
import XCTest
@testable import SquintFormats

/// Builds SQ4 files from fixtures/int4 (real AutoGPTQ modules of the tiny Qwen-VL model, see its
/// README) for the reader, writer and conversion tests.
enum SQ4Fixture {
    static let modules = ["transformer.h.0.mlp.c_proj", "transformer.h.1.attn.c_attn", "synthetic.actorder_asym"]
    static var autogptqPath: String { Fixtures.path("int4/autogptq_modules.safetensors") }

    static func header(vocabTensor: String? = "tokenizer.qwen_tiktoken") throws -> SQ4Header {
        let cfg = try StrictJSON.parseObject(file: MappedFile(path: Fixtures.path("int4/config.json")), what: "config.json")
        return SQ4Header(config: cfg, quantization: SQ4Quantization(),
                         tokenizer: SQ4Tokenizer(qwenTiktokenSHA256: sha256Hex(vocabBytes), vocabTensor: vocabTensor),
                         provenance: SQ4Provenance(source: "qwen-vl-tiny/int4 (AutoGPTQ v1)", sourceSHA256: nil,
                                                   calibration: "none: converted from AutoGPTQ, no requantisation",
                                                   tool: "squint tests"))
    }

    /// Stand-in bytes for the embedded tokenizer file.
    static let vocabBytes: [UInt8] = Array("IQ== 0\nIg== 1\nIw== 2\n".utf8)

    /// Records of the three fixture modules plus dense tensors: a small F32, a large F32 (page
    /// alignment), the vocab blob. Returns the writer and every tensor's bytes by name.
    static func build(path: String = "<test>") throws -> (SquintInt4Writer, [String: TensorView]) {
        let st = try SafetensorsFile(path: autogptqPath)
        var views: [String: TensorView] = [:]
        var tensors: [SquintInt4Writer.Tensor] = []
        var specs: [QuantizedLinearSpec] = []
        for m in modules {
            let rec = try AutoGPTQLayout.toSQ4(AutoGPTQLayout.module(in: st, prefix: m), name: m, path: autogptqPath)
            specs.append(rec.spec)
            for v in rec.views { views[v.info.name] = v }
            tensors += SquintInt4Writer.tensors(for: rec)
        }
        for (name, src) in [("dense.small", "synthetic.actorder_asym.x"), ("dense.large", "transformer.h.0.mlp.c_proj.dequant_f32")] {
            let v = try st.view(src)
            views[name] = v
            tensors.append(.init(name: name, dtype: v.info.dtype, shape: v.info.shape))
        }
        views["tokenizer.qwen_tiktoken"] = OwnedBytes.view(name: "tokenizer.qwen_tiktoken", dtype: .u8, shape: [vocabBytes.count], vocabBytes)
        tensors.append(.init(name: "tokenizer.qwen_tiktoken", dtype: .u8, shape: [vocabBytes.count]))
        return (try SquintInt4Writer(header: header(), linears: specs, tensors: tensors, path: path), views)
    }

    static func write(_ path: String) throws -> [String: TensorView] {
        let (w, views) = try build(path: path)
        try w.write(to: path, overwrite: true, views: views)
        return views
    }
}

final class SquintInt4FileTests: XCTestCase {
    let dir = TempDir()

    func testRoundTripKeepsHeaderRecordsAndEveryTensorByte() throws {
        let p = dir.path + "/model.sq4"
        let views = try SQ4Fixture.write(p)
        let f = try SquintInt4File(path: p)
        XCTAssertEqual(f.header, try SQ4Fixture.header())
        // The config is the source's config.json, numbers with their text ("mlp_ratio": 4.9231).
        XCTAssertEqual(f.header.config["visual"]?["mlp_ratio"]?.compactText, "4.9231")
        XCTAssertEqual(f.header.config["hidden_size"], .integer(128))
        XCTAssertEqual(f.linears.map(\.name), SQ4Fixture.modules)
        XCTAssertEqual(f.tensors.count, views.count)
        for t in f.tensors {
            XCTAssertEqual(Array(try f.view(t.name).bytes), Array(views[t.name]!.bytes), t.name)
            XCTAssertEqual(t.offset % SQ4.minimumAlignment, 0, t.name)
            if t.byteCount >= SQ4.pageAlignedFrom { XCTAssertEqual(t.offset % SQ4.pageAlignment, 0, t.name) }
        }
        XCTAssertEqual(f.dataSectionOffset % 4096, 0)
        XCTAssertNoThrow(try f.verify())
        XCTAssertEqual(sha256Hex(try f.view("tokenizer.qwen_tiktoken").bytes), f.header.tokenizer.qwenTiktokenSHA256)
        let rec = try f.quantizedLinear("transformer.h.0.mlp.c_proj")
        XCTAssertEqual(rec.spec, QuantizedLinearSpec(name: "transformer.h.0.mlp.c_proj", outFeatures: 128, inFeatures: 384, groupSize: 128,
                                                     symmetric: true, actOrder: false, hasBias: true))
        XCTAssertTrue(rec.codes.owner === f.mapping, "records are zero-copy views of the mapping")
    }

    /// The prelude as Formats/SQUINT_INT4.md §1 lays it out, and CRC-32 as zip defines it.
    func testPreludeBytesAndChecksumFollowTheSpec() throws {
        XCTAssertEqual(sq_crc32(0, Array("123456789".utf8), 9), 0xCBF4_3926)   // the CRC-32 check value
        let p = dir.path + "/model.sq4"
        _ = try SQ4Fixture.write(p)
        let b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: p)))
        XCTAssertEqual(Array(b[0..<8]), Array("SQUINT4\0".utf8))
        func u32(_ o: Int) -> UInt32 { b[o..<o + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        let n = Int(b[16..<24].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        XCTAssertEqual(u32(8), 1); XCTAssertEqual(u32(12), 0); XCTAssertEqual(u32(28), 0)
        XCTAssertEqual(n % 8, 0)
        XCTAssertEqual(u32(24), sq_crc32(0, Array(b[32..<32 + n]), n))
        let json = try JSONSerialization.jsonObject(with: Data(b[32..<32 + n])) as! [String: Any]
        XCTAssertEqual(json["format"] as? String, "SQ4")
        let table = json["tensors"] as! [[String: Any]]
        let d = (32 + n + 4095) / 4096 * 4096
        for e in table {
            let off = e["offset"] as! Int, len = e["length"] as! Int
            XCTAssertEqual(UInt32(e["crc32"] as! String, radix: 16), sq_crc32(0, Array(b[d + off..<d + off + len]), len))
        }
        let last = table.last!
        XCTAssertEqual(b.count, d + (last["offset"] as! Int) + (last["length"] as! Int))
    }

    func testWritingTwiceGivesIdenticalBytes() throws {
        let a = dir.path + "/a.sq4", b = dir.path + "/b.sq4"
        _ = try SQ4Fixture.write(a)
        _ = try SQ4Fixture.write(b)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: a)), try Data(contentsOf: URL(fileURLWithPath: b)))
    }

    /// AutoGPTQ -> SQ4 file -> AutoGPTQ gives back the real module's bytes exactly.
    func testAutoGPTQRoundTripThroughTheFileIsByteIdentical() throws {
        let p = dir.path + "/model.sq4"
        _ = try SQ4Fixture.write(p)
        let f = try SquintInt4File(path: p)
        let st = try SafetensorsFile(path: SQ4Fixture.autogptqPath)
        for m in SQ4Fixture.modules {
            let original = try AutoGPTQLayout.module(in: st, prefix: m)
            let back = try AutoGPTQLayout.toAutoGPTQ(f.quantizedLinear(m), path: p)
            for (a, b) in zip(original.views, back.views) {
                XCTAssertEqual(a.info.shape, b.info.shape, a.info.name)
                XCTAssertEqual(a.info.dtype, b.info.dtype, a.info.name)
                XCTAssertEqual(Array(a.bytes), Array(b.bytes), a.info.name)
            }
            XCTAssertEqual(original.views.count, back.views.count)
        }
        // The real modules are symmetric (qzeros 0x77777777) without act order; the synthetic one is neither.
        XCTAssertEqual(f.linears.map(\.symmetric), [true, true, false])
        XCTAssertEqual(f.linears.map(\.actOrder), [false, false, true])
    }

    /// Codes in SQ4 order equal AutoGPTQ's nibbles read by SPEC §5.4's unpacking formula.
    func testConvertedCodesAndZerosFollowSpecUnpacking() throws {
        let st = try SafetensorsFile(path: SQ4Fixture.autogptqPath)
        let m = try AutoGPTQLayout.module(in: st, prefix: "synthetic.actorder_asym")
        let r = try AutoGPTQLayout.toSQ4(m, name: "s", path: "<test>")
        let out = 64, groups = 4
        func word(_ v: TensorView, _ i: Int) -> UInt32 { v.bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self) }
        let perm = (0..<256).map { Int(word(r.perm!, $0)) }
        XCTAssertEqual(r.gIdx, (0..<256).map { Int32(bitPattern: word(m.gIdx, $0)) })
        for k in 0..<256 {
            let i = perm[k]
            XCTAssertEqual(Int(Int32(bitPattern: word(m.gIdx, i))), k / 64)
            for o in 0..<out { XCTAssertEqual(UInt32(r.code(o, k)), (word(m.qweight, (i / 8) * out + o) >> (4 * UInt32(i % 8))) & 0xF) }
        }
        for g in 0..<groups { for o in 0..<out {
            XCTAssertEqual(UInt32(r.zeros!.bytes[o * groups + g]), ((word(m.qzeros, g * 8 + o / 8) >> (4 * UInt32(o % 8))) & 0xF) + 1)
        } }
    }

    func testWriterRefusesInconsistentInput() throws {
        let (w, _) = try SQ4Fixture.build()
        let h = try SQ4Fixture.header()
        let all = w.layout.map(\.tensor)
        func refuse(_ linears: [QuantizedLinearSpec], _ tensors: [SquintInt4Writer.Tensor], header: SQ4Header? = nil, mentioning: String,
                    line: UInt = #line) {
            assertFormatError(try SquintInt4Writer(header: header ?? h, linears: linears, tensors: tensors, path: "out.sq4"),
                              "invalid", path: "out.sq4", mentioning: mentioning, line: line)
        }
        refuse(w.linears, all.filter { $0.name != "transformer.h.0.mlp.c_proj.q4_scales" }, mentioning: "needs tensor 'transformer.h.0.mlp.c_proj.q4_scales'")
        refuse(w.linears, all.map { $0.name == "transformer.h.0.mlp.c_proj.q4_codes" ? .init(name: $0.name, dtype: .u8, shape: [128, 191]) : $0 },
               mentioning: "needs [128, 192]")
        refuse(Array(w.linears.dropFirst()), all, mentioning: "belongs to no declared linear")
        refuse(w.linears, all + [all[0]], mentioning: "listed twice")
        var badSHA = h; badSHA.tokenizer.qwenTiktokenSHA256 = "ABC"
        refuse(w.linears, all, header: badSHA, mentioning: "64 lowercase hex")
        var spec = w.linears[0]; spec.groupSize = 48
        refuse([spec], all, mentioning: "group_size 48")
        // A tensor given the wrong number of bytes aborts the write and leaves nothing behind.
        let p = dir.path + "/short.sq4"
        XCTAssertThrowsError(try w.write(to: p, overwrite: false) { _, sink in try sink.write([1, 2, 3]) })
        XCTAssertFalse(FileManager.default.fileExists(atPath: p))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    /// A whole AutoGPTQ checkpoint (here the fixture file: three modules plus dense tensors) converts
    /// to SQ4 with every module a record, every other tensor copied, and AutoGPTQ bytes recoverable.
    func testConvertCheckpointStreamsModulesAndDenseTensors() throws {
        let st = try SafetensorsFile(path: SQ4Fixture.autogptqPath)
        let p = dir.path + "/converted.sq4"
        try AutoGPTQLayout.convertCheckpoint(st, header: SQ4Fixture.header(vocabTensor: nil), to: p, overwrite: false)
        let f = try SquintInt4File(path: p)
        try f.verify()
        XCTAssertEqual(Set(f.linears.map(\.name)), Set(SQ4Fixture.modules))
        let dense = st.tensors.filter { t in !SQ4Fixture.modules.contains { t.name.hasPrefix($0 + ".") && !t.name.hasSuffix("dequant_f32")
            && !t.name.hasSuffix(".x") && !t.name.hasSuffix(".y_f64") } }
        XCTAssertEqual(dense.count, 9)   // dequant_f32, x, y_f64 of each module
        for t in dense { XCTAssertEqual(Array(try f.view(t.name).bytes), Array(try st.view(t.name).bytes), t.name) }
        XCTAssertEqual(f.tensors.count, dense.count + f.linears.reduce(0) { $0 + $1.expectedTensors().count })
        for m in SQ4Fixture.modules {
            let back = try AutoGPTQLayout.toAutoGPTQ(f.quantizedLinear(m), path: p)
            for v in back.views { XCTAssertEqual(Array(v.bytes), Array(try st.view(v.info.name).bytes), v.info.name) }
        }
    }

    /// The whole tiny AutoGPTQ model from shared/reference (78 MB, not a fixture): skipped on a fresh
    /// clone. Every module round-trips byte for byte, every dense tensor is copied.
    func testConvertsTheWholeTinyAutoGPTQModelWhenAvailable() throws {
        let src = Fixtures.packageRoot() + "/../shared/reference/qwen-vl-tiny/int4/model.safetensors"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: src), "shared/reference not present")
        let st = try SafetensorsFile(path: src)
        let p = dir.path + "/tiny.sq4"
        try AutoGPTQLayout.convertCheckpoint(st, header: SQ4Fixture.header(vocabTensor: nil), to: p, overwrite: false)
        let f = try SquintInt4File(path: p)
        try f.verify()
        XCTAssertEqual(f.linears.count, 10)           // 2 layers x (c_attn, c_proj, w1, w2, mlp.c_proj)
        XCTAssertTrue(f.linears.allSatisfy { $0.symmetric && !$0.actOrder && $0.groupSize == 128 })
        var covered = 0
        for l in f.linears {
            for v in try AutoGPTQLayout.toAutoGPTQ(f.quantizedLinear(l.name), path: p).views {
                XCTAssertEqual(Array(v.bytes), Array(try st.view(v.info.name).bytes), v.info.name); covered += 1
            }
        }
        for t in f.tensors where !f.linears.contains(where: { t.name.hasPrefix($0.name + ".") }) {
            XCTAssertEqual(Array(try f.view(t.name).bytes), Array(try st.view(t.name).bytes), t.name); covered += 1
        }
        XCTAssertEqual(covered, st.tensors.count)
    }

    /// AutoGPTQ tensors SQ4 cannot hold exactly are refused with the reason, never converted lossily.
    func testAutoGPTQConversionRefusesInconsistentModules() throws {
        let st = try SafetensorsFile(path: SQ4Fixture.autogptqPath)
        let m = try AutoGPTQLayout.module(in: st, prefix: "transformer.h.0.mlp.c_proj")   // in 384, out 128, g 128
        func withGIdx(_ g: [Int32]) -> AutoGPTQModule {
            AutoGPTQModule(qweight: m.qweight, qzeros: m.qzeros, scales: m.scales,
                           gIdx: OwnedBytes.view(name: "g_idx", dtype: .i32, shape: [g.count], g), bias: m.bias)
        }
        var g = (0..<384).map { Int32($0 / 128) }
        g[5] = 3
        assertFormatError(try AutoGPTQLayout.toSQ4(withGIdx(g), name: "x", path: "src"), "invalid", path: "src", mentioning: "g_idx[5] = 3")
        g[5] = 1   // group 0 now has 127 inputs, group 1 has 129
        assertFormatError(try AutoGPTQLayout.toSQ4(withGIdx(g), name: "x", path: "src"), "unsupported", path: "src",
                          mentioning: "group 0 has 127 inputs")
        assertFormatError(try AutoGPTQLayout.toSQ4(withGIdx(Array(g.prefix(256))), name: "x", path: "src"), "invalid", path: "src",
                          mentioning: "shapes disagree")
        // A zero point of 0 (possible in SQ4) has no AutoGPTQ v1 encoding.
        let rec = try AutoGPTQLayout.toSQ4(m, name: "x", path: "src")
        let zeros = [UInt8](repeating: 8, count: 128 * 3).enumerated().map { $0.offset == 7 ? 0 : $0.element }
        let asym = try QuantizedLinearRecord(spec: { var s = rec.spec; s.symmetric = false; return s }(), codes: rec.codes, scales: rec.scales,
                                             zeros: OwnedBytes.view(name: "z", dtype: .u8, shape: [128, 3], zeros), perm: nil,
                                             bias: rec.bias, path: "src")
        assertFormatError(try AutoGPTQLayout.toAutoGPTQ(asym, path: "out"), "unsupported", path: "out", mentioning: "zero point 0")
    }
}
