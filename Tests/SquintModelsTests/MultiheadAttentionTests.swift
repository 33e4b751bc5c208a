import Foundation
import XCTest
import SquintFormats
import SquintTensor
import TestSupport

/// TorchMultiheadAttention against torch.nn.MultiheadAttention itself (4 heads; fixtures/attention).
final class MultiheadAttentionTests: XCTestCase {
    func testMatchesTorchMultiheadAttentionWithFourHeads() throws {
        let st = try FixtureSafetensors(path: fixturePath("attention/mha.safetensors"))
        let file = InMemoryTensorFile()
        for name in ["in_proj_weight", "out_proj.weight"] {
            let t = try st.floats(name)
            try file.add(name: name, shape: t.shape, f32: t.values)
        }
        let mha = TorchMultiheadAttention(
            inProjWeight: try file.view("in_proj_weight"), inProjBias: try st.floats("in_proj_bias").values,
            outProj: Linear(weight: try file.view("out_proj.weight"), bias: try st.floats("out_proj.bias").values),
            heads: 4)
        let out = mha.forward(query: try st.floats("query").values, key: try st.floats("key").values,
                              value: try st.floats("value").values)
        let expected = try st.floats("out").values
        XCTAssertEqual(out.count, expected.count)
        // Same float32 graph on 16-wide dot products: only rounding order differs.
        for (a, e) in zip(out, expected) { XCTAssertEqual(a, e, accuracy: 1e-5 * (1 + abs(e))) }
    }
}
