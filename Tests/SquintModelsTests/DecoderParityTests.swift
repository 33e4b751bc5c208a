import Foundation
import XCTest
import SquintFormats
import SquintTensor
import SquintModels
import TestSupport

/// The shared decoder (`DecoderLM`) against transformers on tiny random Qwen2ForCausalLM and
/// LlamaForCausalLM models (fixtures/decoders, made by scripts/fixtures/make_decoder_fixtures.py).
///
/// Tolerances: both sides run the same float32 graph; they differ in summation order (OpenBLAS vs
/// torch GEMM, 64..128-term dot products) and last-bit libm differences in exp/cos/sin/pow, a few ulp
/// per op (~1e-7 relative) compounded over 2 blocks: a few 1e-6 on hidden states of magnitude ~5 and
/// logits of magnitude ~3. `Tol.hidden` (rtol 1e-5, atol 2e-5) and `Tol.logits` (rtol 1e-5, atol 1e-4)
/// leave ~10x room and are the bounds the Qwen-VL parity tests use; they are far below the smallest
/// top-1/top-2 logit gap of the greedy steps (8e-3), so the greedy ids must match exactly.
final class DecoderParityTests: XCTestCase {
    struct Case {
        let name: String
        let model: DecoderLM
        let ref: FixtureSafetensors
        let ids: [Int32]
    }

    static func load(_ name: String) throws -> Case {
        let folder = fixturePath("decoders/\(name)-tiny")
        let ref = try FixtureSafetensors(path: folder + "/reference.safetensors")
        return Case(name: name, model: try DecoderLM.load(folder: folder), ref: ref, ids: try ref.ints("input_ids").values)
    }

    static let cases = ["qwen2", "llama"]

    func testLogitsAndHiddenStatesMatchTransformers() throws {
        for name in Self.cases {
            let c = try Self.load(name)
            let r = try c.model.prefill(tokens: c.ids, cache: c.model.makeCache(), keepHiddenStates: true)
            let layers = c.model.dims.layers
            XCTAssertEqual(r.hiddenStates.count, layers + 1)
            for i in 0..<layers {
                let e = try c.ref.floats("hidden.\(i)")
                XCTAssertEqual(r.hiddenStates[i].shape, e.shape)
                assertClose(r.hiddenStates[i].data, e.values, Tol.hidden, "\(name) input of layer \(i)")
            }
            assertClose(r.hiddenStates[layers].data, try c.ref.floats("hidden.final").values, Tol.hidden, "\(name) final norm")
            let e = try c.ref.floats("logits")
            XCTAssertEqual(r.logits.shape, e.shape)
            assertClose(r.logits.data, e.values, Tol.logits, "\(name) logits")
        }
    }

    func testPrefillThenDecodeEqualsFullPrefill() throws {
        // The KV-cached path (a 4-token prefill, then one token at a time through the matvec paths)
        // against one prefill of the whole sequence and against transformers' uncached logits.
        for name in Self.cases {
            let c = try Self.load(name)
            let full = try c.model.prefill(tokens: c.ids, cache: c.model.makeCache()).logits
            let cache = c.model.makeCache(capacity: 2)   // small on purpose: the cache must grow
            let split = 4, v = c.model.dims.vocab
            var rows = try c.model.prefill(tokens: Array(c.ids[..<split]), cache: cache).logits.data
            for t in split..<c.ids.count { rows += try c.model.decode(token: c.ids[t], cache: cache) }
            XCTAssertEqual(cache.count, c.ids.count)
            assertClose(rows, full.data, Tol.logits, "\(name) cached vs full prefill")
            assertClose(rows, try c.ref.floats("logits").values, Tol.logits, "\(name) cached vs transformers")
            // A window of logit rows is the same rows of the full prefill, up to summation order: the
            // lm_head product over fewer rows is another GEMM shape, and OpenBLAS sums the rows at the
            // edge of its tiles in another order (docs/RELIABILITY.md), so bits may differ in the last place.
            let tail = try c.model.prefill(tokens: c.ids, cache: c.model.makeCache(), logitRows: 5..<c.ids.count).logits
            XCTAssertEqual(tail.shape, [c.ids.count - 5, v])
            assertClose(tail.data, Array(full.data[(5 * v)...]), Tol.logits, "\(name) logit rows 5... vs the full prefill")
        }
    }

    /// `useInt8Activations(true)` also runs the one-token lm_head as int8 x int8 (Int8Linear): the
    /// decode logits leave the float ones, by no more than the rounding bound of an 8-bit weight and
    /// an 8-bit x per element (|x| dw/2 + |w| dx/2 + dw dx/4) plus the hidden state's own cached-vs-full
    /// difference (Tol.hidden) times |w|; switched off, the float bits come back.
    func testInt8ActivationsQuantiseTheLMHeadWithinItsRoundingBound() throws {
        for name in Self.cases {
            let c = try Self.load(name)
            let weights = try FixtureSafetensors(path: fixturePath("decoders/\(name)-tiny") + "/model.safetensors")
            let w = c.model.dims.tiedEmbeddings ? try weights.floats("model.embed_tokens.weight").values : try weights.floats("lm_head.weight").values
            let n = c.ids.count, v = c.model.dims.vocab, h = c.model.dims.hidden
            let full = try c.model.prefill(tokens: c.ids, cache: c.model.makeCache(), keepHiddenStates: true)
            let x = Array(full.hiddenStates[c.model.dims.layers].data[((n - 1) * h)..<(n * h)])
            let decodeLast = { () throws -> [Float] in
                let cache = c.model.makeCache()
                _ = try c.model.prefill(tokens: Array(c.ids[..<(n - 1)]), cache: cache)
                return try c.model.decode(token: c.ids[n - 1], cache: cache)
            }
            let floatLogits = try decodeLast()
            c.model.useInt8Activations(true)
            let int8Logits = try decodeLast()
            c.model.useInt8Activations(false)
            XCTAssertEqual(try decodeLast().map(\.bitPattern), floatLogits.map(\.bitPattern), "\(name): off again")
            XCTAssertNotEqual(int8Logits.map(\.bitPattern), floatLogits.map(\.bitPattern), "\(name): the 8-bit head must be in use")
            for o in 0..<v {
                // x here is the prefill's hidden state, the decode step's differs by summation order
                let (exact, bound) = int8ProductBound(w, row: o, x, xRelative: 1e-5, xAbsolute: 2e-5)
                XCTAssertLessThanOrEqual(abs(Double(int8Logits[o]) - exact), bound, "\(name) logit \(o)")
            }
        }
    }

    func testGreedyTokensMatchTransformers() throws {
        for name in Self.cases {
            let c = try Self.load(name)
            let expected = try c.ref.ints("greedy_ids").values
            let g = try c.model.generateGreedy(prompt: c.ids, steps: expected.count)
            XCTAssertEqual(g.ids, expected, "\(name) greedy ids")
            assertClose(g.logits.flatMap { $0 }, try c.ref.floats("greedy_logits").values, Tol.logits, "\(name) greedy step logits")
        }
    }

    func testGenerateStopsAtAStopTokenAndContinuesAChatFromItsCache() throws {
        let c = try Self.load("llama")
        let expected = try c.ref.ints("greedy_ids").values                  // [235, 103, 255, 240, ...]
        XCTAssertEqual(try c.model.generate(prompt: c.ids, maxNewTokens: 8), expected)
        XCTAssertEqual(try c.model.generate(prompt: c.ids, maxNewTokens: 8, stop: [expected[2]]), Array(expected[..<3]))
        var seen: [Int32] = []
        XCTAssertEqual(try c.model.generate(prompt: c.ids, maxNewTokens: 8, onToken: { seen.append($0); return seen.count < 2 }),
                       Array(expected[..<2]))
        // A second turn: the prompt split in two, the first half already in the cache.
        let cache = c.model.makeCache()
        _ = try c.model.prefill(tokens: Array(c.ids[..<6]), cache: cache, logitRows: 0..<0)
        XCTAssertEqual(try c.model.generate(prompt: Array(c.ids[6...]), maxNewTokens: 8, cache: cache), expected)
        XCTAssertEqual(cache.count, c.ids.count + 7)
    }

    func testNegativeLogLikelihoodsMatchTorchCrossEntropy() throws {
        // The perplexity helper against torch's cross_entropy on the same logits (float32 log-softmax
        // in torch, double here: differences ~1e-6 on values ~5).
        for name in Self.cases {
            let c = try Self.load(name)
            let logits = try c.model.prefill(tokens: c.ids, cache: c.model.makeCache(), logitRows: 0..<(c.ids.count - 1)).logits
            let nll = try DecoderLM.negativeLogLikelihoods(logits: logits, targets: Array(c.ids.dropFirst()))
            assertClose(nll.map(Float.init), try c.ref.floats("nll").values, Tol.logsumexp, "\(name) nll")
            let lp = DecoderLM.logProbs(logits.row(0))
            XCTAssertEqual(lp.map(exp).reduce(0, +), 1, accuracy: 1e-9)
            XCTAssertThrowsError(try DecoderLM.negativeLogLikelihoods(logits: logits, targets: [Int32](repeating: 0, count: 3)))
        }
    }

    func testQwen2AndLlamaShareOneDecoderThroughTheRegistry() throws {
        // Both families come out of the same registry and the same DecoderLM type; only their
        // config and tensor table differ (Qwen2: q/k/v biases and a tied lm_head here).
        XCTAssertEqual(DecoderRegistry.architectures.map(\.name), ["qwen2", "llama"])
        let q = try Self.load("qwen2").model, l = try Self.load("llama").model
        XCTAssertEqual(q.architecture.name, "qwen2")
        XCTAssertEqual(l.architecture.name, "llama")
        XCTAssertEqual(q.architecture.naming, l.architecture.naming)
        XCTAssertEqual(q.dims.biases, [.q, .k, .v])
        XCTAssertEqual(l.dims.biases, [])
        XCTAssertTrue(q.dims.tiedEmbeddings)
        XCTAssertFalse(l.dims.tiedEmbeddings)
        XCTAssertEqual(l.dims.headDim, 16)   // head_dim apart from hidden / heads (64 / 8)
        XCTAssertEqual(l.linear(layer: 0, .q)?.outFeatures, 128)
        XCTAssertEqual(q.linear(layer: 1, .k)?.outFeatures, 32)
        XCTAssertNil(q.linear(layer: 0, .qkv))
        XCTAssertEqual(q.dims.ropeTheta, 1e6)
        XCTAssertEqual(l.dims.ropeTheta, 1e4)
        XCTAssertFalse(DecoderArchitecture.qwen2.ggufPermutesQK)
        XCTAssertTrue(DecoderArchitecture.llama.ggufPermutesQK)
    }

    func testObserverSeesEveryBlockLinearInOrderAndReplaceLinearIsUsed() throws {
        let c = try Self.load("llama")
        var seen: [String] = []
        c.model.linearInputObserver = { l, m, _, tokens in seen.append("\(l).\(m.rawValue)x\(tokens)") }
        _ = try c.model.prefill(tokens: Array(c.ids[..<3]), cache: c.model.makeCache())
        c.model.linearInputObserver = nil
        XCTAssertEqual(seen, (0..<2).flatMap { l in ["q", "k", "v", "o", "gate", "up", "down"].map { "\(l).\($0)x3" } })
        // A replaced down projection that outputs zeros removes the MLP's contribution: layer 0's
        // output (the input of layer 1) changes, and is then the attention residual alone.
        final class Zero: LinearLayer {
            let name = "zero", inFeatures: Int, outFeatures: Int
            init(_ i: Int, _ o: Int) { inFeatures = i; outFeatures = o }
            func forward(_ x: UnsafePointer<Float>, tokens: Int, _ y: UnsafeMutablePointer<Float>, scratch: FloatBuffer) {
                y.update(repeating: 0, count: tokens * outFeatures)
            }
        }
        let before = try c.model.prefill(tokens: c.ids, cache: c.model.makeCache(), keepHiddenStates: true).hiddenStates[1]
        c.model.replaceLinear(layer: 0, .down, with: Zero(96, 64))
        let after = try c.model.prefill(tokens: c.ids, cache: c.model.makeCache(), keepHiddenStates: true).hiddenStates[1]
        XCTAssertNotEqual(before, after)
    }

    func testBlockOnAFreshSequenceEqualsThePrefillsBlock() throws {
        let c = try Self.load("qwen2")
        let r = try c.model.prefill(tokens: c.ids, cache: c.model.makeCache(), keepHiddenStates: true)
        var x = r.hiddenStates[0]
        c.model.block(0, &x)
        XCTAssertEqual(x, r.hiddenStates[1])
        // Stopping at a linear (GPTQ's group passes): the observer sees that linear's input bit for bit
        // as in the full block, and nothing after it.
        var full: [String: [Float]] = [:]
        c.model.linearInputObserver = { _, m, p, t in full[m.rawValue] = Array(UnsafeBufferPointer(start: p, count: t * (m == .down ? 96 : 64))) }
        var y = r.hiddenStates[0]
        c.model.block(0, &y)
        for (stop, expected) in [(DecoderLinear.q, ["q"]), (.o, ["q", "k", "v", "o"]), (.gate, ["q", "k", "v", "o", "gate"]),
                                 (.down, ["q", "k", "v", "o", "gate", "up", "down"])] {
            var seen: [String] = [], last: [Float] = []
            c.model.linearInputObserver = { _, m, p, t in
                seen.append(m.rawValue); last = Array(UnsafeBufferPointer(start: p, count: t * (m == .down ? 96 : 64)))
            }
            var z = r.hiddenStates[0]
            c.model.block(0, &z, upTo: stop)
            XCTAssertEqual(seen, expected, "upTo \(stop)")
            XCTAssertEqual(last.map(\.bitPattern), full[stop.rawValue]!.map(\.bitPattern), "upTo \(stop): its input")
        }
        c.model.linearInputObserver = nil
    }

    func testOutOfVocabularyTokenAndForeignCacheAreInputErrors() throws {
        let q = try Self.load("qwen2").model, l = try Self.load("llama").model
        XCTAssertThrowsError(try q.prefill(tokens: [1, 300], cache: q.makeCache())) {
            XCTAssertTrue("\($0)".contains("token id 300 at position 1 is outside the vocabulary (0..<300)"), "\($0)")
        }
        XCTAssertThrowsError(try q.decode(token: -1, cache: q.makeCache()))
        XCTAssertThrowsError(try q.prefill(tokens: [], cache: q.makeCache()))
        XCTAssertThrowsError(try q.prefill(tokens: [1], cache: q.makeCache(), logitRows: 0..<2))
        var other = l.dims
        other.layers = 3
        XCTAssertThrowsError(try l.prefill(tokens: [1], cache: DecoderCache(dims: other))) {
            XCTAssertTrue("\($0)".contains("the KV cache was made for another model"), "\($0)")
        }
    }
}
