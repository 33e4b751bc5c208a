import TestSupport
import XCTest

/// The SHA-256 in TestSupport is what every image test compares against Pillow's hashes, so it is
/// checked against the FIPS 180-4 / NIST example vectors first.
final class ImageSHA256SupportTests: XCTestCase {
    func testNISTVectors() {
        XCTAssertEqual(sha256Hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(sha256Hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(sha256Hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(sha256Hex([UInt8](repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testBlockBoundaryLengthsAgreeBetweenSequenceAndRawBuffer() {
        // 55, 56, 63, 64 and 65 bytes straddle the padding rules.
        for n in [55, 56, 63, 64, 65, 119, 120] {
            let b = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let viaRaw = b.withUnsafeBytes { sha256Hex($0) }
            XCTAssertEqual(sha256Hex(b), viaRaw, "length \(n)")
        }
        // 56 x 'a' is a known vector too.
        XCTAssertEqual(sha256Hex([UInt8](repeating: 0x61, count: 56)),
                       "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
    }
}
