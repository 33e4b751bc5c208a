import Foundation
import XCTest
import SquintFormats
@testable import SquintPipeline
import TestSupport

/// `inspect A --diff B` between a Hugging Face checkpoint and a GGUF file of the same decoder: names
/// are matched through the llama.cpp naming, so the diff reports type and shape changes.
final class InspectDiffMappingTests: XCTestCase {
    var tmp = ""
    override func setUp() { tmp = Fixtures.temporaryFolder("diff-map") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    /// llama.cpp's names for transformers' Qwen2 tensors (convert_hf_to_gguf's table), written out
    /// here rather than taken from `DecoderTensorNaming`.
    static func llamaCppName(_ hf: String) -> String? {
        let fixed = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                     "lm_head.weight": "output.weight"]
        if let n = fixed[hf] { return n }
        let parts = hf.split(separator: ".").map(String.init)   // model.layers.N.<module...>.<weight|bias>
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]) else { return nil }
        let module = parts[3..<(parts.count - 1)].joined(separator: ".")
        let table = ["input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                     "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                     "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                     "mlp.down_proj": "ffn_down"]
        guard let g = table[module] else { return nil }
        return "blk.\(layer).\(g).\(parts[parts.count - 1])"
    }

    /// A GGUF of fixtures/decoders/qwen2-tiny: linear weights Q8_0, the embedding F16, the rest F32;
    /// one tensor left out, one written with another shape, one extra.
    func writeGGUF() throws -> (hf: String, gguf: String) {
        let hf = Fixtures.path("decoders/qwen2-tiny/model.safetensors")
        let src = try SafetensorsFile(path: hf)
        let w = GGUFWriter()
        try w.add(key: "general.architecture", .string("qwen2"))
        for t in src.tensors {
            if t.name == "model.layers.1.self_attn.o_proj.weight" { continue }
            let name = try XCTUnwrap(Self.llamaCppName(t.name), t.name)
            var values = try src.view(t.name).bytes.withMemoryRebound(to: Float.self) { Array($0) }
            var shape = t.shape
            if t.name == "model.layers.1.post_attention_layernorm.weight" { values = Array(values.prefix(32)); shape = [32] }
            let type: GGMLType = t.name == "model.embed_tokens.weight" ? .f16 : (t.shape.count == 2 ? .q8_0 : .f32)
            try w.addTensor(name: name, type: type, shape: shape, values: values)
        }
        try w.addTensor(name: "rope_freqs.weight", type: .f32, shape: [16], values: [Float](repeating: 1, count: 16))
        let out = tmp + "/tiny.gguf"
        try w.write(to: out, overwrite: true)
        return (hf, out)
    }

    func testGGUFAgainstItsSafetensorsReportsTypeAndShapeChanges() throws {
        let (hf, gguf) = try writeGGUF()
        let a = try SafetensorsFile(path: hf), b = try GGUFFile(path: gguf)
        for swapped in [false, true] {
            let v = swapped ? Inspector.diffViews(b, a) : Inspector.diffViews(a, b)
            let d = CheckpointDiff.compare(v.a, v.b, typeNamesA: v.typeNamesA, typeNamesB: v.typeNamesB)
            XCTAssertNotNil(v.mapping)
            XCTAssertEqual(swapped ? d.added : d.removed, ["model.layers.1.self_attn.o_proj.weight"])
            XCTAssertEqual(swapped ? d.removed : d.added, ["rope_freqs.weight"])
            XCTAssertEqual(d.renamed, [])
            let (x, y) = swapped ? ("[32]", "[64]") : ("[64]", "[32]")
            XCTAssertEqual(d.shapeChanged, [.init(name: "model.layers.1.post_attention_layernorm.weight", from: x, to: y)])
            let linears = a.tensors.filter { $0.shape.count == 2 && $0.name != "model.embed_tokens.weight" && $0.name != "model.layers.1.self_attn.o_proj.weight" }
            var want = Dictionary(uniqueKeysWithValues: linears.map { ($0.name, "Q8_0") })
            want["model.embed_tokens.weight"] = "F16"
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: d.dtypeChanged.map { ($0.name, swapped ? $0.from : $0.to) }), want)
            XCTAssertTrue(d.dtypeChanged.allSatisfy { (swapped ? $0.to : $0.from) == "F32" })
            XCTAssertEqual(d.unchanged, a.tensors.count - 1 - 1 - want.count)   // minus removed, shape change, type changes
        }
    }

    /// Two GGUF files (or two Hugging Face files) are compared by their own names.
    func testNoMappingBetweenFilesOfTheSameNaming() throws {
        let (hf, gguf) = try writeGGUF()
        let g = try GGUFFile(path: gguf)
        XCTAssertNil(Inspector.diffViews(g, g).mapping)
        let a = try SafetensorsFile(path: hf)
        XCTAssertNil(Inspector.diffViews(a, a).mapping)
    }

    func testCLIDiffNamesTheMappingAndExits3() throws {
        let (hf, gguf) = try writeGGUF()
        let r = try Fixtures.run(Fixtures.squintExecutable(), ["inspect", Fixtures.path("decoders/qwen2-tiny"), "--diff", gguf, "--json"])
        XCTAssertEqual(r.status, 3, r.err)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        XCTAssertEqual(obj["removed"] as? [String], ["model.layers.1.self_attn.o_proj.weight"])
        XCTAssertNotNil(obj["name_mapping"] as? String)
        _ = hf
    }
}
