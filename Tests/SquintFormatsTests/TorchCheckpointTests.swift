import Foundation
import XCTest
@testable import SquintFormats
import CSquintKernels

/// Reads files written by real torch 2.13 and compares every tensor's dtype, shape and contiguous
/// bytes with what torch itself recorded (fixtures/torch/expected.json).
final class TorchCheckpointTests: XCTestCase {
    private func assertMatchesTorch(_ file: String, container: TorchCheckpoint.Container,
                                    line: UInt = #line) throws {
        let ckpt = try TorchCheckpoint(path: TorchFixtures.path(file))
        XCTAssertEqual(ckpt.container, container, line: line)
        let want = TorchFixtures.tensors(file)
        XCTAssertEqual(ckpt.tensors.map(\.name), want.map(\.name), "dict order", line: line)
        for w in want {
            let info = try XCTUnwrap(ckpt.info(w.name), line: line)
            XCTAssertEqual(info.dtype.rawValue, w.dtype, w.name, line: line)
            XCTAssertEqual(info.shape, w.shape, w.name, line: line)
            let v = try ckpt.view(w.name)
            XCTAssertEqual(Array(v.bytes), w.bytes, "bytes of \(w.name)", line: line)
            XCTAssertTrue(v.info.isContiguous, line: line)
        }
    }

    func testEveryDTypeMatchesTorch() throws {
        try assertMatchesTorch("all_dtypes.pt", container: .zip)
        let c = try TorchCheckpoint(path: TorchFixtures.path("all_dtypes.pt"))
        XCTAssertEqual(Set(c.tensors.map(\.dtype)), Set(DType.allCases))
    }

    func testViewsSharedStoragesOffsetsAndStridesMatchTorch() throws {
        try assertMatchesTorch("views.pt", container: .zip)
    }

    func testViewsDeclareStridesOnlyForNonContiguousTensors() throws {
        let c = try TorchCheckpoint(path: TorchFixtures.path("views.pt"))
        for w in TorchFixtures.tensors("views.pt") {
            let info = try XCTUnwrap(c.info(w.name))
            let rowMajor = w.shape.indices.map { w.shape[($0 + 1)...].reduce(1, *) }
            let contiguous = w.shape.reduce(1, *) == 0 || zip(w.shape, zip(w.stride, rowMajor)).allSatisfy { $0 == 1 || $1.0 == $1.1 }
            XCTAssertEqual(info.strides, contiguous ? nil : w.stride, w.name)
        }
    }

    func testTensorsViewingOneStorageShareItsKeyAndOffsetsApplyStorageOffset() throws {
        let c = try TorchCheckpoint(path: TorchFixtures.path("views.pt"))
        let groups = (TorchFixtures.expected["_shared"] as! [String: [[String]]])["views.pt"]!
        for group in groups {
            let keys = Set(group.map { c.info($0)!.storageKey })
            XCTAssertEqual(keys.count, 1, "one storage for \(group)")
        }
        let base = try XCTUnwrap(c.info("base")), tail = try XCTUnwrap(c.info("tail"))
        let offset = TorchFixtures.tensors("views.pt").first { $0.name == "tail" }!.storageOffset
        XCTAssertEqual(tail.offset, base.offset + offset * 4)
        XCTAssertEqual(c.info("tied"), { var t = base; t.name = "tied"; return t }())
        // Zero-copy: a contiguous tensor's view points into the mapping.
        let v = try c.view("base")
        XCTAssertEqual(v.bytes.baseAddress, c.file.base! + base.offset)
    }

    func testModuleStateDictWithMetadataMatchesTorch() throws {
        try assertMatchesTorch("module_state.pt", container: .zip)
    }

    func testLegacyFormatMatchesTorch() throws {
        try assertMatchesTorch("legacy.pt", container: .legacy)
    }

    func testShardsOpenOneByOneAndAgreeWithTheIndex() throws {
        let dir = TorchFixtures.path("sharded")
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/pytorch_model.bin.index.json"))) as! [String: Any]
        let weightMap = index["weight_map"] as! [String: String]
        var total = 0
        for shard in Set(weightMap.values).sorted() {
            try assertMatchesTorch("sharded/" + shard, container: .zip)
            let c = try TorchCheckpoint(path: dir + "/" + shard)
            for t in c.tensors {
                XCTAssertEqual(weightMap[t.name], shard)
                total += t.byteCount
            }
        }
        XCTAssertEqual(total, (index["metadata"] as! [String: Any])["total_size"] as? Int)
    }

    func testChecksumsOfTorchFilesVerify() throws {
        for f in ["all_dtypes.pt", "views.pt", "legacy.pt"] {
            XCTAssertNoThrow(try TorchCheckpoint(path: TorchFixtures.path(f)).verifyChecksums())
        }
    }

    func testMissingTensorIsNamed() throws {
        let c = try TorchCheckpoint(path: TorchFixtures.path("views.pt"))
        XCTAssertEqual(assertFormatError(try c.view("nope")), .missingTensor(path: c.path, name: "nope"))
    }

    // MARK: CRC-32

    func testCRC32MatchesKnownValuesAndReferenceOnOddLengths() {
        let check = Array("123456789".utf8)
        XCTAssertEqual(sq_crc32(0, check, check.count), 0xCBF4_3926) // the standard check value
        XCTAssertEqual(sq_crc32_ref(0, check, check.count), 0xCBF4_3926)
        var bytes = [UInt8](repeating: 0, count: 300)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 131 &+ 17) }
        bytes.withUnsafeBytes { b in
            for start in [0, 1, 3, 7] {
                for n in [0, 1, 31, 33, 127, 129, 290] where start + n <= b.count {
                    let p = b.baseAddress! + start
                    XCTAssertEqual(sq_crc32(0, p, n), sq_crc32_ref(0, p, n), "start \(start) n \(n)")
                    // Streaming in two pieces gives the same value.
                    let half = n / 2
                    XCTAssertEqual(sq_crc32(sq_crc32(0, p, half), p + half, n - half), sq_crc32_ref(0, p, n))
                }
            }
        }
    }
}
