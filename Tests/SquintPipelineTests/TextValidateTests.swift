import Foundation
import XCTest
import SquintFormats
import SquintModels
import SquintTensor
@testable import SquintPipeline
import TestSupport

/// `squint validate ORIGINAL QUANT --text FILE` on real GGUF files written from the tiny random Qwen2
/// of transformers (fixtures/decoders/qwen2-tiny): the original with F32 tensors, the "quantized" copy
/// with its block linears in ggml Q4_0 (the reference quantiser). Every figure is checked against an
/// independent computation from whole-window logits (no row selection, one cache per window) with a
/// plain double-precision log-softmax.
final class TextValidateTests: XCTestCase {
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("textvalidate") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    let text = "the theme in the thin thing then the end; " + String(repeating: "this is the text that the tiny model reads. ", count: 8)

    func models() throws -> (TextModel, TextModel) {
        try TextModelTests.writeTinyQwen2GGUF(to: tmp + "/f32.gguf")
        try TextModelTests.writeTinyQwen2GGUF(to: tmp + "/q4_0.gguf", blockType: .q4_0)
        return (try TextModel.open(tmp + "/f32.gguf"), try TextModel.open(tmp + "/q4_0.gguf"))
    }

    static func logSoftmax(_ r: ArraySlice<Float>) -> [Double] {
        let x = r.map(Double.init), m = x.max()!
        let lse = m + log(x.map { exp($0 - m) }.reduce(0, +))
        return x.map { $0 - lse }
    }

    func testFiguresAreThoseOfTheWholeWindowLogits() throws {
        let (a, b) = try models()
        let o = TextValidator.Options(context: 32)
        let samples = try TextValidator.samples(model: a, text: text, options: o)
        let ids = a.tokenizer.encode(text, addSpecial: true, parseSpecial: false).map(Int32.init)
        XCTAssertEqual(samples.count, ids.count / 32)
        let r = try TextValidator.run(original: a, quantized: b, originalName: "f32", quantizedName: "q4_0", samples: samples, options: o)
        XCTAssertEqual(r.mode, "text")
        XCTAssertEqual(r.positions, samples.count * 15)      // positions 16 ..< 31 of each window of 32
        // Independent: whole windows, every row, double log-softmax.
        let V = a.model.dims.vocab
        var kls: [Double] = [], top1 = 0, nllA = 0.0, nllB = 0.0
        var err = [Double](repeating: 0, count: a.model.dims.layers + 1), ref = err
        for i in 0..<samples.count {
            let w = Array(ids[(i * 32)..<((i + 1) * 32)])
            XCTAssertEqual(samples[i].ids, w)
            let pa = try a.model.prefill(tokens: w, cache: a.model.makeCache(), keepHiddenStates: true)
            let pb = try b.model.prefill(tokens: w, cache: b.model.makeCache(), keepHiddenStates: true)
            for p in 16..<31 {
                let ra = pa.logits.data[(p * V)..<((p + 1) * V)], rb = pb.logits.data[(p * V)..<((p + 1) * V)]
                let la = Self.logSoftmax(ra), lb = Self.logSoftmax(rb)
                kls.append(zip(la, lb).reduce(0) { $0 + exp($1.0) * ($1.0 - $1.1) })
                if ra.firstIndex(of: ra.max()!) == rb.firstIndex(of: rb.max()!) { top1 += 1 }
                nllA -= la[Int(w[p + 1])]; nllB -= lb[Int(w[p + 1])]
            }
            for l in err.indices {
                for (x, y) in zip(pa.hiddenStates[l].data, pb.hiddenStates[l].data) {
                    err[l] += Double(y - x) * Double(y - x); ref[l] += Double(x) * Double(x)
                }
            }
        }
        let n = Double(kls.count)
        let klMean = kls.reduce(0, +) / n
        XCTAssertGreaterThan(klMean, 1e-4, "Q4_0 should move the distribution")
        // Row-selected vs whole-window products differ in float32 summation order only (~1e-6 relative
        // on the logits), which moves a KL of this size by far less than 1 %.
        XCTAssertEqual(r.klMean, klMean, accuracy: 0.01 * klMean)
        XCTAssertEqual(r.klMax, kls.max()!, accuracy: 0.01 * kls.max()!)
        XCTAssertEqual(r.top1Agreement, Double(top1) / n, accuracy: 1.5 / n)   // at most one near-tie may flip
        XCTAssertEqual(r.pplBF16, exp(nllA / n), accuracy: 1e-4 * exp(nllA / n))
        XCTAssertEqual(r.pplInt4, exp(nllB / n), accuracy: 1e-4 * exp(nllB / n))
        XCTAssertEqual(r.perBlock.count, a.model.dims.layers + 1)
        for l in err.indices { XCTAssertEqual(r.perBlock[l].relativeError, (err[l] / ref[l]).squareRoot(), accuracy: 1e-3 * (err[l] / ref[l]).squareRoot() + 1e-9) }
        XCTAssertEqual(r.perBlock[0].relativeError, 0, "the embeddings are F32 in both files")
        // The original's perplexity is `squint perplexity`'s (the windows and BOS rule are shared).
        let ppl = try a.perplexity(text: text, context: 32)
        XCTAssertEqual(r.pplBF16, ppl.perplexity, accuracy: 1e-4 * ppl.perplexity)
        XCTAssertTrue(ValidateText.table(r).contains("KL(original || quantized)"))
        XCTAssertTrue(ValidateText.html(r).contains("Drift: original vs quantized"))
    }

    func testAModelAgainstItselfHasNoDrift() throws {
        let (a, _) = try models()
        let o = TextValidator.Options(context: 32, maxKL: 0, minTop1: 1)
        let r = try TextValidator.run(original: a, quantized: a, originalName: "a", quantizedName: "a",
                                      samples: try TextValidator.samples(model: a, text: text, options: o), options: o)
        XCTAssertEqual(r.klMax, 0)
        XCTAssertEqual(r.top1Agreement, 1)
        XCTAssertEqual(r.pplRatio, 1)
        XCTAssertTrue(r.perBlock.allSatisfy { $0.relativeError == 0 })
        XCTAssertTrue(r.gate.passed)
    }

    func testSavedBaseGivesTheSameReport() throws {
        let (a, b) = try models()
        let o = TextValidator.Options(context: 32, chunks: 2)
        let samples = try TextValidator.samples(model: a, text: text, options: o)
        XCTAssertEqual(samples.count, 2)
        let id = try TextValidator.baseIdentity(original: a, textPath: try writeText(), samples: samples)
        let save = try ValidationBase(saving: tmp + "/a.base", identity: id, overwrite: false)
        let fresh = try TextValidator.run(original: a, quantized: b, originalName: "a", quantizedName: "b", samples: samples, options: o, base: save)
        try save.commit()
        let load = try ValidationBase(reading: tmp + "/a.base", identity: id, greedyTokens: 0)
        let reused = try TextValidator.run(original: a, quantized: b, originalName: "a", quantizedName: "b", samples: samples, options: o, base: load)
        // Logits are stored as float32: identical statistics. Hidden states as float16 (relative rounding 2^-11).
        XCTAssertEqual(reused.klMean, fresh.klMean)
        XCTAssertEqual(reused.top1Agreement, fresh.top1Agreement)
        XCTAssertEqual(reused.pplRatio, fresh.pplRatio)
        for (x, y) in zip(reused.perBlock, fresh.perBlock) { XCTAssertEqual(x.relativeError, y.relativeError, accuracy: 2e-3 * y.relativeError + 1e-3) }
        // Another text (other windows) is refused.
        let other = try TextValidator.samples(model: a, text: text.uppercased(), options: o)
        let otherID = try TextValidator.baseIdentity(original: a, textPath: try writeText(text.uppercased()), samples: other)
        XCTAssertThrowsError(try ValidationBase(reading: tmp + "/a.base", identity: otherID, greedyTokens: 0))
    }

    func writeText(_ s: String? = nil) throws -> String {
        let p = tmp + "/text-\(UUID().uuidString).txt"
        try Data((s ?? text).utf8).write(to: URL(fileURLWithPath: p))
        return p
    }

    func testModelsWithDifferentTokenizersAreRefused() throws {
        let (a, _) = try models()
        var tokens = TinyDecoderGGUF.vocabulary(vocab: a.model.dims.vocab).tokens
        tokens.swapAt(100, 101)
        try TextModelTests.writeTinyQwen2GGUF(to: tmp + "/other.gguf", vocabulary: tokens)
        let c = try TextModel.open(tmp + "/other.gguf")
        XCTAssertThrowsError(try TextValidator.checkComparable(a, c, text: text)) { e in
            XCTAssertTrue("\(e)".contains("different tokenizers: token 100"), "\(e)")
        }
        let o = TextValidator.Options(context: 32)
        XCTAssertThrowsError(try TextValidator.run(original: a, quantized: c, originalName: "a", quantizedName: "c",
                                                   samples: try TextValidator.samples(model: a, text: text, options: o), options: o))
    }
}
