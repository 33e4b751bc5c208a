import Foundation
import XCTest
@testable import SquintFormats
import TestSupport

/// The reader of llama-perplexity's `--kl-divergence-base` file (Formats/LLAMA_KLD.md) on a file
/// llama.cpp wrote (fixtures/llamacpp/kld: SmolLM2-135M, -c 8, 2 chunks), against what llama.cpp's
/// own tools printed for it, and on hostile variants of it.
final class LlamaKLDTests: XCTestCase {
    static let fixture = Fixtures.path("llamacpp/kld/smollm2-c8-2.kld")
    /// `llama-tokenize -m smollm2-135m-instruct-q4_1.gguf -f text.txt --ids` (fixtures/llamacpp/kld/README.md).
    static let llamaTokenize: [Int32] = [504, 33059, 40061, 4150, 281, 650, 1993, 897, 9053, 30, 1985, 9071, 16573, 384, 5332, 260,
                                         5703, 28, 260, 7685, 7761, 284, 260, 2779, 282, 260, 3426, 43, 335, 43471, 16573, 384, 4150, 805,
                                         582, 1761, 28, 338, 260, 17559, 761, 14692, 1150, 1793, 5738, 30, 198]
    /// llama-perplexity's "Final estimate: PPL = 319.3224" for the run that wrote the file.
    static let llamaPerplexity = 319.3224

    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("llamakld") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func testHeaderAndTokensAreLlamaCpps() throws {
        let f = try LlamaKLDFile(path: Self.fixture)
        XCTAssertEqual(f.context, 8)
        XCTAssertEqual(f.vocab, 49152)
        XCTAssertEqual(f.chunks, 2)
        XCTAssertEqual(f.rowsPerChunk, 3)
        XCTAssertEqual(f.valuesPerRow, 49156)
        XCTAssertEqual(try f.tokens(chunk: 0) + f.tokens(chunk: 1), Array(Self.llamaTokenize.prefix(16)))
    }

    /// The stored log-probabilities of the targets give llama-perplexity's printed perplexity: each
    /// is off by at most scale/2 <= 16/131070 nats (16-bit rounding), the print by 5e-5.
    func testTargetLogProbabilitiesGiveLlamaPerplexitysFigure() throws {
        let f = try LlamaKLDFile(path: Self.fixture)
        var nll = 0.0, n = 0
        for c in 0..<f.chunks {
            let t = try f.tokens(chunk: c)
            for r in 0..<f.rowsPerChunk {
                let lp = try f.logProbabilities(chunk: c, row: r)
                XCTAssertEqual(lp.count, f.vocab)
                nll -= Double(lp[Int(t[f.context / 2 + r + 1])]); n += 1
                // Every row: the top entry is stored as q = 65535, so its log-probability is <= 0 and
                // the distribution sums to 1 up to the rounding and the entries clipped at the floor
                // (each < e^-16 of the top's probability).
                let top = lp.max()!
                XCTAssertLessThanOrEqual(top, 1e-4)
                let mass = lp.reduce(0.0) { $0 + exp(Double($1)) }
                XCTAssertEqual(mass, 1, accuracy: 2e-4 + Double(f.vocab) * exp(-16))
            }
        }
        let ppl = exp(nll / Double(n))
        XCTAssertEqual(ppl, Self.llamaPerplexity, accuracy: Self.llamaPerplexity * 1.3e-4 + 5e-5)
    }

    // MARK: hostile files

    func bytes() throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: Self.fixture))) }

    func refuse(_ b: [UInt8], _ expect: String, line: UInt = #line) throws {
        let p = tmp + "/f\(line).kld"
        try Data(b).write(to: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try LlamaKLDFile(path: p), line: line) { e in
            XCTAssertTrue("\(e)".contains(expect), "\(e)", line: line)
            XCTAssertTrue("\(e)".contains(p), "the error names the file: \(e)", line: line)
        }
    }

    func put32(_ b: inout [UInt8], _ off: Int, _ v: UInt32) { for k in 0..<4 { b[off + k] = UInt8((v >> (8 * UInt32(k))) & 0xFF) } }

    func testHostileFilesAreRefusedByName() throws {
        let good = try bytes()
        try refuse([], "no '_logits_' magic")
        try refuse(Array("_logitz_".utf8) + good[8...], "no '_logits_' magic")
        try refuse(Array(good[0..<14]), "truncated")
        var b = good; put32(&b, 8, 0); try refuse(b, "n_ctx 0")
        b = good; put32(&b, 8, 3); try refuse(b, "n_ctx 3")
        b = good; put32(&b, 8, 0xFFFF_FFFF); try refuse(b, "n_ctx 4294967295")
        b = good; put32(&b, 12, 0); try refuse(b, "n_vocab 0")
        b = good; put32(&b, 12, 0x8000_0000); try refuse(b, "n_vocab -2147483648")
        b = good; put32(&b, 16, 0); try refuse(b, "n_chunk 0")
        b = good; put32(&b, 16, 3); try refuse(b, "need")          // claims a third chunk the file lacks
        b = good; put32(&b, 16, 1); try refuse(b, "bytes after the last chunk")
        try refuse(Array(good.dropLast()), "truncated")
        try refuse(good + [0], "bytes after the last chunk")
        b = good; put32(&b, 20 + 4 * 5, 49152); try refuse(b, "token 5 (chunk 1) is id 49152")
        b = good; put32(&b, 20 + 4 * 9, 0xFFFF_FFFF); try refuse(b, "token 9 (chunk 2) is id -1")
    }

    func testRowsWithImpossibleScalesAreRefusedWhenRead() throws {
        let rows = 20 + 4 * 16
        for (field, value, expect) in [(0, Float.nan, "scale nan"), (0, -1, "scale -1.0"), (4, Float.infinity, "minimum inf"), (4, 0.5, "minimum 0.5")] {
            var b = try bytes()
            let row = rows + 2 * 49156 * 4        // chunk 2, row 1
            put32(&b, row + field, value.bitPattern)
            let p = tmp + "/row.kld"
            try? FileManager.default.removeItem(atPath: p)
            try Data(b).write(to: URL(fileURLWithPath: p))
            let f = try LlamaKLDFile(path: p)
            XCTAssertNoThrow(try f.logProbabilities(chunk: 1, row: 0))
            XCTAssertThrowsError(try f.logProbabilities(chunk: 1, row: 1)) { e in XCTAssertTrue("\(e)".contains(expect), "\(e)") }
        }
        let f = try LlamaKLDFile(path: Self.fixture)
        XCTAssertThrowsError(try f.logProbabilities(chunk: 2, row: 0))
        XCTAssertThrowsError(try f.logProbabilities(chunk: 0, row: 3))
        XCTAssertThrowsError(try f.tokens(chunk: -1))
    }
}
