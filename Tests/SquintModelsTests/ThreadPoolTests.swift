import Foundation
import XCTest
import CSquintKernels
@testable import SquintTensor

/// `parallelFor` (Sources/CSquintKernels/pool.c): every index runs exactly once, back-to-back runs
/// never mix (a worker late for one run must not take an index of the next), and a loop started
/// inside an iteration or from another thread still runs every index (the pool's fallback).
final class ThreadPoolTests: XCTestCase {
    private var savedThreads = 0
    override func setUp() { savedThreads = Threads.count; Threads.count = 2 }
    override func tearDown() { Threads.count = savedThreads }

    /// Runs `n` iterations, each adding its index + 1 to its own counter, and returns the counters.
    private func counts(_ n: Int) -> [Int] {
        let c = UnsafeMutableBufferPointer<Int>.allocate(capacity: n)
        defer { c.deallocate() }
        c.initialize(repeating: 0)
        parallelFor(n) { i in c[i] += i + 1 }
        return Array(c)
    }

    func testEveryIndexRunsExactlyOnce() {
        for n in [0, 1, 2, 3, 7, 64, 1000] {
            XCTAssertEqual(counts(n), (0..<n).map { $0 + 1 }, "n = \(n)")
        }
    }

    /// Short runs in a row (each iteration ~2 us of work, as a small decode product; at least 5,000
    /// runs, more while the workers have taken fewer than 200 iterations, on a busy machine), each
    /// writing a run-specific value after its work: a worker that claimed an index with a previous
    /// run's parameters would write a stale value, and a run returning before its workers finished
    /// would leave a value unwritten.
    func testBackToBackRunsNeverMix() {
        let n = 4
        let out = UnsafeMutableBufferPointer<Int>.allocate(capacity: n)
        let ranOnWorker = UnsafeMutableBufferPointer<Int>.allocate(capacity: n)
        defer { out.deallocate(); ranOnWorker.deallocate() }
        ranOnWorker.initialize(repeating: 0)
        let caller = pthread_self()
        var bad = 0
        var run = 0
        while run < 5_000 || (run < 100_000 && ranOnWorker.reduce(0, +) < 200) {
            defer { run += 1 }
            out.initialize(repeating: -1)
            parallelFor(n) { i in
                out[i] = Self.busyWork(2000, seed: run + i) == 42 ? -2 : run * n + i
                if pthread_equal(pthread_self(), caller) == 0 { ranOnWorker[i] += 1 }
            }
            for i in 0..<n where out[i] != run * n + i { bad += 1 }
        }
        XCTAssertEqual(bad, 0)
        XCTAssertGreaterThan(ranOnWorker.reduce(0, +), 0, "workers took part (else this checks nothing)")
    }

    /// A data-dependent loop the optimiser cannot remove (~1 ns per step).
    @inline(never) static func busyWork(_ steps: Int, seed: Int) -> Int {
        var h = UInt64(truncatingIfNeeded: seed) | 1
        for _ in 0..<steps { h = h &* 6364136223846793005 &+ 1442695040888963407 }
        return Int(truncatingIfNeeded: h >> 60)
    }

    func testALoopInsideAnIterationRunsEveryIndex() {
        let outer = 3, inner = 5
        let c = UnsafeMutableBufferPointer<Int>.allocate(capacity: outer * inner)
        defer { c.deallocate() }
        c.initialize(repeating: 0)
        parallelFor(outer) { o in parallelFor(inner) { i in c[o * inner + i] += 1 } }
        XCTAssertEqual(Array(c), [Int](repeating: 1, count: outer * inner))
    }

    func testLoopsFromSeveralThreadsAtOnce() {
        let callers = 4, runs = 300, n = 6
        let c = UnsafeMutableBufferPointer<Int>.allocate(capacity: callers * n)
        defer { c.deallocate() }
        c.initialize(repeating: 0)
        DispatchQueue.concurrentPerform(iterations: callers) { k in
            for _ in 0..<runs { parallelFor(n) { i in c[k * n + i] += 1 } }
        }
        XCTAssertEqual(Array(c), [Int](repeating: runs, count: callers * n))
    }
}
