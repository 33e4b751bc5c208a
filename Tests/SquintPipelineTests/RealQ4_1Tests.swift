import Foundation
import XCTest
import SquintFormats
import SquintQuant
@testable import SquintPipeline

/// `--gguf-type q4_1` on real weights, with llama.cpp's own file as the ground truth. The shipped
/// SmolLM2-135M-Instruct is Q4_1 (made by llama-quantize); its F16 copy (every value d·q + m rounded
/// to float16, what `llama-quantize --allow-requantize ... F16` writes and the quality study starts
/// from) quantized by Squint's RTN on the Q4_1 grid gives back the shipped blocks byte for byte: same
/// float16 d and m, same codes. Skipped without the model cache (`bash scripts/models.sh`).
final class RealQ4_1Tests: XCTestCase {
    func testRTNQ4_1OfSmolLM2sF16CopyReproducesTheShippedQ4_1Blocks() throws {
        let cache = ProcessInfo.processInfo.environment["SQUINT_CACHE"] ?? (NSHomeDirectory() + "/.cache/squint")
        let path = cache + "/models/smollm2-135m-instruct-q4_1.gguf"
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("the real model cache is absent (bash scripts/models.sh fetches it)")
        }
        let f = try GGUFFile(path: path)
        var o = DecoderConvert.Options(); o.target = .q4_1; o.method = .rtn
        let config = try o.quantizer
        let names = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"].map { "blk.0.\($0).weight" }
            + ["blk.29.ffn_down.weight"]
        for name in names {
            let t = try XCTUnwrap(f.ggufTensor(named: name))
            XCTAssertEqual(t.type, .q4_1, name)
            let rows = t.shape[0], cols = t.shape[1]
            // The F16 original: dequantised (bit-equal to gguf-py), then rounded to float16.
            let f16 = try GGUFDequant.dequantize(t, of: f).map { Float(Float16($0)) }
            let q = try RTN.quantize(weight: f16, rows: rows, columns: cols, groupSize: 32, quantizer: config)
            let ours = try DecoderConvert.q4_1Bytes(q)
            XCTAssertEqual(ours, Array(try f.bytes(of: t)), name)
        }
    }
}
