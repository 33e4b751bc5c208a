import SquintFormats
import SquintTensor

extension DecoderLM {
    /// The tensors a 4-bit conversion keeps in float, as float32 under `naming` (a Hugging Face or GGUF
    /// table), in the order of `DecoderDims.tensorTable`: the embedding [vocab, hidden], each block's
    /// two norms [hidden], the final norm [hidden], and lm_head [vocab, hidden] unless tied. Block
    /// linears and their biases are not included (the writer takes them from the quantized layers).
    public func denseTensors(naming n: DecoderTensorNaming) -> [(name: String, shape: [Int], values: [Float])] {
        var out: [(name: String, shape: [Int], values: [Float])] = []
        for spec in dims.tensorTable(n) {
            switch spec.role {
            case .embedding: out.append((spec.name, spec.shape, Kernels.floats(embedding.view)))
            case .attnNorm: out.append((spec.name, spec.shape, blocks[spec.layer!].attnNorm))
            case .mlpNorm: out.append((spec.name, spec.shape, blocks[spec.layer!].mlpNorm))
            case .finalNorm: out.append((spec.name, spec.shape, finalNorm))
            case .lmHead: out.append((spec.name, spec.shape, Kernels.floats(lmHead.dense.weightView)))
            case .weight, .bias: continue
            }
        }
        return out
    }
}
