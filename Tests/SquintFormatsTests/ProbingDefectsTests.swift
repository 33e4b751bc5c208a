import Foundation
import XCTest
import TestSupport
@testable import SquintFormats

/// Issue 17, items 2 and 3, at the format level: zip CRC-32s catch every flipped bit in tensor data,
/// and names from a file never break the one-line error messages.
final class ProbingDefectsTests: XCTestCase {
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("probing") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    // MARK: - Item 3: names from files are escaped

    func testPrintableEscapesControlCharactersOnly() {
        XCTAssertEqual(printable("transformer.h.0.attn.c_attn.weight"), "transformer.h.0.attn.c_attn.weight")
        XCTAssertEqual(printable("C:\\path\\é 名"), "C:\\path\\é 名")          // backslashes and non-ASCII text unchanged
        XCTAssertEqual(printable("a\r\nb\tc"), "a\\r\\nb\\tc")
        XCTAssertEqual(printable("\u{0}\u{1b}[2J\u{7f}"), "\\x00\\x1b[2J\\x7f")
        XCTAssertEqual(printable("x\u{85}y\u{2028}z\u{202e}"), "x\\u{0085}y\\u{2028}z\\u{202e}")
    }

    /// A tensor name holding CR and LF, in a safetensors header (JSON escapes decode to the raw bytes):
    /// the error naming it stays on one line.
    func testErrorsNamingAHostileTensorStayOnOneLine() throws {
        let header = #"{"ev\r\nil\u001b[2K":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
        bytes += Array(header.utf8) + [0, 0, 0, 0]
        let path = tmp + "/hostile.safetensors"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try SafetensorsFile(path: path)) { e in
            let text = "\(e)"
            XCTAssertFalse(text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, text)
            XCTAssert(text.contains("ev\\r\\nil\\x1b[2K"), text)
        }
        // Every case of FormatError goes through the same escaping.
        let name = "a\nb"
        for e: FormatError in [.io(path: name, message: name), .truncated(path: "p", what: name), .invalid(path: "p", what: name),
                               .unsupported(path: "p", what: name), .forbiddenGlobal(path: "p", global: name),
                               .missingTensor(path: "p", name: name), .exists(path: name)] {
            XCTAssertFalse(e.description.contains("\n"), e.description)
            XCTAssert(e.description.contains("a\\nb"), e.description)
        }
    }

    /// JSON output needs no extra step: JSONEncoder writes control characters as escapes.
    func testJSONEncoderEscapesControlCharacters() throws {
        struct Row: Codable, Equatable { var name: String }
        let row = Row(name: "a\r\nb\u{0}\u{1b}\u{7f}")
        let data = try JSONEncoder().encode(row)
        XCTAssertFalse(data.contains { $0 < 0x20 }, String(decoding: data, as: UTF8.self))
        XCTAssertEqual(try JSONDecoder().decode(Row.self, from: data), row)
    }

    // MARK: - Item 2: torch zip CRC-32s

    func testEverySingleBitFlipInTensorDataIsCaught() throws {
        let source = TorchFixtures.path("all_dtypes.pt")
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: source)))
        let c = try TorchCheckpoint(path: source)
        XCTAssertTrue(c.hasChecksums)
        XCTAssertNoThrow(try c.verifyChecksums())
        // Byte positions inside tensor data, spread over every tensor; one bit each (bit k % 8).
        var positions: [Int] = []
        for t in c.tensors where t.byteCount > 0 {
            for k in stride(from: 0, to: t.byteCount, by: max(1, t.byteCount / 12)) { positions.append(t.offset + k) }
        }
        XCTAssertGreaterThan(positions.count, 100)
        let path = tmp + "/flipped.pt"
        var caught = 0
        for (k, p) in positions.enumerated() {
            var b = original
            b[p] ^= UInt8(1 << (k % 8))
            try Data(b).write(to: URL(fileURLWithPath: path))
            let f = try TorchCheckpoint(path: path)         // opening reads no tensor data
            do { try f.verifyChecksums() } catch let e as FormatError {
                if case .invalid(_, let what) = e, what.contains("CRC-32") { caught += 1 }
            }
        }
        // CRC-32 detects every single-bit error (any burst up to 32 bits), so all must be caught.
        XCTAssertEqual(caught, positions.count)
    }

    func testLegacyFilesHaveNoChecksums() throws {
        let c = try TorchCheckpoint(path: TorchFixtures.path("legacy.pt"))
        XCTAssertFalse(c.hasChecksums)
    }
}
