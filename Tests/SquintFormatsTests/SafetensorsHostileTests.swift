import Foundation
import XCTest
@testable import SquintFormats

/// One hostile file per reader rule (Formats/SAFETENSORS.md §3): each must be refused with the right
/// FormatError case, naming the file and the problem. Files are built here from valid ones.
final class SafetensorsHostileTests: XCTestCase {
    let dir = TempDir()

    /// Writes `header` (padded with spaces to a multiple of 8) + `data`, opens it, expects an error.
    private func refuse(header: String, data: [UInt8] = [], headerLength: UInt64? = nil, pad: Bool = true,
                        _ kind: String, mentioning: String, file: StaticString = #filePath, line: UInt = #line) {
        var h = header
        if pad { h += String(repeating: " ", count: (8 - h.utf8.count % 8) % 8) }
        let p = dir.write("hostile-\(line).safetensors", safetensorsBytes(header: h, data: data, headerLength: headerLength))
        assertFormatError(try SafetensorsFile(path: p), kind, path: p, mentioning: mentioning, file: file, line: line)
    }

    private func accept(header: String, data: [UInt8] = [], file: StaticString = #filePath, line: UInt = #line) throws
        -> SafetensorsFile
    {
        let p = dir.write("ok-\(line).safetensors", safetensorsBytes(header: header, data: data))
        return try SafetensorsFile(path: p)
    }

    private func f32(_ name: String, _ shape: [Int], _ b: Int, _ e: Int) -> String {
        "\"\(name)\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[\(b),\(e)]}"
    }

    // MARK: truncation

    func testEveryTruncationOfAValidFileIsRefusedAsTruncated() throws {
        let whole = SafetensorsFixtures.bytes("all_dtypes.safetensors")
        let st = try SafetensorsFile(path: SafetensorsFixtures.path("all_dtypes.safetensors"))
        // Every length in the 8-byte prefix and the header, and every data length: the data section is
        // 326 bytes, so all of it is cheap to try.
        for length in 0..<whole.count {
            let p = dir.write("cut.safetensors", Array(whole[..<length]))
            let expected = length < 8 ? "header length" : length < st.dataSectionOffset ? "JSON header" : "needs data bytes"
            assertFormatError(try SafetensorsFile(path: p), "truncated", path: p, mentioning: expected)
        }
    }

    // MARK: header length

    func testHeaderLengthAboveTheCapIsRefusedBeforeReadingIt() {
        refuse(header: "{}", headerLength: 100_000_001, "invalid", mentioning: "exceeds the 100000000-byte cap")
        refuse(header: "{}", headerLength: UInt64.max, "invalid", mentioning: "exceeds")
    }

    func testHeaderLengthPastTheEndOfFileIsTruncated() {
        refuse(header: "{}      ", headerLength: 4096, "truncated", mentioning: "4096-byte JSON header")
    }

    // MARK: JSON

    func testHeaderThatIsNotJSONIsRefused() {
        refuse(header: "{not json}", "invalid", mentioning: "not valid JSON")
        refuse(header: "{\"a\":{\"dtype\":\"F32\",", "invalid", mentioning: "ends inside a value")
        refuse(header: "{\"__metadata__\":{\"a\":\"b\",}}", "invalid", mentioning: "not valid JSON")   // trailing comma
        refuse(header: "{'__metadata__':{}}", "invalid", mentioning: "not valid JSON")                  // single quotes
        refuse(header: "{/* c */}", "invalid", mentioning: "not valid JSON")                            // comment
        refuse(header: "{\"__metadata__\":{\"a\":NaN}}", "invalid", mentioning: "not valid JSON")
        for bad in ["-Infinity", "Infinity", "01", "+1", "1.", ".5", "0x10", "1e", "truex"] {
            refuse(header: "{\"__metadata__\":{\"a\":\(bad)}}", "invalid", mentioning: "not valid JSON")
        }
        refuse(header: "{\"__metadata__\":{\"a\":\"line\nbreak\"}}", "invalid", mentioning: "not valid JSON")
        refuse(header: "{// c\n}", "invalid", mentioning: "not valid JSON")
    }

    func testHeaderThatIsNotAnObjectIsRefused() {
        refuse(header: "[1, 2]", "invalid", mentioning: "must be a JSON object")
        refuse(header: "\"text\"", "invalid", mentioning: "must be a JSON object")
        refuse(header: " {}", "invalid", mentioning: "starting with '{'")
        refuse(header: "", headerLength: 0, "invalid", mentioning: "empty")
    }

    func testOnlyWhitespaceMayFollowTheHeaderObject() throws {
        refuse(header: "{}{}", "invalid", mentioning: "after the JSON value")
        refuse(header: "{}\0\0\0\0\0\0", pad: false, "invalid", mentioning: "0x0")
        refuse(header: "{} x", "invalid", mentioning: "after the JSON value")
        XCTAssertTrue(try accept(header: "{} \n\t\r    ").tensors.isEmpty)
    }

    func testHeaderThatIsNotUTF8IsRefused() {
        var h = Array("{\"__metadata__\":{\"a\":\"".utf8) + [0xC3, 0x28] + Array("\"}}".utf8)
        h += [UInt8](repeating: 0x20, count: (8 - h.count % 8) % 8)
        let p = dir.write("utf8.safetensors", withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) } + h)
        assertFormatError(try SafetensorsFile(path: p), "invalid", path: p, mentioning: "not valid JSON")
    }

    func testNestingDeeperThanTheLimitIsRefused() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        refuse(header: "{\"__metadata__\":\(deep)}", "invalid", mentioning: "nested deeper than 16")
    }

    func testDuplicateKeysAreRefused() {
        refuse(header: "{\(f32("a", [1], 0, 4)),\(f32("a", [1], 4, 8))}", data: .init(repeating: 0, count: 8),
               "invalid", mentioning: "repeats the key \"a\"")
        // Equal after unescaping.
        refuse(header: "{\(f32("a", [1], 0, 4)),\(f32("\\u0061", [1], 4, 8))}", data: .init(repeating: 0, count: 8),
               "invalid", mentioning: "repeats the key \"a\"")
        refuse(header: "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               data: [0, 0, 0, 0], "invalid", mentioning: "repeats the key \"dtype\"")
        refuse(header: "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", "invalid", mentioning: "repeats the key \"k\"")
        refuse(header: "{\"__metadata__\":{},\"__metadata__\":{}}", "invalid", mentioning: "repeats the key \"__metadata__\"")
    }

    func testKeysHoldingNULAreRefused() {
        refuse(header: "{\(f32("a\\u0000b", [1], 0, 4))}", data: [0, 0, 0, 0], "invalid", mentioning: "U+0000")
    }

    // MARK: metadata and entries

    func testMetadataMustBeAnObjectOfStrings() {
        refuse(header: "{\"__metadata__\":{\"n\":1}}", "invalid", mentioning: "__metadata__[\"n\"] must be a string")
        refuse(header: "{\"__metadata__\":[]}", "invalid", mentioning: "__metadata__ must be an object")
    }

    func testEntriesMustHaveExactlyDtypeShapeAndOffsets() {
        refuse(header: "{\"a\":[]}", "invalid", mentioning: "tensor 'a': entry must be an object")
        refuse(header: "{\"a\":{\"shape\":[],\"data_offsets\":[0,0]}}", "invalid", mentioning: "missing \"dtype\"")
        refuse(header: "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0], "invalid",
               mentioning: "missing \"shape\"")
        refuse(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", data: [0, 0, 0, 0], "invalid",
               mentioning: "missing \"data_offsets\"")
        refuse(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"stride\":[1]}}", data: [0, 0, 0, 0],
               "invalid", mentioning: "unknown key \"stride\"")
    }

    func testUnknownDtypeIsUnsupportedAndNonStringDtypeInvalid() {
        refuse(header: "{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", data: [0], "unsupported",
               mentioning: "dtype \"F4\"")
        refuse(header: "{\"a\":{\"dtype\":\"float32\",\"shape\":[1],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0],
               "unsupported", mentioning: "float32")
        refuse(header: "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0], "invalid",
               mentioning: "dtype must be a string")
    }

    func testShapeEntriesMustBeNonNegativeIntegers() {
        for bad in ["-1", "2.0", "1e1", "\"2\"", "true", "null", "9223372036854775808", "99999999999999999999999"] {
            refuse(header: "{\"a\":{\"dtype\":\"U8\",\"shape\":[\(bad)],\"data_offsets\":[0,2]}}", data: [0, 0], "invalid",
                   mentioning: "shape[0] must be a non-negative integer")
        }
        refuse(header: "{\"a\":{\"dtype\":\"U8\",\"shape\":2,\"data_offsets\":[0,2]}}", data: [0, 0], "invalid",
               mentioning: "shape must be an array")
    }

    func testOffsetsMustBeTwoNonNegativeIntegers() {
        for bad in ["[0]", "[0,4,8]", "[-4,0]", "[0,4.0]", "[0,18446744073709551615]", "{}", "[\"0\",\"4\"]"] {
            refuse(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\(bad)}}", data: [0, 0, 0, 0],
                   "invalid", mentioning: "data_offsets")
        }
    }

    func testOffsetsThatEndBeforeTheyBeginAreRefused() {
        refuse(header: "{\(f32("a", [0], 4, 0))}", data: [0, 0, 0, 0], "invalid", mentioning: "end before they begin")
    }

    func testLyingShapeIsRefused() {
        refuse(header: "{\(f32("a", [3], 0, 8))}", data: .init(repeating: 0, count: 8), "invalid",
               mentioning: "needs 12 bytes but data_offsets [0, 8] span 8")
    }

    func testShapeWhoseByteCountOverflowsIsRefused() {
        refuse(header: "{\(f32("a", [1 << 62, 4], 0, 8))}", data: .init(repeating: 0, count: 8), "invalid",
               mentioning: "overflows")
        refuse(header: "{\(f32("a", [1 << 31, 1 << 31, 2], 0, 8))}", data: .init(repeating: 0, count: 8), "invalid",
               mentioning: "overflows")
    }

    // MARK: coverage of the data section

    func testOverlappingTensorsAreRefused() {
        refuse(header: "{\(f32("a", [2], 0, 8)),\(f32("b", [2], 4, 12))}", data: .init(repeating: 0, count: 12),
               "invalid", mentioning: "overlaps tensor 'a'")
        refuse(header: "{\(f32("a", [2], 0, 8)),\(f32("b", [2], 0, 8))}", data: .init(repeating: 0, count: 8),
               "invalid", mentioning: "overlaps")
    }

    func testGapsBetweenTensorsAreRefused() {
        refuse(header: "{\(f32("a", [2], 0, 8)),\(f32("b", [2], 12, 20))}", data: .init(repeating: 0, count: 20),
               "invalid", mentioning: "data bytes 8..<12 belong to no tensor")
        refuse(header: "{\(f32("a", [1], 4, 8))}", data: .init(repeating: 0, count: 8), "invalid",
               mentioning: "data bytes 0..<4 belong to no tensor")
    }

    func testBytesAfterTheLastTensorAreRefused() {
        refuse(header: "{\(f32("a", [2], 0, 8))}", data: .init(repeating: 0, count: 12), "invalid",
               mentioning: "bytes 8..<12 belong to no tensor")
        refuse(header: "{}", data: [1], "invalid", mentioning: "holds 1 bytes but the tensors cover only 0")
    }

    func testOffsetsPastTheEndOfFileAreTruncated() {
        refuse(header: "{\(f32("a", [2], 0, 8))}", data: .init(repeating: 0, count: 4), "truncated",
               mentioning: "needs data bytes 0..<8 but the data section holds 4 bytes")
        refuse(header: "{\(f32("a", [1], 0, 4)),\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775806,9223372036854775807]}}",
               data: .init(repeating: 0, count: 4), "invalid", mentioning: "belong to no tensor")
    }

    func testEmptyTensorsMayShareAnOffset() throws {
        let st = try accept(header: "{\(f32("z", [0], 4, 4)),\(f32("y", [2, 0], 4, 4)),\(f32("a", [1], 0, 4))}",
                            data: [0, 0, 0x80, 0x3F])
        XCTAssertEqual(st.tensors.map(\.name), ["a", "y", "z"])
        XCTAssertEqual(st.tensors.map(\.offset), [8 + st.headerLength, 12 + st.headerLength, 12 + st.headerLength])
        XCTAssertEqual(try st.view("a").bytes.loadUnaligned(as: Float.self), 1.0)
    }

    func testByteFlipsInTheHeaderNeverTrapAndNeverYieldAnInconsistentLayout() throws {
        // Every header byte of a real file replaced by a few values: the parser either refuses with a
        // FormatError or returns tensors that still tile the data section exactly with honest sizes.
        let whole = SafetensorsFixtures.bytes("no_metadata.safetensors")
        let st = try SafetensorsFile(path: SafetensorsFixtures.path("no_metadata.safetensors"))
        let dataLength = whole.count - st.dataSectionOffset
        var accepted = 0, refused = 0
        for i in 8..<st.dataSectionOffset {
            for v: UInt8 in [0x00, 0x20, 0x22, 0x2C, 0x30, 0x39, 0x5B, 0x7B, 0x7D, 0xFF, whole[i] ^ 0x01] {
                var h = Array(whole[8..<st.dataSectionOffset])
                h[i - 8] = v
                do {
                    let parsed = try h.withUnsafeBytes {
                        try SafetensorsHeader.parse($0, dataLength: dataLength, path: "flip")
                    }
                    var end = 0
                    for e in parsed.entries {
                        XCTAssertEqual(e.begin, end)
                        XCTAssertEqual(checkedByteCount(shape: e.shape, dtype: e.dtype), e.end - e.begin)
                        end = e.end
                    }
                    XCTAssertEqual(end, dataLength)
                    accepted += 1
                } catch let e as FormatError {
                    if case .invalid(let p, _) = e { XCTAssertEqual(p, "flip") }
                    refused += 1
                }
            }
        }
        XCTAssertGreaterThan(refused, 0)
        XCTAssertGreaterThan(accepted, 0)   // e.g. a flipped byte inside a name is still a valid file
    }

    // MARK: the file itself

    func testMissingFileAndDirectoryAreIOErrors() {
        assertFormatError(try SafetensorsFile(path: dir.path + "/absent.safetensors"), "io",
                          path: dir.path + "/absent.safetensors", mentioning: "No such file")
        assertFormatError(try SafetensorsFile(path: dir.path), "io", path: dir.path, mentioning: "not a regular file")
    }
}
