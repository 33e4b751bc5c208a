import Foundation
import XCTest
@testable import SquintFormats

/// TorchZipWriter: byte-identical to the files torch.load(weights_only=True) accepted
/// (`make_torch_fixtures.py --verify-writer`), and read back by our reader.
final class TorchZipWriterTests: XCTestCase {
    /// Keep in sync with WRITER_ENTRIES / writer_pattern in scripts/fixtures/make_torch_fixtures.py.
    static let entries: [TorchZipWriter.Entry] = [
        .init(name: "model.embed.weight", dtype: .bf16, shape: [3, 5]),
        .init(name: "norm.bias", dtype: .f32, shape: [4]),
        .init(name: "flags", dtype: .bool, shape: [3]),
        .init(name: "scalar", dtype: .f64, shape: []),
        .init(name: "empty", dtype: .f16, shape: [0, 2]),
        .init(name: "counts", dtype: .i64, shape: [2, 2]),
        .init(name: "u16", dtype: .u16, shape: [3]),
        .init(name: "f8", dtype: .f8e4m3, shape: [2, 2]),
        .init(name: "big.rank", dtype: .i8, shape: [1, 2, 1, 2, 1]),
    ]

    static func pattern(_ i: Int, _ e: TorchZipWriter.Entry) -> [UInt8] {
        let n = e.shape.reduce(1, *) * e.dtype.byteSize
        return (0..<n).map { k in
            let v = (k * 31 + i * 7)
            return e.dtype == .bool ? UInt8((v >> 3) & 1) : UInt8(v & 0xFF)
        }
    }

    private func write(_ path: String, zip64: TorchZipWriter.Zip64Mode, chunked: Bool = false) throws {
        try TorchZipWriter(entries: Self.entries, zip64: zip64).write(to: path, overwrite: true) { i, sink in
            let bytes = Self.pattern(i, Self.entries[i])
            try bytes.withUnsafeBytes { b in
                if chunked, b.count > 1 {
                    try sink(UnsafeRawBufferPointer(rebasing: b[..<1]))
                    try sink(UnsafeRawBufferPointer(rebasing: b[1...]))
                } else { try sink(b) }
            }
        }
    }

    private func tmp(_ name: String) -> String { NSTemporaryDirectory() + "squint-\(getpid())-\(name)" }

    func testOutputIsByteIdenticalToTheTorchVerifiedFixtures() throws {
        for (mode, fixture) in [(TorchZipWriter.Zip64Mode.auto, "writer_roundtrip.pt"), (.always, "writer_zip64.pt")] {
            // The archive folder is the file stem, so write under the fixture's own name.
            let dir = tmp("w-\(fixture)-dir")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let out = dir + "/" + fixture
            try write(out, zip64: mode, chunked: mode == .always)
            if ProcessInfo.processInfo.environment["SQUINT_REGEN_TORCH_FIXTURES"] == "1" {
                _ = try? FileManager.default.removeItem(atPath: TorchFixtures.path(fixture))
                try FileManager.default.copyItem(atPath: out, toPath: TorchFixtures.path(fixture))
            }
            let got = try Data(contentsOf: URL(fileURLWithPath: out))
            let want = try Data(contentsOf: URL(fileURLWithPath: TorchFixtures.path(fixture)))
            XCTAssertEqual(got, want, fixture)
        }
    }

    func testRoundTripThroughOurReaderWithAlignedDataAndValidCRCs() throws {
        for mode in [TorchZipWriter.Zip64Mode.auto, .always] {
            let out = tmp("rt-\(mode).bin")
            defer { unlink(out) }
            try write(out, zip64: mode)
            let c = try TorchCheckpoint(path: out)
            XCTAssertEqual(c.container, .zip)
            XCTAssertEqual(c.tensors.map(\.name), Self.entries.map(\.name))
            for (i, e) in Self.entries.enumerated() {
                let info = try XCTUnwrap(c.info(e.name))
                XCTAssertEqual(info.dtype, e.dtype); XCTAssertEqual(info.shape, e.shape)
                XCTAssertNil(info.strides)
                XCTAssertEqual(info.offset % 64, 0, "64-byte aligned like torch")
                XCTAssertEqual(Array(try c.view(e.name).bytes), Self.pattern(i, e))
            }
            XCTAssertNoThrow(try c.verifyChecksums())
        }
    }

    func testManyTensorsSpanSeveralSetItemsBatches() throws {
        let entries = (0..<2100).map { TorchZipWriter.Entry(name: "t\($0)", dtype: .i32, shape: [1]) }
        let out = tmp("many.bin")
        defer { unlink(out) }
        try TorchZipWriter(entries: entries).write(to: out) { i, sink in
            try withUnsafeBytes(of: Int32(i).littleEndian) { try sink($0) }
        }
        let c = try TorchCheckpoint(path: out)
        XCTAssertEqual(c.tensors.count, 2100)
        XCTAssertEqual(try c.view("t2099").bytes.loadUnaligned(as: Int32.self), 2099)
    }

    func testProviderGivingTheWrongByteCountFailsAndLeavesNothing() throws {
        let out = tmp("short.bin")
        let e = assertFormatError(try TorchZipWriter(entries: [.init(name: "w", dtype: .f32, shape: [2])])
            .write(to: out) { _, sink in try [UInt8](repeating: 0, count: 7).withUnsafeBytes { try sink($0) } })
        XCTAssertEqual(e, .invalid(path: out, what: "provider gave 7 of 8 bytes for tensor 'w'"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testDuplicateNamesAreRefused() {
        let e = assertFormatError(try TorchZipWriter(entries: [.init(name: "a", dtype: .f32, shape: []),
                                                               .init(name: "a", dtype: .f32, shape: [])])
            .write(to: tmp("dup.bin")) { _, _ in })
        XCTAssertEqual(e, .invalid(path: tmp("dup.bin"), what: "duplicate tensor name 'a'"))
    }

    func testArchiveNameIsTheFileStemAsTorchWrites() {
        XCTAssertEqual(TorchZipWriter.archiveName(for: "/x/pytorch_model-00001-of-00010.bin"), "pytorch_model-00001-of-00010")
        XCTAssertEqual(TorchZipWriter.archiveName(for: "model.pt"), "model")
    }
}
