import Foundation
import XCTest
@testable import SquintFormats

/// A small seeded fuzz loop: valid GGUF files with bytes of their header overwritten (random values,
/// all-ones and zero runs, the places counts and lengths live) must each either open or be refused
/// with a FormatError; whatever opens must dequantise without trapping. A trap fails the whole run.
final class GGUFMutationTests: XCTestCase {
    struct Rng {   // xorshift64*, seeded: the same mutations on every run
        var s: UInt64
        mutating func next() -> UInt64 { s ^= s >> 12; s ^= s << 25; s ^= s >> 27; return s &* 2685821657736338717 }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    func testMutatedHeadersOpenOrAreRefusedNeverTrap() throws {
        let dir = TempDir()
        var rng = Rng(s: 0x5EED_6609)
        var opened = 0, refused = 0
        let p = "\(dir.path)/m.gguf"
        for name in ["metadata_v3.gguf", "writer_ref.gguf", "quants.gguf"] {
            let whole = GGUFFixtures.bytes(name)
            let headerEnd = try GGUFFile(path: GGUFFixtures.path(name)).dataOffset
            for _ in 0..<600 {
                var b = whole
                for _ in 0..<(1 + rng.below(3)) {
                    let at = rng.below(headerEnd)
                    let len = min(1 + rng.below(8), headerEnd - at)
                    let fill: UInt8? = [nil, 0xFF, 0x00, 0x7F][rng.below(4)]
                    for k in at..<(at + len) { b[k] = fill ?? UInt8(truncatingIfNeeded: rng.next()) }
                }
                // plain open/write: FileManager.createFile is needlessly slow for 1,800 small files
                let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                XCTAssertEqual(b.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }, b.count)
                close(fd)
                do {
                    let g = try GGUFFile(path: p)
                    for t in g.ggufTensors { _ = try GGUFDequant.dequantize(t, of: g) }
                    _ = g.tensors.map { try? g.view($0.name) }
                    opened += 1
                } catch is FormatError {
                    refused += 1
                }
            }
        }
        XCTAssertEqual(opened + refused, 1800)
        XCTAssertGreaterThan(refused, 900, "most header mutations must be caught")
    }
}
