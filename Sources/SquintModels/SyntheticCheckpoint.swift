import Foundation
import SquintFormats
import SquintTensor

/// The whole BF16 checkpoint of `config` built in memory from the bit-exact synthetic recipe
/// (SyntheticWeights), in state_dict order. For the tiny test config this is the reference
/// checkpoint bit for bit (seed 20240611), so model tests need no weight file. The real-size config
/// would need 19 GB of memory: use `squint synth` to write it to disk instead.
public func syntheticCheckpoint(config: QwenVLConfig, seed: UInt64) -> InMemoryTensorFile {
    let file = InMemoryTensorFile(path: "<synthetic seed \(seed)>", metadata: ["format": "pt"])
    let gen = SyntheticWeights(seed: seed)
    for spec in config.bf16TensorSpecs() {
        do {
            try file.add(name: spec.name, dtype: .bf16, shape: spec.shape) { raw in
                let p = raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
                let n = raw.count / 2
                parallelChunks(n, minPerChunk: 1 << 16) { a, b in
                    gen.generate(spec, start: a, count: b - a, bf16: p + a)
                }
            }
        } catch {
            // Names in bf16TensorSpecs() are unique and shapes small enough: a failure is a bug.
            preconditionFailure("syntheticCheckpoint: \(error)")
        }
    }
    return file
}
