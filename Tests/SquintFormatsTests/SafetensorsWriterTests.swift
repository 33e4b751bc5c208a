import Foundation
import XCTest
@testable import SquintFormats

/// The writer against the reference: files written from the same tensors are byte-identical to what
/// python's safetensors wrote; round trips; determinism; refusals.
final class SafetensorsWriterTests: XCTestCase {
    let dir = TempDir()

    /// Re-writes a python-written fixture with SafetensorsWriter, tensors given in reversed order.
    private func rewrite(_ fixture: String, to path: String) throws {
        let src = try SafetensorsFile(path: SafetensorsFixtures.path(fixture))
        let specs = src.tensors.reversed().map { SafetensorsWriter.Tensor(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        let w = try SafetensorsWriter(tensors: specs, metadata: src.metadata)
        try w.write(to: path, overwrite: false) { t in Array(try src.view(t.name).bytes) }
    }

    func testWritingTheFixturesTensorsReproducesPythonsFilesByteForByte() throws {
        for name in ["all_dtypes.safetensors", "no_metadata.safetensors", "no_tensors.safetensors",
                     "sharded/model-00001-of-00002.safetensors", "sharded/model-00002-of-00002.safetensors"] {
            let out = "\(dir.path)/\(name.replacingOccurrences(of: "/", with: "_"))"
            try rewrite(name, to: out)
            let ours = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
            XCTAssertEqual(ours, SafetensorsFixtures.bytes(name), "\(name) differs from the python-written file")
        }
    }

    func testRoundTripWithChunkedStreaming() throws {
        let specs = [
            SafetensorsWriter.Tensor(name: "w", dtype: .bf16, shape: [3, 5]),
            SafetensorsWriter.Tensor(name: "s", dtype: .f64, shape: []),
            SafetensorsWriter.Tensor(name: "e", dtype: .i8, shape: [4, 0]),
            SafetensorsWriter.Tensor(name: "b", dtype: .bool, shape: [7]),
        ]
        func content(_ t: SafetensorsWriter.Tensor) -> [UInt8] {
            (0..<t.byteCount!).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(t.name.utf8.first!)) }
        }
        let w = try SafetensorsWriter(tensors: specs, metadata: ["k": "v \"quoted\"", "z": "ü"])
        let p = "\(dir.path)/rt.safetensors"
        try w.write(to: p, overwrite: false) { t, sink in
            let bytes = content(t)
            var i = 0
            while i < bytes.count {   // 3-byte pieces
                try sink.write(Array(bytes[i..<min(i + 3, bytes.count)])); i += 3
            }
        }
        let st = try SafetensorsFile(path: p)
        XCTAssertEqual(st.metadata, ["k": "v \"quoted\"", "z": "ü"])
        // Reference layout: F64, BF16, I8, BOOL; the empty I8 sits at the BOOL tensor's offset.
        XCTAssertEqual(st.tensors.map(\.name), ["s", "w", "e", "b"])
        XCTAssertEqual(st.headerLength % 8, 0)
        XCTAssertEqual(st.mapping.size, w.fileSize)
        for t in specs {
            let info = try XCTUnwrap(st.info(t.name))
            XCTAssertEqual(info.dtype, t.dtype)
            XCTAssertEqual(info.shape, t.shape)
            XCTAssertEqual(Array(try st.view(t.name).bytes), content(t))
        }
    }

    func testSameInputGivesIdenticalBytesWhateverTheInputOrder() throws {
        let specs = (0..<6).map { SafetensorsWriter.Tensor(name: "t\($0)", dtype: DType.allCases[$0 * 2], shape: [$0, 2]) }
        let a = "\(dir.path)/a.safetensors", b = "\(dir.path)/b.safetensors"
        try SafetensorsWriter(tensors: specs, metadata: ["x": "1", "a": "2"])
            .write(to: a, overwrite: false) { [UInt8](repeating: 7, count: $0.byteCount!) }
        try SafetensorsWriter(tensors: specs.reversed(), metadata: ["a": "2", "x": "1"])
            .write(to: b, overwrite: false) { [UInt8](repeating: 7, count: $0.byteCount!) }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: a)), try Data(contentsOf: URL(fileURLWithPath: b)))
    }

    func testWriterRefusesBadTensorListsAndLeavesNoFile() throws {
        let t = SafetensorsWriter.Tensor(name: "a", dtype: .f32, shape: [2])
        assertFormatError(try SafetensorsWriter(tensors: [t, t]), "invalid", path: "<safetensors writer>",
                          mentioning: "given twice")
        assertFormatError(try SafetensorsWriter(tensors: [.init(name: "__metadata__", dtype: .u8, shape: [])]), "invalid",
                          path: "<safetensors writer>", mentioning: "__metadata__")
        assertFormatError(try SafetensorsWriter(tensors: [.init(name: "x", dtype: .f32, shape: [1 << 62, 4])]), "invalid",
                          path: "<safetensors writer>", mentioning: "overflows")
        let w = try SafetensorsWriter(tensors: [t])
        let p = "\(dir.path)/short.safetensors"
        assertFormatError(try w.write(to: p, overwrite: false) { _ in [1, 2, 3] }, "invalid", path: p,
                          mentioning: "needs 8 bytes but 3 were given")
        assertFormatError(try w.write(to: p, overwrite: false) { _ in [UInt8](repeating: 0, count: 9) }, "invalid",
                          path: p, mentioning: "more bytes")
        XCTAssertFalse(FileManager.default.fileExists(atPath: p))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "no temporary file left")
    }

    func testWriterKeepsAnExistingFileUnlessToldToOverwrite() throws {
        let p = dir.write("exists.safetensors", [1, 2, 3])
        let w = try SafetensorsWriter(tensors: [])
        assertFormatError(try w.write(to: p, overwrite: false) { _ in [] }, "exists", path: p, mentioning: "already exists")
        try w.write(to: p, overwrite: true) { _ in [] }
        XCTAssertEqual(SafetensorsFixtures.bytes("no_tensors.safetensors"),
                       [UInt8](try Data(contentsOf: URL(fileURLWithPath: p))))
    }

    // MARK: sharded writing and the index

    func testShardedWriterReproducesThePythonShardsAndIndex() throws {
        let src = try ShardedCheckpoint(indexPath: SafetensorsFixtures.path("sharded/model.safetensors.index.json"))
        // The order python's state dict had (the script's insertion order); 64-byte shards split it the same way.
        let order = ["model.embed.weight", "model.layers.0.weight", "model.layers.1.weight", "lm_head.weight"]
        let specs = order.map { n in src.info(n)! }.map { SafetensorsWriter.Tensor(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        let w = try ShardedSafetensorsWriter(tensors: specs, maxShardSize: 64, metadata: ["format": "pt"])
        XCTAssertEqual(w.shards.map(\.fileName), ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        let written = try w.write(toFolder: dir.path, overwrite: false) { t, sink in
            try sink.write(Array(try src.view(t.name).bytes))
        }
        XCTAssertEqual(written.count, 3)
        for f in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"] {
            XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir.path)/\(f)"))),
                           SafetensorsFixtures.bytes("sharded/\(f)"), f)
        }
    }

    func testOversizeTensorGetsItsOwnShardAndOneShardMeansNoIndex() throws {
        let specs = [SafetensorsWriter.Tensor(name: "a", dtype: .u8, shape: [6]),
                     SafetensorsWriter.Tensor(name: "big", dtype: .u8, shape: [20]),
                     SafetensorsWriter.Tensor(name: "b", dtype: .u8, shape: [4]),
                     SafetensorsWriter.Tensor(name: "c", dtype: .u8, shape: [1])]
        let w = try ShardedSafetensorsWriter(tensors: specs, maxShardSize: 10)
        XCTAssertEqual(w.shards.map { $0.tensors.map(\.name) }, [["big"], ["a", "b"], ["c"]])
        XCTAssertEqual(w.index?.totalSize, 31)
        try w.write(toFolder: dir.path, overwrite: false) { t, s in try s.write([UInt8](repeating: 1, count: t.byteCount!)) }
        let back = try ShardedCheckpoint(indexPath: "\(dir.path)/model.safetensors.index.json")
        XCTAssertEqual(back.shards.map(\.path).map { ($0 as NSString).lastPathComponent },
                       ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"])
        XCTAssertEqual(back.tensors.map(\.name), ["big", "a", "b", "c"])   // shard order, then file order
        XCTAssertEqual(Array(try back.view("b").bytes), [1, 1, 1, 1])

        let single = try ShardedSafetensorsWriter(tensors: specs, maxShardSize: 100)
        XCTAssertNil(single.index)
        XCTAssertEqual(single.shards.map(\.fileName), ["model.safetensors"])
    }

    func testIndexWriterReproducesTheRealQwenVLChatIndex() throws {
        // Written by transformers for Qwen/Qwen-VL-Chat: parse it, write it back, compare bytes.
        let p = SafetensorsFixtures.path("qwen-vl-chat.pytorch_model.bin.index.json")
        let index = try ShardIndex.read(path: p)
        XCTAssertEqual(index.weightMap.count, 853)
        XCTAssertEqual(index.totalSize, 19_313_870_336)
        XCTAssertEqual(index.shardNames.count, 10)
        XCTAssertEqual(index.shardNames.first, "pytorch_model-00001-of-00010.bin")
        XCTAssertEqual(index.weightMap["lm_head.weight"], "pytorch_model-00010-of-00010.bin")
        XCTAssertEqual(Array(index.jsonText().utf8), SafetensorsFixtures.bytes("qwen-vl-chat.pytorch_model.bin.index.json"))
    }

    func testIndexWriterEscapesLikePythonJSONDumps() throws {
        // Python: json.dumps({"metadata": {"total_size": 5}, "weight_map": {"é\"\n": "s.bin"}}, indent=2, sort_keys=True)
        let text = ShardIndex(weightMap: ["é\"\n": "s.bin", "a😀": "t.bin"], totalSize: 5).jsonText()
        XCTAssertEqual(text, "{\n  \"metadata\": {\n    \"total_size\": 5\n  },\n  \"weight_map\": {\n"
            + "    \"a\\ud83d\\ude00\": \"t.bin\",\n    \"\\u00e9\\\"\\n\": \"s.bin\"\n  }\n}\n")
    }
}
