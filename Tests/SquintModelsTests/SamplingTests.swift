import XCTest
@testable import SquintModels

/// The warpers as transformers defines them (TopKLogitsWarper, TopPLogitsWarper), on small cases
/// worked by hand.
final class SamplingTests: XCTestCase {
    func testTopPKeepsTheSmallestHeadReachingP() {
        // softmax of log([0.5, 0.3, 0.15, 0.05]): cumulative from the tail 0.05, 0.20, 0.50, 1.0.
        let logits = [0.5, 0.3, 0.15, 0.05].map { Float(log($0)) }
        func kept(_ p: Float) -> [Int] { Sampler(.init(doSample: true, topP: p)).candidates(logits).map(\.id) }
        XCTAssertEqual(kept(0.3), [0])            // tail sums <= 0.7 removed: 0.05, 0.20, 0.50
        XCTAssertEqual(kept(0.5), [0])            // 0.50 <= 0.5 removed too
        XCTAssertEqual(kept(0.6), [0, 1])
        XCTAssertEqual(kept(0.9), [0, 1, 2])
        XCTAssertEqual(kept(1.0), [0, 1, 2, 3])
        let c = Sampler(.init(doSample: true, topP: 0.6)).candidates(logits)
        XCTAssertEqual(c[0].p, 0.625, accuracy: 1e-6)   // renormalised 0.5 / 0.8
    }

    func testTopKKeepsTies() {
        let logits: [Float] = [1, 3, 2, 3, 0]
        XCTAssertEqual(Sampler(.init(doSample: true, topK: 1)).candidates(logits).map(\.id), [1, 3])
        XCTAssertEqual(Sampler(.init(doSample: true, topK: 3)).candidates(logits).map(\.id), [1, 3, 2])
    }

    func testGreedyIsArgmaxFirstOnTies() {
        var s = Sampler(.greedy)
        XCTAssertEqual(s.next([0, 5, 5, 1]), 1)
    }

    func testSeedReproducesAndDrawsFollowTheDistribution() {
        let logits = [0.6, 0.3, 0.1].map { Float(log($0)) }
        var a = Sampler(.init(doSample: true, seed: 7)), b = Sampler(.init(doSample: true, seed: 7))
        var counts = [0, 0, 0]
        for _ in 0..<20000 {
            let x = a.next(logits)
            XCTAssertEqual(x, b.next(logits))
            counts[x] += 1
        }
        XCTAssertEqual(Double(counts[0]) / 20000, 0.6, accuracy: 0.02)
        XCTAssertEqual(Double(counts[2]) / 20000, 0.1, accuracy: 0.02)
    }
}
