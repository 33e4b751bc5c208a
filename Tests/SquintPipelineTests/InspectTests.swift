import Foundation
import XCTest
import SquintFormats
import SquintModels
import CSquintKernels
@testable import SquintPipeline
import TestSupport

final class InspectTests: XCTestCase {
    static var folder = ""
    override class func setUp() {
        folder = Fixtures.temporaryFolder("inspect")
        _ = try! Synth.run(.init(configPath: Fixtures.path("qwen-vl-tiny/config.json"), seed: 20240611,
                                 format: .bin, maxShardSize: 39_747_574, output: folder + "/bin"))
    }
    override class func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func testRecognisesQwenLayoutAndSummarisesModules() throws {
        let ck = try CheckpointOpener.open(Self.folder + "/bin")
        XCTAssertEqual(ck.format, "sharded-pytorch")
        let r = try Inspector.inspect(ck.file, format: ck.format, config: ck.config, quantization: nil)
        XCTAssertEqual(r.layout, "qwen-vl-bf16")
        XCTAssertEqual(r.layoutNotes, ["all 61 tensors match config.json"])
        XCTAssertEqual(r.tensorCount, 61)
        XCTAssertEqual(r.totalBytes, 79_298_540)
        XCTAssertEqual(r.totalsByDtype, [DTypeTotal(dtype: "BF16", tensors: 61, elements: 39_649_270, bytes: 79_298_540)])
        XCTAssertEqual(r.files.map(\.tensors), [16, 45])
        let h = try XCTUnwrap(r.modules.first { $0.module == "transformer.h.*" })
        XCTAssertEqual(h.blocks, 2)
        XCTAssertEqual(h.tensors, 16)
        // Per block: ln_1 128 + c_attn 384x128 + 384 + c_proj 128x128 + ln_2 128 + w1, w2 384x128 + c_proj 128x384.
        XCTAssertEqual(h.elements, 2 * (128 + 384 * 128 + 384 + 128 * 128 + 128 + 3 * 384 * 128))
        let vit = try XCTUnwrap(r.modules.first { $0.module == "transformer.visual.transformer.resblocks.*" })
        XCTAssertEqual(vit.blocks, 2)
        XCTAssertEqual(vit.tensors, 24)
        XCTAssertEqual(r.modules.map(\.tensors).reduce(0, +), 61)
    }

    func testFilterSelectsRowsButTotalsCoverEverything() throws {
        let ck = try CheckpointOpener.open(Self.folder + "/bin")
        let re = try NSRegularExpression(pattern: #"^transformer\.h\.1\.mlp\."#)
        let r = try Inspector.inspect(ck.file, format: ck.format, config: ck.config, quantization: nil, filter: re)
        XCTAssertEqual(r.tensors.map(\.name), ["transformer.h.1.mlp.w1.weight", "transformer.h.1.mlp.w2.weight",
                                               "transformer.h.1.mlp.c_proj.weight"])
        XCTAssertEqual(r.tensorCount, 61)
    }

    /// Statistics against values computed independently from the weight recipe (float32 -> BF16
    /// rounding -> widened), summed in float64 here.
    func testStatsMatchTheRecipe() throws {
        let ck = try CheckpointOpener.open(Self.folder + "/bin")
        let r = try Inspector.inspect(ck.file, format: ck.format, config: ck.config, quantization: nil, stats: true)
        let specs = Dictionary(uniqueKeysWithValues: ck.config!.bf16TensorSpecs().map { ($0.name, $0) })
        let gen = SyntheticWeights(seed: 20240611)
        for name in ["transformer.wte.weight", "transformer.h.0.ln_1.weight", "transformer.visual.attn_pool.pos_embed",
                     "transformer.h.1.attn.c_attn.bias", "lm_head.weight"] {
            let spec = specs[name]!
            let n = spec.shape.reduce(1, *)
            var bits = [UInt16](repeating: 0, count: n)
            bits.withUnsafeMutableBufferPointer { gen.generate(spec, start: 0, count: n, bf16: $0.baseAddress) }
            var v = [Float](repeating: 0, count: n)
            sq_bf16_to_f32_ref(bits, &v, n)
            let mean = v.reduce(0.0) { $0 + Double($1) } / Double(n)
            let std = (v.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n)).squareRoot()
            let s = try XCTUnwrap(r.tensors.first { $0.name == name }?.stats, name)
            XCTAssertEqual(s.min, Double(v.min()!), name)
            XCTAssertEqual(s.max, Double(v.max()!), name)
            // float32 partial sums over blocks of 2048: relative error well under 1e-5 of the scale.
            XCTAssertEqual(s.mean!, mean, accuracy: 1e-5 * max(std, 1e-3), name)
            XCTAssertEqual(s.std!, std, accuracy: 1e-5 * std, name)
            XCTAssertEqual(s.nan, 0); XCTAssertEqual(s.inf, 0)
        }
    }

    func testStatsCountNaNAndInfApart() throws {
        let path = Self.folder + "/special.safetensors"
        let values: [Float] = [1, .nan, -2, .infinity, 3, -.infinity, .nan, 0.5]
        var halves = [UInt16](repeating: 0, count: values.count)
        sq_f32_to_f16(values, &halves, values.count)
        let w = try SafetensorsWriter(tensors: [.init(name: "f32", dtype: .f32, shape: [8]), .init(name: "f16", dtype: .f16, shape: [2, 4]),
                                               .init(name: "i32", dtype: .i32, shape: [3])])
        try w.write(to: path, overwrite: true) { t in
            switch t.name {
            case "f32": return values.withUnsafeBytes { Array($0) }
            case "f16": return halves.withUnsafeBytes { Array($0) }
            default: return [Int32(-7), 5, 11].withUnsafeBytes { Array($0) }
            }
        }
        let ck = try CheckpointOpener.open(path)
        let r = try Inspector.inspect(ck.file, format: ck.format, config: nil, quantization: nil, stats: true)
        for name in ["f32", "f16"] {
            let s = try XCTUnwrap(r.tensors.first { $0.name == name }?.stats)
            XCTAssertEqual(s.nan, 2, name); XCTAssertEqual(s.inf, 2, name)
            XCTAssertEqual(s.min, -2, name); XCTAssertEqual(s.max, 3, name)
            XCTAssertEqual(s.mean!, 2.5 / 4, accuracy: 1e-9, name)
        }
        let i = try XCTUnwrap(r.tensors.first { $0.name == "i32" }?.stats)
        XCTAssertEqual(i.min, -7); XCTAssertEqual(i.max, 11); XCTAssertEqual(i.mean!, 3, accuracy: 1e-12)
        XCTAssertEqual(r.layout, "unknown")
    }

    /// The real BF16 and Int4 releases' tensor lists (fixtures/qwen-vl/tensors-*.tsv): 160 quantized
    /// modules renamed (weight -> g_idx, qweight, qzeros, scales, plus a bias for the four that had none),
    /// every other tensor BF16 -> F16.
    func testDiffOfOfficialBF16AndInt4Lists() throws {
        func load(_ f: String) throws -> [TensorInfo] {
            let tsv = try String(contentsOfFile: Fixtures.path("qwen-vl/\(f)"), encoding: .utf8)
            return tsv.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
                let c = line.split(separator: "\t").map(String.init)
                let shape = c[1].dropFirst().dropLast().split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces))! }
                let dt: DType = ["bfloat16": .bf16, "float16": .f16, "int32": .i32][c[2]]!
                return TensorInfo(name: c[0], dtype: dt, shape: shape, file: c[4], offset: 0, byteCount: Int(c[3])!)
            }
        }
        let a = try load("tensors-bf16.tsv"), b = try load("tensors-int4.tsv")
        let d = CheckpointDiff.compare(a, b)
        XCTAssertEqual(d.renamed.count, 160)
        XCTAssertTrue(d.removed.isEmpty); XCTAssertTrue(d.added.isEmpty)
        XCTAssertTrue(d.shapeChanged.isEmpty)
        XCTAssertEqual(d.dtypeChanged.count, 853 - 160)   // all that stay, c_attn.bias included
        XCTAssertTrue(d.dtypeChanged.allSatisfy { $0.from == "BF16" && $0.to == "F16" })
        let w1 = try XCTUnwrap(d.renamed.first { $0.from == ["transformer.h.0.mlp.w1.weight"] })
        XCTAssertEqual(w1.to, ["transformer.h.0.mlp.w1.bias", "transformer.h.0.mlp.w1.g_idx", "transformer.h.0.mlp.w1.qweight",
                               "transformer.h.0.mlp.w1.qzeros", "transformer.h.0.mlp.w1.scales"])
        XCTAssertTrue(d.summaryLines().contains("~ transformer.h.*.mlp.w1.weight -> bias, g_idx, qweight, qzeros, scales  (x32)"),
                      d.summaryLines().joined(separator: "\n"))
    }
}
