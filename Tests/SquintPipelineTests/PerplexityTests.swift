import Foundation
import XCTest
@testable import SquintPipeline

/// The perplexity arithmetic and windowing of llama-perplexity (tools/perplexity/perplexity.cpp),
/// checked against a direct double-precision computation on small random logits; the comparison with
/// llama.cpp itself on a real model is in RealModelTests (skipped without the model cache).
final class PerplexityTests: XCTestCase {
    /// A deterministic "model": logits of position p are a function of (window, p) only.
    func fakeLogits(_ w: [Int32], vocab: Int, seed: UInt64) -> [Float] {
        var out = [Float](repeating: 0, count: w.count * vocab)
        for p in 0..<w.count {
            var s = seed &+ UInt64(p) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(bitPattern: Int64(w[p]))
            for v in 0..<vocab {
                s = s &* 6364136223846793005 &+ 1442695040888963407
                out[p * vocab + v] = Float(Int64(bitPattern: s >> 11) % 2000) / 100
            }
        }
        return out
    }

    func testScoresTheSecondHalfOfEachWindowAndMatchesADirectComputation() throws {
        let vocab = 50, ctx = 16
        let tokens: [Int32] = (0..<(5 * ctx + 7)).map { Int32(($0 * 7 + 3) % vocab) }
        let r = try Perplexity.run(tokens: tokens, options: .init(context: ctx), vocab: vocab) {
            (self.fakeLogits($0, vocab: vocab, seed: 1), 0)
        }
        XCTAssertEqual(r.windows, 5)                                   // the 7-token tail is dropped
        XCTAssertEqual(r.scoredTokens, 5 * (ctx - 1 - ctx / 2))          // 7 per window at ctx 16
        // Direct: every scored position's exact log-softmax in double.
        var nll: [Double] = []
        for i in 0..<5 {
            let w = Array(tokens[(i * ctx)..<((i + 1) * ctx)])
            let l = fakeLogits(w, vocab: vocab, seed: 1).map(Double.init)
            for p in (ctx / 2)..<(ctx - 1) {
                let row = l[(p * vocab)..<((p + 1) * vocab)]
                let lse = log(row.map { exp($0) }.reduce(0, +))
                nll.append(lse - row[row.startIndex + Int(w[p + 1])])
            }
        }
        let mean = nll.reduce(0, +) / Double(nll.count)
        let sd = (nll.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(nll.count) / Double(nll.count - 1)).squareRoot()
        // float32 logits through expf: relative error of each term ~1e-7, the mean's far smaller.
        XCTAssertEqual(r.meanNLL, mean, accuracy: 1e-6 * mean)
        XCTAssertEqual(r.perplexity, exp(mean), accuracy: 1e-6 * exp(mean))
        XCTAssertEqual(r.uncertainty, exp(mean) * sd, accuracy: 1e-4 * exp(mean) * sd)
        XCTAssertEqual(r.perWindow.count, 5)
        XCTAssertEqual(r.perWindow.last!, r.perplexity, accuracy: 1e-12)
        // Each window's own mean NLL, from the hand-computed NLLs (the same number of scored tokens per window).
        let per = nll.count / 5
        XCTAssertEqual(r.windowNLL.count, 5)
        for k in 0..<5 {
            let own = nll[(k * per)..<((k + 1) * per)].reduce(0, +) / Double(per)
            XCTAssertEqual(r.windowNLL[k], own, accuracy: 1e-6 * own)
            let upTo = nll[..<((k + 1) * per)].reduce(0, +) / Double((k + 1) * per)
            XCTAssertEqual(r.perWindow[k], exp(upTo), accuracy: 1e-6 * exp(upTo), "perWindow is the running estimate")
        }
    }

    func testBOSReplacesTheFirstTokenOfEveryWindowOnly() throws {
        let tokens: [Int32] = Array(1...40)
        let ws = try Perplexity.windows(tokens, .init(context: 8, bos: 99))
        XCTAssertEqual(ws.count, 5)
        XCTAssertEqual(ws.map { $0[0] }, [99, 99, 99, 99, 99])
        XCTAssertEqual(ws[1], [99, 10, 11, 12, 13, 14, 15, 16])
        XCTAssertEqual(try Perplexity.windows(tokens, .init(context: 8))[1].first, 9)
    }

    func testRefusesTextsShorterThanTwoWindowsAndBadLogits() {
        XCTAssertThrowsError(try Perplexity.windows(Array(0..<15), .init(context: 8))) {
            XCTAssertEqual($0 as? PerplexityError, .textTooShort(tokens: 15, context: 8))
        }
        XCTAssertThrowsError(try Perplexity.run(tokens: Array(0..<16), options: .init(context: 8), vocab: 20) { w in
            ([Float](repeating: .nan, count: w.count * 20), 0)
        }) { XCTAssertEqual($0 as? PerplexityError, .nonFiniteLogits(position: 4)) }
    }
}
