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
