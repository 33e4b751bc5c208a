import Foundation
import XCTest
import SquintFormats
@testable import SquintPipeline
import TestSupport

/// `inspect` of GGUF files (fixtures/gguf, written by gguf-py 0.19.0; expected values from gguf-py).
final class InspectGGUFTests: XCTestCase {
    func testGGUFIsRecognisedByItsMagicAndListedWithGGMLTypes() throws {
        let ck = try CheckpointOpener.open(Fixtures.path("gguf/quants.gguf"))
        XCTAssertEqual(ck.format, "gguf")
        XCTAssertNil(ck.config)
        let r = try Inspector.inspect(ck.file, format: ck.format, config: nil, quantization: nil)
        XCTAssertEqual(r.layout, "gguf-squint-fixture")
        XCTAssertEqual(r.tensorCount, 13)
        let expected = try SafetensorsFile(path: Fixtures.path("gguf/quants_expected.safetensors"))
        for row in r.tensors {
            XCTAssertEqual(row.dtype, row.name.uppercased(), "ggml type name")
            XCTAssertEqual(row.shape, expected.info(row.name)?.shape, "element shape, row-major")
        }
        let g = try XCTUnwrap(r.gguf)
        XCTAssertEqual(g.version, 3)
        XCTAssertEqual(g.alignment, 64)
        XCTAssertEqual(g.metadata.first { $0.key == "general.alignment" }?.type, "UINT32")
        let q4k = try XCTUnwrap(g.types.first { $0.type == "Q4_K" })
        XCTAssertEqual(q4k.bitsPerWeight, 4.5)
        XCTAssertEqual(q4k.elements, 33 * 256)
        XCTAssertEqual(q4k.bytes, 33 * 144)
        XCTAssertEqual(r.totalsByDtype.map(\.dtype).sorted(), GGMLType.allCases.map(\.name).sorted())
    }

    func testBlocksAreFoldedAndTheBlockCountChecked() throws {
        let ck = try CheckpointOpener.open(Fixtures.path("gguf/writer_ref.gguf"))
        let r = try Inspector.inspect(ck.file, format: ck.format, config: nil, quantization: nil)
        XCTAssertEqual(r.layout, "gguf-qwen2")
        XCTAssertTrue(r.layoutNotes.contains("qwen2: 1 blocks (blk.0...blk.0) as qwen2.block_count says"), "\(r.layoutNotes)")
        let blk = try XCTUnwrap(r.modules.first { $0.module == "blk.*" })
        XCTAssertEqual(blk.tensors, 3)
        XCTAssertEqual(blk.elements, 5 * 64 + 3 * 96 + 7 * 32)
        let tokens = try XCTUnwrap(r.gguf?.metadata.first { $0.key == "tokenizer.ggml.tokens" })
        XCTAssertEqual(tokens.type, "ARRAY[STRING]")
        XCTAssertEqual(r.gguf?.metadata.first { $0.key == "x.nested" }?.type, "ARRAY[ARRAY[INT32]]")
    }

    func testStatsAreOverDequantisedValues() throws {
        let ck = try CheckpointOpener.open(Fixtures.path("gguf/quants.gguf"))
        let r = try Inspector.inspect(ck.file, format: ck.format, config: nil, quantization: nil,
                                      filter: try NSRegularExpression(pattern: "^q"), stats: true)
        XCTAssertEqual(r.tensors.count, 10)
        let expected = try SafetensorsFile(path: Fixtures.path("gguf/quants_expected.safetensors"))
        for row in r.tensors {
            let v = Array(try expected.view(row.name).bytes.bindMemory(to: Float.self))
            let s = try XCTUnwrap(row.stats)
            XCTAssertEqual(s.min, Double(v.min()!), row.name)
            XCTAssertEqual(s.max, Double(v.max()!), row.name)
            // mean: float32 values summed in double by both; only the summation order differs.
            let mean = v.reduce(0.0) { $0 + Double($1) } / Double(v.count)
            XCTAssertEqual(try XCTUnwrap(s.mean), mean, accuracy: 1e-12 * Double(v.count) * (abs(mean) + 1), row.name)
            XCTAssertEqual(s.nan, 0)
        }
    }
}

final class InspectGGUFDiffTests: XCTestCase {
    func testDiffOfGGUFFilesComparesGGMLTypesAndElementShapes() throws {
        let dir = Fixtures.temporaryFolder("gguf-diff")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ name: String, _ type: GGMLType, _ extra: Bool) throws -> TensorFile {
            let w = GGUFWriter()
            try w.add(key: "general.architecture", .string("llama"))
            try w.addTensor(name: "blk.0.w", type: type, shape: [2, 64], values: (0..<128).map { Float($0) / 64 })
            if extra { try w.addTensor(name: "blk.0.b", type: .f32, shape: [2], values: [1, 2]) }
            try w.write(to: "\(dir)/\(name)", overwrite: false)
            return try CheckpointOpener.open("\(dir)/\(name)").file
        }
        let a = try write("a.gguf", .q4_0, false), b = try write("b.gguf", .q8_0, true)
        let (va, vb) = (Inspector.diffView(a), Inspector.diffView(b))
        let d = CheckpointDiff.compare(va.tensors, vb.tensors, typeNamesA: va.typeNames, typeNamesB: vb.typeNames)
        XCTAssertEqual(d.dtypeChanged, [.init(name: "blk.0.w", from: "Q4_0", to: "Q8_0")])
        XCTAssertEqual(d.shapeChanged, [], "element shapes are equal; only the block bytes differ")
        XCTAssertEqual(d.added, ["blk.0.b"])
    }
}

final class InspectGGUFFileTypeTests: XCTestCase {
    func testFileTypeIsNamedAsLlamaCppNamesIt() throws {
        let dir = Fixtures.temporaryFolder("gguf-ftype")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = GGUFWriter()
        try w.add(key: "general.architecture", .string("qwen2"))
        try w.add(key: "general.file_type", .uint32(15))
        try w.addTensor(name: "output_norm.weight", type: .f32, shape: [2], values: [1, 1])
        try w.write(to: "\(dir)/m.gguf", overwrite: false)
        let ck = try CheckpointOpener.open("\(dir)/m.gguf")
        let r = try Inspector.inspect(ck.file, format: ck.format, config: nil, quantization: nil)
        XCTAssertEqual(r.gguf?.metadata.first { $0.key == "general.file_type" }?.value, "15 (MOSTLY_Q4_K_M)")
        XCTAssertEqual(r.layoutNotes, [], "no qwen2.block_count, no general.name: nothing to check")
    }
}
