import Foundation
import XCTest
import SquintTensor
@testable import SquintTokenizer

/// The O(n log n) heap merge used for long pieces against the transcription of tiktoken's loop.
final class BPEMergeTests: XCTestCase {
    let ranks = TokenizerFixtures.tokenizer.ranks

    func merges(_ bytes: [UInt8]) -> (linear: [Int], heap: [Int]) {
        var linear: [Int] = [], heap: [Int] = [], scratch: [Int] = []
        bytes.withUnsafeBufferPointer { b in
            ranks.encodePieceLinear(b.baseAddress!, b.count, into: &linear, scratch: &scratch)
            ranks.encodePieceHeap(b.baseAddress!, b.count, into: &heap)
        }
        return (linear, heap)
    }

    func testHeapMergeEqualsTheLinearReferenceOnOddSizesAndRandomPieces() {
        var rng = SplitMix64(seed: 20240611)
        let words = ["the", "quick", "brown", "fox", "ing", "tion", "aa", "a", "b", "中", "文", "语", "言", "é", "ß", "qu", "zz"]
        for size in [2, 3, 31, 33, 127, 129, 257, 1000] {
            for _ in 0 ..< 8 {
                var s = ""
                while s.utf8.count < size { s += words.randomElement(using: &rng)! }
                let bytes = Array(s.utf8.prefix(size))  // may cut a character: BPE is over bytes
                let m = merges(bytes)
                XCTAssertEqual(m.heap, m.linear, s)
            }
        }
        for run in ["a", "ab", "aab", "\u{4E2D}"] {
            let m = merges(Array(String(repeating: run, count: 300).utf8))
            XCTAssertEqual(m.heap, m.linear, run)
        }
    }

    func testVeryLongLetterRunEncodesAndRoundTrips() throws {
        // One 100 KB pre-token: quadratic merging would take minutes; this must stay fast.
        let text = String(repeating: "abcdefghij", count: 10_000)
        let tok = TokenizerFixtures.tokenizer
        let ids = try tok.encode(text)
        XCTAssertEqual(try tok.decode(ids), text)
    }
}

