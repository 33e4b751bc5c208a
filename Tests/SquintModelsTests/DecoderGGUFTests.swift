import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import TestSupport

/// The GGUF side of the decoders without a GGUF file: llama.cpp's tensor names and metadata keys,
/// and its q/k row order for `llama`, checked against transformers' own GGUF loader.
final class DecoderGGUFTests: XCTestCase {
    func testUnpermutingLlamaQKRowsMatchesTransformersGGUFLoader() throws {
        // fixtures: transformers' LlamaTensorProcessor applied to row numbers (8 q heads, 2 kv heads, d 16).
        let ref = try FixtureSafetensors(path: fixturePath("decoders/llama-tiny/reference.safetensors"))
        for (name, rows, heads) in [("attn_q", 128, 8), ("attn_k", 32, 2)] {
            let expected = try ref.ints("gguf_rows.\(name)").values.map(Float.init)
            let rowNumbers = (0..<rows).map(Float.init)
            XCTAssertEqual(DecoderLM.unpermuteGGUFRows(rowNumbers, rows: rows, heads: heads), expected, name)
        }
        // Rows move whole: a [4, 3] matrix of one head (d = 4): GGUF rows 0 1 2 3 are checkpoint rows 0 2 1 3.
        let m: [Float] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        XCTAssertEqual(DecoderLM.unpermuteGGUFRows(m, rows: 4, heads: 1), [0, 0, 0, 2, 2, 2, 1, 1, 1, 3, 3, 3])
    }

    /// The fixture's checkpoint renamed to GGUF names (tables zip: same order, same roles), with
    /// llama.cpp's q/k row order for llama taken from transformers' loader (never from our code).
    func ggufTensors(_ name: String) throws -> (shapes: [(name: String, shape: [Int])], values: [String: [Float]], dims: DecoderDims, ref: FixtureSafetensors) {
        let folder = fixturePath("decoders/\(name)-tiny")
        let ref = try FixtureSafetensors(path: folder + "/reference.safetensors")
        let hf = try DecoderLM.load(folder: folder)
        let st = try SafetensorsFile(path: folder + "/model.safetensors")
        var shapes: [(name: String, shape: [Int])] = [], values: [String: [Float]] = [:]
        let hfTable = hf.dims.tensorTable(.huggingFace), gTable = hf.dims.tensorTable(.gguf)
        for (h, g) in zip(hfTable, gTable) {
            XCTAssertEqual(h.role, g.role); XCTAssertEqual(h.shape, g.shape)
            var v = Kernels.floats(try st.view(h.name))
            if hf.architecture.ggufPermutesQK, case .weight(let m) = h.role, m == .q || m == .k {
                let rows = try ref.ints("gguf_rows.attn_\(m.rawValue)").values, cols = h.shape[1]
                var p = v
                for (r, gRow) in rows.enumerated() {
                    for c in 0..<cols { p[Int(gRow) * cols + c] = v[r * cols + c] }
                }
                v = p
            }
            shapes.append((g.name, g.shape)); values[g.name] = v
        }
        return (shapes, values, hf.dims, ref)
    }

    func testGGUFNamedTensorsGiveTransformersLogits() throws {
        for name in ["qwen2", "llama"] {
            let (shapes, values, hfDims, ref) = try ggufTensors(name)
            let arch = try XCTUnwrap(DecoderRegistry.architecture(named: name))
            // Metadata as llama.cpp's converter names it.
            let ints: [String: Int] = ["\(name).embedding_length": hfDims.hidden, "\(name).block_count": hfDims.layers,
                                       "\(name).attention.head_count": hfDims.heads,
                                       "\(name).attention.head_count_kv": hfDims.kvHeads,
                                       "\(name).attention.key_length": hfDims.headDim,
                                       "\(name).feed_forward_length": hfDims.intermediate, "\(name).context_length": 256]
            let floats: [String: Double] = ["\(name).rope.freq_base": hfDims.ropeTheta,
                                            "\(name).attention.layer_norm_rms_epsilon": hfDims.rmsNormEps]
            let dims = try DecoderDims.gguf(architecture: arch, integer: { ints[$0] }, float: { floats[$0] },
                                            shapes: Dictionary(uniqueKeysWithValues: shapes.map { ($0.name, $0.shape) }), path: "tiny.gguf")
            var expectedDims = hfDims
            expectedDims.bosTokenId = nil; expectedDims.eosTokenIds = []; expectedDims.maxPositions = 256
            XCTAssertEqual(dims, expectedDims, name)
            let m = try DecoderLM.fromGGUF(architecture: arch, dims: dims, shapes: shapes, path: "tiny.gguf") { values[$0]! }
            let logits = try m.prefill(tokens: try ref.ints("input_ids").values, cache: m.makeCache()).logits
            assertClose(logits.data, try ref.floats("logits").values, Tol.logits, "\(name) from GGUF names")
        }
    }

    func testGGUFWithoutUnpermutingWouldBeWrong() throws {
        // The permutation matters: treating llama's GGUF rows as checkpoint rows (as for qwen2) moves the logits.
        let (shapes, values, dims, ref) = try ggufTensors("llama")
        var asQwen = DecoderArchitecture.llama
        asQwen.ggufPermutesQK = false
        let m = try DecoderLM.fromGGUF(architecture: asQwen, dims: dims, shapes: shapes, path: "tiny.gguf") { values[$0]! }
        let logits = try m.prefill(tokens: try ref.ints("input_ids").values, cache: m.makeCache()).logits.data
        let diff = zip(logits, try ref.floats("logits").values).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(diff, 0.01)
    }

    func testGGUFBindingListsUnexpectedMissingAndWrongShapeTogether() throws {
        let (shapes, values, dims, _) = try ggufTensors("qwen2")
        var s = shapes.filter { $0.name != "blk.1.ffn_up.weight" }
        s.append(("blk.0.attn_output.bias", [64]))
        s = s.map { $0.name == "output_norm.weight" ? ($0.name, [32, 2]) : $0 }
        XCTAssertThrowsError(try DecoderLM.fromGGUF(architecture: .qwen2, dims: dims, shapes: s, path: "bad.gguf") { values[$0]! }) { error in
            guard case let .binding(path, problems)? = error as? ModelError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "bad.gguf")
            XCTAssertEqual(problems.sorted(), ["missing tensor blk.1.ffn_up.weight (expected shape [96, 64])",
                                               "output_norm.weight: shape [32, 2], expected [64]",
                                               "unexpected tensor blk.0.attn_output.bias [64]"])
        }
        // A llama attn_q of the wrong shape is reported, never reordered (its rows need not split into heads).
        let (ls, lv, ld, _) = try ggufTensors("llama")
        let odd = ls.map { $0.name == "blk.0.attn_q.weight" ? ($0.name, [126, 64]) : $0 }
        XCTAssertThrowsError(try DecoderLM.fromGGUF(architecture: .llama, dims: ld, shapes: odd, path: "odd.gguf") { name in
            name == "blk.0.attn_q.weight" ? [Float](repeating: 0, count: 126 * 64) : lv[name]!
        }) { XCTAssertTrue("\($0)".contains("blk.0.attn_q.weight: shape [126, 64], expected [128, 64]"), "\($0)") }
        // Llama 3's rope_freqs (RoPE scaling factors) is never dropped silently.
        let withFreqs = ls + [("rope_freqs.weight", [8])]
        XCTAssertThrowsError(try DecoderLM.fromGGUF(architecture: .llama, dims: ld, shapes: withFreqs, path: "l3.gguf") { lv[$0]! }) {
            XCTAssertTrue("\($0)".contains("unexpected tensor rope_freqs.weight [8]"), "\($0)")
        }
        // Partial rotary embeddings are refused by key.
        XCTAssertThrowsError(try DecoderDims.gguf(architecture: .qwen2, integer: { $0 == "qwen2.rope.dimension_count" ? 8 : ($0.hasSuffix("head_count") ? 4 : 64) },
                                                  float: { $0.hasSuffix("epsilon") ? 1e-6 : nil },
                                                  shapes: ["token_embd.weight": [300, 64]], path: "bad.gguf")) {
            XCTAssertTrue("\($0)".contains("qwen2.rope.dimension_count 8 differs from the head size 64"), "\($0)")
        }
        // Metadata errors name the GGUF key.
        XCTAssertThrowsError(try DecoderDims.gguf(architecture: .qwen2, integer: { $0 == "qwen2.attention.head_count" ? 4 : ($0.hasSuffix("head_count_kv") ? 3 : 64) },
                                                  float: { $0.hasSuffix("epsilon") ? 1e-6 : nil },
                                                  shapes: ["token_embd.weight": [300, 64]], path: "bad.gguf")) {
            XCTAssertTrue("\($0)".contains("qwen2.attention.head_count 4 must be a multiple of qwen2.attention.head_count_kv 3"), "\($0)")
        }
    }
}
