import Foundation

/// A dense row-major float32 tensor: the currency of model outputs and test intermediates.
/// Hot loops work on raw pointers into reused `FloatBuffer`s instead; this type is for results.
public struct FloatTensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "FloatTensor: \(data.count) values for shape \(shape)")
        self.shape = shape; self.data = data
    }

    public init(shape: [Int], copying p: UnsafePointer<Float>) {
        let n = shape.reduce(1, *)
        self.shape = shape
        self.data = Array(UnsafeBufferPointer(start: p, count: n))
    }

    public var count: Int { data.count }

    /// Row `i` of the tensor seen as [shape[0], rest].
    public func row(_ i: Int) -> ArraySlice<Float> {
        let w = count / shape[0]
        return data[(i * w)..<((i + 1) * w)]
    }
}

/// A growable, 64-byte aligned float scratch buffer that is reused across calls. Fresh memory costs
/// a page fault per 4 KiB on first touch, which is a measurable share of a small forward step, so
/// models keep one of these per intermediate and only grow it.
public final class FloatBuffer {
    public private(set) var pointer: UnsafeMutablePointer<Float>
    public private(set) var capacity: Int

    public init(capacity: Int = 0) {
        self.capacity = max(capacity, 16)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: self.capacity * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: self.capacity)
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    /// A pointer to at least `count` floats; contents are kept only when no growth was needed.
    @discardableResult
    public func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            UnsafeMutableRawPointer(pointer).deallocate()
            capacity = max(count, capacity + capacity / 2)
            pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64)
                .bindMemory(to: Float.self, capacity: capacity)
        }
        return pointer
    }
}

/// Runs `body(chunkStart, chunkEnd)` over [0, n) in `ways` contiguous chunks on Squint's thread pool
/// (`parallelFor`) when the work is large enough to amortise the hand-off (`minPerChunk` items per
/// chunk); otherwise inline. Chunk boundaries are multiples of `align`.
public func parallelChunks(_ n: Int, ways: Int = Threads.count, minPerChunk: Int = 1 << 14, align: Int = 1,
                           _ body: (Int, Int) -> Void) {
    let w = min(ways, max(1, n / max(minPerChunk, 1)))
    if w <= 1 { body(0, n); return }
    var per = (n + w - 1) / w
    per = (per + align - 1) / align * align
    parallelFor(w) { i in
        let a = min(i * per, n), b = min(a + per, n)
        if a < b { body(a, b) }
    }
}
