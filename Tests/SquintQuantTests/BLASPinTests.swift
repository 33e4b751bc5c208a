import XCTest
import CSquintKernels
import COpenBLAS
import SquintTensor

/// Squint pins OpenBLAS to its Haswell (AVX2/FMA) kernels on every CPU that has AVX2 and FMA, so
/// that float32 products, and everything downstream of them (ViT activations, Hessians, GPTQ codes),
/// are the same bits on every machine of our kind (Sources/CSquintKernels/blas_pin.c).
final class BLASPinTests: XCTestCase {
    func testOpenBLASRunsThePinnedKernelSet() throws {
        let env = ProcessInfo.processInfo.environment["SQUINT_BLAS_CORE"]
        guard sq_has_avx2_fma() == 1 else { throw XCTSkip("no AVX2/FMA: OpenBLAS keeps its own choice") }
        if let env, env == "native" {
            XCTAssertFalse(BLASKernels.pinned)
        } else {
            XCTAssertTrue(BLASKernels.pinned)
            XCTAssertEqual(BLASKernels.coreName.lowercased(), (env ?? "Haswell").lowercased())
        }
    }

    /// Inference commands (run, chat, perplexity) switch to OpenBLAS's AVX-512 set on CPUs that have
    /// AVX-512 (read here from /proc/cpuinfo, not through Squint's own check), and back: the switch
    /// takes effect between calls, and both sets give products within float32's bound of each other.
    func testInferenceSwitchesToTheAVX512KernelsWhereTheCPUHasThemAndBack() throws {
        guard ProcessInfo.processInfo.environment["SQUINT_BLAS_CORE"] == nil else { throw XCTSkip("$SQUINT_BLAS_CORE decides") }
        guard sq_has_avx2_fma() == 1 else { throw XCTSkip("no AVX2/FMA: OpenBLAS keeps its own choice") }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
        let avx512 = ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"].allSatisfy(flags.contains)
        defer { BLASKernels.useReproducible() }
        let (m, n, k) = (64, 96, 2000)
        var s: UInt32 = 7
        func next() -> Float { s = s &* 1664525 &+ 1013904223; return Float(Int32(bitPattern: s >> 8) - (1 << 23)) / Float(1 << 23) }
        let a = (0..<(m * k)).map { _ in next() }, b = (0..<(k * n)).map { _ in next() }
        func product() -> [Float] {
            var c = [Float](repeating: 0, count: m * n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
            return c
        }
        XCTAssertEqual(BLASKernels.coreName.lowercased(), "haswell")
        let pinned = product()
        BLASKernels.useFastest()
        XCTAssertEqual(BLASKernels.coreName.lowercased(), avx512 ? "skylakex" : "haswell")
        let fast = product()
        // Any summation order of k products is within k * 2^-24 * sum|a b| of the exact sum, so two
        // orders are within twice that of each other.
        for i in 0..<m { for j in 0..<n {
            var bound = 0.0
            for p in 0..<k { bound += Double(abs(a[i * k + p] * b[p * n + j])) }
            XCTAssertEqual(Double(fast[i * n + j]), Double(pinned[i * n + j]), accuracy: 2 * Double(k) * 0x1p-24 * bound)
        } }
        BLASKernels.useReproducible()
        XCTAssertEqual(BLASKernels.coreName.lowercased(), "haswell")
        XCTAssertEqual(product().map(\.bitPattern), pinned.map(\.bitPattern), "back on the pinned set, the pinned bits")
    }

    /// The pin is what makes a product's bits machine-independent: the same call gives the same
    /// bits again (OpenBLAS's kernels are deterministic for a fixed shape and thread count).
    func testTheSameProductGivesTheSameBitsAgain() {
        let m = 67, n = 129, k = 1031
        var a = [Float](repeating: 0, count: m * k), b = [Float](repeating: 0, count: k * n)
        var s: UInt32 = 12345
        func next() -> Float { s = s &* 1664525 &+ 1013904223; return Float(Int32(bitPattern: s >> 8) - (1 << 23)) / Float(1 << 23) }
        for i in a.indices { a[i] = next() }
        for i in b.indices { b[i] = next() }
        func product() -> [UInt32] {
            var c = [Float](repeating: 0, count: m * n)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
            return c.map(\.bitPattern)
        }
        XCTAssertEqual(product(), product())
    }
}
