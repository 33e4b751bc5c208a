import Foundation
import XCTest
@testable import SquintFormats

/// Builds GGUF bytes field by field, so each test can lie in exactly one place.
struct GGUFBytes {
    var b: [UInt8] = []
    mutating func u8(_ v: UInt8) { b.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
    mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); b += Array(s.utf8) }
    mutating func header(version: UInt32 = 3, tensors: UInt64, kv: UInt64) {
        b += Array("GGUF".utf8); u32(version); u64(tensors); u64(kv)
    }
    /// One tensor info.
    mutating func tensor(_ name: String, ne: [UInt64], type: UInt32 = 0, offset: UInt64 = 0) {
        str(name); u32(UInt32(ne.count)); for n in ne { u64(n) }; u32(type); u64(offset)
    }
    /// Zeros up to the next multiple of `align`, then `count` data bytes.
    mutating func data(_ count: Int, align: Int = 32) {
        b += [UInt8](repeating: 0, count: (align - b.count % align) % align)
        b += [UInt8](repeating: 0x3f, count: count)
    }
}

/// One hostile file per reader rule (Formats/GGUF.md §6): each is refused with one FormatError line
/// naming the file; nothing traps and nothing allocates in proportion to a lying count.
final class GGUFHostileTests: XCTestCase {
    let dir = TempDir()

    private func refuse(_ g: GGUFBytes, _ kind: String, mentioning: String, file: StaticString = #filePath, line: UInt = #line) {
        let p = dir.write("hostile-\(line).gguf", g.b)
        assertFormatError(try GGUFFile(path: p), kind, path: p, mentioning: mentioning, file: file, line: line)
        do { _ = try GGUFFile(path: p) } catch { XCTAssertFalse("\(error)".contains("\n"), "one line: \(error)", file: file, line: line) }
    }

    private func accept(_ g: GGUFBytes, file: StaticString = #filePath, line: UInt = #line) throws -> GGUFFile {
        try GGUFFile(path: dir.write("ok-\(line).gguf", g.b))
    }

    /// A valid file with one F32 tensor of `ne`, used to vary a single field.
    private func oneTensor(ne: [UInt64], type: UInt32 = 0, offset: UInt64 = 0, dataBytes: Int = 64) -> GGUFBytes {
        var g = GGUFBytes()
        g.header(tensors: 1, kv: 0)
        g.tensor("t", ne: ne, type: type, offset: offset)
        g.data(dataBytes)
        return g
    }

    func testTheBuilderMakesValidFiles() throws {
        let f = try accept(oneTensor(ne: [4, 4]))
        XCTAssertEqual(f.ggufTensors.first?.byteCount, 64)
        XCTAssertEqual(f.dataOffset, 96)   // 24-byte header + 41-byte info, padded to 32
    }

    // MARK: truncation

    func testEveryTruncationOfValidFilesIsRefusedAsTruncated() throws {
        for name in ["metadata_v3.gguf", "writer_ref.gguf"] {
            let whole = GGUFFixtures.bytes(name)
            let g = try GGUFFile(path: GGUFFixtures.path(name))
            let lastEnd = g.ggufTensors.map { $0.offset + $0.byteCount }.max() ?? whole.count
            let p = "\(dir.path)/cut.gguf"
            for length in (0..<lastEnd).reversed() {
                // truncate(2) of one file: writing a fresh file per length is needlessly slow.
                if length == lastEnd - 1 { dir.write("cut.gguf", whole) }
                XCTAssertEqual(truncate(p, off_t(length)), 0)
                assertFormatError(try GGUFFile(path: p), "truncated", path: p, mentioning: "file is truncated")
            }
        }
    }

    // MARK: header

    func testBadMagicAndVersionsAreRefused() {
        var g = GGUFBytes(); g.b = Array("GGUX".utf8) + [UInt8](repeating: 0, count: 40)
        refuse(g, "invalid", mentioning: "not a GGUF file")
        for (v, kind, text) in [(UInt32(1), "unsupported", "version 1"), (4, "unsupported", "version 4"),
                                (0, "unsupported", "version 0"), (0x0300_0000, "unsupported", "big-endian")] {
            var h = GGUFBytes(); h.header(version: v, tensors: 0, kv: 0)
            refuse(h, kind, mentioning: text)
        }
    }

    func testHugeCountsAreRefusedBeforeAllocating() {
        for n: UInt64 in [1 << 63, UInt64.max, 1_000_000] {
            var g = GGUFBytes(); g.header(tensors: n, kv: 0); g.data(64)
            refuse(g, "truncated", mentioning: "declares \(n) tensors")
            var k = GGUFBytes(); k.header(tensors: 0, kv: n); k.data(64)
            refuse(k, "truncated", mentioning: "declares \(n) metadata pairs")
        }
    }

    // MARK: metadata

    func testHugeStringAndArrayLengthsAreRefused() {
        var g = GGUFBytes(); g.header(tensors: 0, kv: 1); g.u64(1 << 63); g.data(64)
        refuse(g, "truncated", mentioning: "declares 9223372036854775808 bytes")
        var s = GGUFBytes(); s.header(tensors: 0, kv: 1); s.str("k"); s.u32(8); s.u64(UInt64.max)
        refuse(s, "truncated", mentioning: "'k' declares 18446744073709551615 bytes")
        for et: UInt32 in [0, 8, 9, 12] {
            var a = GGUFBytes(); a.header(tensors: 0, kv: 1); a.str("arr"); a.u32(9); a.u32(et); a.u64(1 << 63); a.data(64)
            refuse(a, "truncated", mentioning: "declares 9223372036854775808")
        }
        // a count that fits only if elements were smaller than their minimum encoding (strings >= 8 bytes)
        var c = GGUFBytes(); c.header(tensors: 0, kv: 1); c.str("arr"); c.u32(9); c.u32(8); c.u64(10); c.data(40, align: 1)
        refuse(c, "truncated", mentioning: "declares 10 STRING elements")
    }

    func testBadValueTypesBoolsAndTextAreRefused() {
        var g = GGUFBytes(); g.header(tensors: 0, kv: 1); g.str("k"); g.u32(13); g.data(8)
        refuse(g, "invalid", mentioning: "unknown value type 13")
        var a = GGUFBytes(); a.header(tensors: 0, kv: 1); a.str("k"); a.u32(9); a.u32(77); a.u64(1); a.data(8)
        refuse(a, "invalid", mentioning: "array of unknown value type 77")
        var b = GGUFBytes(); b.header(tensors: 0, kv: 1); b.str("k"); b.u32(7); b.u8(2)
        refuse(b, "invalid", mentioning: "BOOL with byte 2")
        var u = GGUFBytes(); u.header(tensors: 0, kv: 1); u.u64(2); u.b += [0xC3, 0x28]; u.u32(0); u.u8(0)
        refuse(u, "invalid", mentioning: "not valid UTF-8")
        var e = GGUFBytes(); e.header(tensors: 0, kv: 1); e.str(""); e.u32(0); e.u8(0)
        refuse(e, "invalid", mentioning: "empty key")
    }

    func testDuplicateKeysAndTensorNamesAreRefused() {
        var g = GGUFBytes(); g.header(tensors: 0, kv: 2)
        g.str("k"); g.u32(0); g.u8(1); g.str("k"); g.u32(0); g.u8(2)
        refuse(g, "invalid", mentioning: "duplicate metadata key 'k'")
        var t = GGUFBytes(); t.header(tensors: 2, kv: 0)
        t.tensor("w", ne: [8]); t.tensor("w", ne: [8], offset: 32); t.data(64)
        refuse(t, "invalid", mentioning: "duplicate tensor name 'w'")
    }

    func testNamesInMessagesCannotBreakTheLine() {
        var g = GGUFBytes(); g.header(tensors: 0, kv: 2)
        g.str("a\nb"); g.u32(0); g.u8(1); g.str("a\nb"); g.u32(0); g.u8(2)
        refuse(g, "invalid", mentioning: "duplicate metadata key 'a\\u{a}b'")
        let long = String(repeating: "x", count: 5000)
        refuse(oneTensorNamed(long, ne: [4], type: 99), "invalid", mentioning: "'\(String(repeating: "x", count: 120))...'")
    }

    private func oneTensorNamed(_ name: String, ne: [UInt64], type: UInt32) -> GGUFBytes {
        var g = GGUFBytes()
        g.header(tensors: 1, kv: 0)
        g.tensor(name, ne: ne, type: type)
        g.data(64)
        return g
    }

    func testArrayNestingIsCapped() throws {
        func nested(_ depth: Int) -> GGUFBytes {
            var g = GGUFBytes(); g.header(tensors: 0, kv: 1); g.str("deep"); g.u32(9)
            for _ in 1..<depth { g.u32(9); g.u64(1) }   // arrays of one array
            g.u32(0); g.u64(1); g.u8(7)                // innermost: one UINT8
            return g
        }
        let ok = try accept(nested(8))
        var v = ok.value(forKey: "deep")
        for _ in 1..<8 { v = v?.array?.first }
        XCTAssertEqual(v, .array(.uint8, [.uint8(7)]))
        refuse(nested(9), "invalid", mentioning: "nests arrays deeper than 8")
    }

    func testAlignmentKeyMustBeAUInt32PowerOfTwo() throws {
        func file(_ write: (inout GGUFBytes) -> Void) -> GGUFBytes {
            var g = GGUFBytes(); g.header(tensors: 0, kv: 1); g.str("general.alignment"); write(&g); return g
        }
        refuse(file { $0.u32(4); $0.u32(0) }, "invalid", mentioning: "not a power of two")
        refuse(file { $0.u32(4); $0.u32(24) }, "invalid", mentioning: "24 is not a power of two")
        refuse(file { $0.u32(4); $0.u32(1 << 21) }, "invalid", mentioning: "not a power of two in 1...1048576")
        refuse(file { $0.u32(10); $0.u64(32) }, "invalid", mentioning: "must be a UINT32, found UINT64")
        refuse(file { $0.u32(5); $0.u32(32) }, "invalid", mentioning: "must be a UINT32, found INT32")
        XCTAssertEqual(try accept(file { $0.u32(4); $0.u32(8) }).alignment, 8)
    }

    // MARK: tensor infos

    func testDimensionCountsOutside1To4AreRefused() {
        refuse(oneTensor(ne: [2, 2, 2, 2, 2]), "invalid", mentioning: "n_dims 5 (must be 1...4)")
        refuse(oneTensor(ne: []), "invalid", mentioning: "n_dims 0")
        var g = GGUFBytes(); g.header(tensors: 1, kv: 0); g.str("t"); g.u32(UInt32.max); g.data(64)
        refuse(g, "invalid", mentioning: "n_dims 4294967295")
    }

    func testOverflowingElementAndByteCountsAreRefused() {
        refuse(oneTensor(ne: [1 << 62, 4]), "invalid", mentioning: "element count overflows")
        refuse(oneTensor(ne: [1 << 32, 1 << 32]), "invalid", mentioning: "element count overflows")
        refuse(oneTensor(ne: [UInt64.max]), "invalid", mentioning: "above 2^63-1")
        refuse(oneTensor(ne: [1 << 61, 2]), "invalid", mentioning: "byte size overflows")     // 2^62 F32 = 2^64 bytes
        // fits 64 bits but not the file
        refuse(oneTensor(ne: [1 << 40]), "truncated", mentioning: "needs bytes")
        // Empty tensors (a 0 dimension, 0 bytes) whose other dimensions overflow in another order: a row of
        // 9.08e18 Q8_0 values is 9.08e18 / 32 x 34 bytes (fuzz finding 5 trapped computing it).
        refuse(oneTensor(ne: [9_079_256_848_778_920_000, 0], type: 8), "invalid", mentioning: "byte size overflows")
        refuse(oneTensor(ne: [1 << 62, 0]), "invalid", mentioning: "byte size overflows")
        refuse(oneTensor(ne: [0, 1 << 32, 1 << 32]), "invalid", mentioning: "element count overflows")
        XCTAssertEqual(try accept(oneTensor(ne: [1 << 20, 0], type: 2)).tensors.first?.shape, [0, (1 << 20) / 32 * 18])
    }

    func testUnknownTypesAreRefusedByName() {
        refuse(oneTensor(ne: [256], type: 16), "unsupported", mentioning: "ggml type IQ2_XXS (id 16)")
        refuse(oneTensor(ne: [32], type: 9), "unsupported", mentioning: "Q8_1")
        refuse(oneTensor(ne: [4], type: 28), "unsupported", mentioning: "F64")
        refuse(oneTensor(ne: [4], type: 99), "invalid", mentioning: "unknown ggml type id 99")
    }

    func testRowLengthMustBeAMultipleOfTheBlockSize() {
        refuse(oneTensor(ne: [33, 2], type: 2), "invalid", mentioning: "ne[0] = 33 is not a multiple of the Q4_0 block size 32")
        refuse(oneTensor(ne: [128], type: 12), "invalid", mentioning: "Q4_K block size 256")
    }

    func testMisalignedOutOfFileAndOverlappingOffsetsAreRefused() {
        refuse(oneTensor(ne: [4], offset: 4), "invalid", mentioning: "offset 4 is not a multiple of the alignment 32")
        refuse(oneTensor(ne: [4], offset: 1 << 40), "truncated", mentioning: "needs bytes")
        refuse(oneTensor(ne: [4], offset: UInt64.max - 31), "invalid", mentioning: "is beyond any file")
        refuse(oneTensor(ne: [4], offset: UInt64(Int.max) - 31), "invalid", mentioning: "overflows 64 bits")
        var g = GGUFBytes(); g.header(tensors: 2, kv: 0)
        g.tensor("a", ne: [16], offset: 0); g.tensor("b", ne: [8], offset: 32); g.data(96)
        refuse(g, "invalid", mentioning: "tensor 'b' (bytes")
        // empty tensors overlap nothing; gaps and any order are accepted
        var ok = GGUFBytes(); ok.header(tensors: 3, kv: 0)
        ok.tensor("late", ne: [8], offset: 64); ok.tensor("early", ne: [8], offset: 0); ok.tensor("empty", ne: [0], offset: 0)
        ok.data(96)
        XCTAssertEqual(try accept(ok).ggufTensors.map(\.name), ["late", "early", "empty"])
    }
}
