import Foundation
import XCTest
import TestSupport
@testable import SquintFormats

/// The writer against gguf-py: the same metadata and float32 inputs (writer_inputs.safetensors) must
/// give a file byte-identical to gguf-py's GGUFWriter output (writer_ref.gguf), including the
/// quantised blocks, which gguf-py made with gguf.quants.quantize.
final class GGUFWriterTests: XCTestCase {
    let dir = TempDir()

    /// The metadata of make_gguf_fixtures.py's write_writer_reference, in its order.
    private func referenceMetadata(_ w: GGUFWriter) throws {
        try w.add(key: "general.architecture", .string("qwen2"))
        try w.add(key: "general.name", .string("squint writer test"))
        try w.add(key: "qwen2.block_count", .uint32(1))
        try w.add(key: "qwen2.rope.freq_base", .float32(1_000_000))
        try w.add(key: "general.flag", .bool(true))
        try w.add(key: "general.big", .uint64(1 << 40))
        try w.add(key: "general.neg", .int64(-3))
        try w.add(key: "general.f64", .float64(2.5))
        try w.add(key: "tokenizer.ggml.tokens", .array(.string, [.string("a"), .string("b"), .string("\u{e9}")]))
        try w.add(key: "tokenizer.ggml.token_type", .array(.int32, [.int32(1), .int32(3), .int32(1)]))
        try w.add(key: "x.nested", .array(.array, [.array(.int32, [.int32(1), .int32(2)]), .array(.int32, [.int32(3)])]))
        try w.add(key: "x.u8s", .array(.uint8, [.uint8(1), .uint8(2), .uint8(3)]))
    }

    private let kinds: [(String, GGMLType)] = [("w.f32", .f32), ("w.f16", .f16), ("w.bf16", .bf16), ("blk.0.q8_0", .q8_0),
                                               ("blk.0.q4_0", .q4_0), ("blk.0.q4_1", .q4_1), ("vec", .f32),
                                               ("edge.q8_0", .q8_0), ("edge.q4_0", .q4_0), ("edge.q4_1", .q4_1)]

    func testQuantisingWriterIsByteIdenticalToGGUFPy() throws {
        let inputs = try SafetensorsFile(path: GGUFFixtures.path("writer_inputs.safetensors"))
        let w = GGUFWriter()
        try referenceMetadata(w)
        for (name, type) in kinds {
            let v = try inputs.view(name)
            try w.addTensor(name: name, type: type, shape: v.info.shape, values: Array(v.bytes.bindMemory(to: Float.self)))
        }
        let out = "\(dir.path)/ours.gguf"
        try w.write(to: out, overwrite: false)
        let ours = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        let theirs = GGUFFixtures.bytes("writer_ref.gguf")
        XCTAssertEqual(ours.count, theirs.count)
        if let i = ours.indices.first(where: { $0 < theirs.count && ours[$0] != theirs[$0] }) {
            XCTFail("first differing byte at \(i) of \(theirs.count)")
        }
    }

    func testQuantisersMatchGGUFPyBlockForBlock() throws {
        // The same check per tensor, so a failure names the quantiser.
        let inputs = try SafetensorsFile(path: GGUFFixtures.path("writer_inputs.safetensors"))
        let ref = try GGUFFile(path: GGUFFixtures.path("writer_ref.gguf"))
        for (name, type) in kinds {
            let x = Array(try inputs.view(name).bytes.bindMemory(to: Float.self))
            let ours = try XCTUnwrap(GGUFQuantize.quantize(type, x))
            let theirs = Array(try ref.bytes(named: name))
            XCTAssertEqual(ours.count, theirs.count, name)
            if let i = ours.indices.first(where: { $0 < theirs.count && ours[$0] != theirs[$0] }) {
                let b = i / type.blockBytes, r = (b * type.blockBytes)..<((b + 1) * type.blockBytes)
                XCTFail("\(name) \(type.name): block \(b) differs at byte \(i % type.blockBytes): ours \(Array(ours[r])), gguf-py \(Array(theirs[r]))")
            }
            XCTAssertEqual(ref.ggufTensor(named: name)?.type, type)
        }
    }

    /// Q6_K (the output layer of llama-quantize's Q4_0 files when the width is a multiple of 256)
    /// against llama.cpp's own quantize_row_q6_K_ref on fixtures/gguf-q6k: every byte, including an
    /// all-zero block, a zero group, tiny values and exact ties; it decodes back within its step.
    func testQ6_KQuantiserMatchesLlamaCppBitForBit() throws {
        let raw = try Data(contentsOf: URL(fileURLWithPath: fixturePath("gguf-q6k/input.f32")))
        let x = raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let theirs = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixturePath("gguf-q6k/llama.q6_k"))))
        XCTAssertEqual(x.count, 8 * 256)
        let ours = try XCTUnwrap(GGUFQuantize.quantize(.q6_K, x))
        XCTAssertEqual(ours.count, theirs.count)
        for b in 0..<8 {
            let r = (b * 210)..<((b + 1) * 210)
            XCTAssertEqual(Array(ours[r]), Array(theirs[r]), "block \(b)")
        }
        let back = ours.withUnsafeBytes { GGUFDequant.dequantize(.q6_K, blocks: $0) }
        XCTAssertEqual(Array(back[(2 * 256)..<(3 * 256)]), [Float](repeating: 0, count: 256), "the all-zero block")
        XCTAssertNil(GGUFQuantize.quantize(.q6_K, [Float](repeating: 1, count: 255)), "whole 256-blocks only")
        // The writer takes Q6_K tensors (from floats, and as raw blocks) and reads them back.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("q6k-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let w = GGUFWriter()
        try w.add(key: "general.architecture", .string("llama"))
        try w.addTensor(name: "output.weight", type: .q6_K, shape: [8, 256], values: x)
        try w.addTensor(name: "raw", type: .q6_K, shape: [8, 256], bytes: theirs)
        try w.write(to: dir.path + "/q6k.gguf", overwrite: false)
        let g = try GGUFFile(path: dir.path + "/q6k.gguf")
        XCTAssertEqual(Array(try g.bytes(named: "output.weight")), theirs)
        XCTAssertEqual(Array(try g.bytes(named: "raw")), theirs)
    }

    func testWhatWeWriteReadsBackIdentically() throws {
        let w = GGUFWriter()
        try w.add(key: "general.architecture", .string("llama"))
        try w.add(key: "general.alignment", .uint32(64))
        let metadata: [(String, GGUFValue)] = [
            ("u8", .uint8(200)), ("i8", .int8(-100)), ("u16", .uint16(60000)), ("i16", .int16(-30000)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)), ("f32", .float32(-0.0)),
            ("b", .bool(false)), ("s", .string("\u{1F600} ok")), ("u64", .uint64(.max)), ("i64", .int64(.min)),
            ("f64", .float64(.pi)), ("empty", .array(.float64, [])),
            ("deep", .array(.array, [.array(.array, [.array(.string, [.string("x")])])])),
        ]
        for (k, v) in metadata { try w.add(key: k, v) }
        let q = (0..<(3 * 64)).map { Float($0 % 17) * 0.25 - 2 }
        try w.addTensor(name: "q", type: .q4_1, shape: [3, 64], values: q)
        try w.addTensor(name: "raw", type: .q8_0, shape: [32], bytes: [0x00, 0x3c] + (0..<32).map { UInt8($0) })
        try w.addTensor(name: "lazy", type: .f32, shape: [2, 1, 1, 3]) { [0, 0, 128, 63] + [UInt8](repeating: 0, count: 20) }
        try w.addTensor(name: "empty", type: .f16, shape: [0, 4], bytes: [])
        let p = "\(dir.path)/rt.gguf"
        try w.write(to: p, overwrite: false)
        let g = try GGUFFile(path: p)
        XCTAssertEqual(g.version, 3)
        XCTAssertEqual(g.alignment, 64)
        XCTAssertEqual(g.keyValues, w.keyValues)
        XCTAssertEqual(g.ggufTensors.map(\.name), ["q", "raw", "lazy", "empty"])
        XCTAssertEqual(g.ggufTensors.map(\.ne), [[64, 3], [32], [3, 1, 1, 2], [4, 0]])
        XCTAssertEqual(g.ggufTensors.map { ($0.offset - g.dataOffset) % 64 }, [0, 0, 0, 0])
        XCTAssertEqual(Array(try g.bytes(named: "q")), GGUFQuantize.quantize(.q4_1, q))
        // Q8_0 with d = 1.0: the values are the codes.
        XCTAssertEqual(try GGUFDequant.dequantize(XCTUnwrap(g.ggufTensor(named: "raw")), of: g), (0..<32).map(Float.init))
        XCTAssertEqual(try GGUFDequant.dequantize(XCTUnwrap(g.ggufTensor(named: "lazy")), of: g), [1, 0, 0, 0, 0, 0])
        // Deterministic: writing again gives the same bytes.
        try w.write(to: "\(dir.path)/rt2.gguf", overwrite: false)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/rt2.gguf")))
    }

    func testBadInputIsRefusedAndNothingIsOverwritten() throws {
        let w = GGUFWriter()
        try w.add(key: "k", .uint8(1))
        XCTAssertThrowsError(try w.add(key: "k", .uint8(2)))
        XCTAssertThrowsError(try w.add(key: "", .uint8(2)))
        XCTAssertThrowsError(try w.add(key: "mixed", .array(.int32, [.int32(1), .uint8(2)])))
        XCTAssertThrowsError(try w.add(key: "general.alignment", .uint32(48)))
        XCTAssertThrowsError(try w.add(key: "general.alignment", .int32(64)))
        XCTAssertThrowsError(try w.addTensor(name: "a", type: .q4_0, shape: [2, 33], values: [Float](repeating: 0, count: 66)))
        XCTAssertThrowsError(try w.addTensor(name: "a", type: .q4_K, shape: [256], bytes: [UInt8](repeating: 0, count: 144)))
        XCTAssertThrowsError(try w.addTensor(name: "a", type: .f32, shape: [1, 1, 1, 1, 1], bytes: [0, 0, 0, 0]))
        XCTAssertThrowsError(try w.addTensor(name: "a", type: .f32, shape: [2], bytes: [0, 0, 0, 0]))
        XCTAssertThrowsError(try w.addTensor(name: String(repeating: "n", count: 64), type: .f32, shape: [1], bytes: [0, 0, 0, 0]))
        try w.addTensor(name: String(repeating: "n", count: 63), type: .f32, shape: [1], bytes: [0, 0, 0, 0])
        try w.addTensor(name: "a", type: .f32, shape: [1], bytes: [0, 0, 0, 0])
        XCTAssertThrowsError(try w.addTensor(name: "a", type: .f32, shape: [1], bytes: [0, 0, 0, 0]))
        let p = dir.write("existing.gguf", [1, 2, 3])
        assertFormatError(try w.write(to: p, overwrite: false), "exists", path: p, mentioning: "already exists")
        XCTAssertEqual(GGUFFixtures.bytesAt(p), [1, 2, 3])
        // A lazy tensor that produces the wrong size aborts the write and leaves the old file.
        try w.addTensor(name: "bad", type: .f32, shape: [2]) { [0] }
        assertFormatError(try w.write(to: p, overwrite: true), "invalid", path: p, mentioning: "produced 1 bytes")
        XCTAssertEqual(GGUFFixtures.bytesAt(p), [1, 2, 3])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["existing.gguf"], "no temporary file left")
    }
}

extension GGUFFixtures {
    static func bytesAt(_ path: String) -> [UInt8] { [UInt8](try! Data(contentsOf: URL(fileURLWithPath: path))) }
}

/// Real files in the cache (absent on a fresh clone: the test skips): reading one and writing its
/// metadata and tensors back must reproduce llama.cpp's bytes exactly, when all its tensor types are
/// ones the writer writes.
final class GGUFRealRoundTripTests: XCTestCase {
    func testRealFileRoundTripsByteForByte() throws {
        let cache = ProcessInfo.processInfo.environment["SQUINT_CACHE"] ?? (NSHomeDirectory() + "/.cache/squint")
        let models = "\(cache)/models"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: models)) ?? []).filter { $0.hasSuffix(".gguf") }.sorted()
        var checked = 0
        for name in names {
            let g = try GGUFFile(path: "\(models)/\(name)")
            guard g.ggufTensors.allSatisfy({ GGUFWriter.tensorTypes.contains($0.type) }), g.mapping.size < 200_000_000 else { continue }
            let w = GGUFWriter()
            for kv in g.keyValues { try w.add(key: kv.key, kv.value) }
            for t in g.ggufTensors {
                try w.addTensor(name: t.name, type: t.type, shape: t.shape) { Array(try g.bytes(of: t)) }
            }
            let dir = TempDir()
            let out = "\(dir.path)/\(name)"
            try w.write(to: out, overwrite: false)
            let copy = try MappedFile(path: out)
            XCTAssertEqual(copy.size, g.mapping.size, name)
            XCTAssertTrue(copy.size == g.mapping.size && copy.bytes.elementsEqual(g.mapping.bytes), "\(name) differs")
            checked += 1
        }
        if checked == 0 { throw XCTSkip("no real GGUF file with only F32/F16/BF16/Q8_0/Q4_0/Q4_1 tensors in \(models)") }
    }
}

/// Cross-check with llama.cpp itself, when the cache holds its tools and a real model (another task
/// builds them; the test skips otherwise): a file we write, with blocks from our own quantiser, must
/// load and run in `llama-perplexity`.
final class GGUFLlamaCppTests: XCTestCase {
    func testFilesWeWriteRunInLlamaPerplexity() throws {
        let cache = ProcessInfo.processInfo.environment["SQUINT_CACHE"] ?? (NSHomeDirectory() + "/.cache/squint")
        let tool = "\(cache)/llama.cpp/bin/llama-perplexity"
        let model = "\(cache)/models/smollm2-135m-instruct-q4_1.gguf"
        let text = "\(cache)/texts/alice29.txt"
        guard [tool, model, text].allSatisfy(FileManager.default.fileExists(atPath:)) else {
            throw XCTSkip("needs \(tool), \(model) and \(text)")
        }
        let dir = TempDir()
        func perplexity(_ path: String) throws -> Double {
            let r = try Fixtures.run(tool, ["-m", path, "-f", text, "-c", "128", "--chunks", "2", "-t", "2"])
            XCTAssertEqual(r.status, 0, "\(path): \(r.err.suffix(2000))")
            let line = (r.err + r.out).split(separator: "\n").first { $0.contains("Final estimate: PPL = ") } ?? ""
            let value = line.components(separatedBy: "PPL = ").last?.split(separator: " ").first.flatMap { Double($0) }
            return try XCTUnwrap(value, "no perplexity in the output of \(path)")
        }
        // Every tensor dequantised and re-encoded as Q8_0 by GGUFQuantize (F32 norms kept).
        let g = try GGUFFile(path: model)
        let w = GGUFWriter()
        for kv in g.keyValues { try w.add(key: kv.key, kv.value) }
        for t in g.ggufTensors {
            let type: GGMLType = t.type == .f32 ? .f32 : .q8_0
            try w.addTensor(name: t.name, type: type, shape: t.shape) {
                try XCTUnwrap(GGUFQuantize.quantize(type, try GGUFDequant.dequantize(t, of: g)))
            }
        }
        let ours = "\(dir.path)/q8_0.gguf"
        try w.write(to: ours, overwrite: false)
        let (reference, rewritten) = (try perplexity(model), try perplexity(ours))
        XCTAssertTrue(rewritten.isFinite && rewritten > 1)
        // Q8_0 of values that are already 4-bit loses almost nothing (22.80 vs 22.76 measured on 8 chunks
        // of 256 tokens, docs/PERFORMANCE.md); 5% leaves room for other thread counts and llama.cpp builds.
        XCTAssertEqual(rewritten, reference, accuracy: 0.05 * reference)
    }
}
