import Foundation
import COpenBLAS
import CSquintKernels
import SquintFormats
import SquintModels
import SquintTensor

/// `squint bench`: this machine's limits and Squint's hot paths at the real Qwen-VL-Chat sizes on
/// synthetic weights, each as a fraction of the limit it is bound by (docs/PERFORMANCE.md).
public enum Bench {
    public struct Row: Codable, Sendable {
        public var name: String
        public var seconds: Double
        public var rate: Double
        public var unit: String
        /// Fraction of the measured machine limit (sgemm for compute-bound, read bandwidth for
        /// memory-bound paths); nil for the limits themselves.
        public var ofLimit: Double?
    }

    static func time(_ reps: Int, _ body: () throws -> Void) rethrows -> Double {
        var best = Double.infinity
        for _ in 0..<reps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return best
    }

    /// The real widths with one LLM block, one ViT block and a small vocabulary.
    static func oneLayerConfig() throws -> QwenVLConfig {
        let json = """
        {"hidden_size": 4096, "intermediate_size": 22016, "kv_channels": 128, "layer_norm_epsilon": 1e-06,
         "num_attention_heads": 32, "num_hidden_layers": 1, "rotary_emb_base": 10000, "rotary_pct": 1.0,
         "seq_length": 2048, "vocab_size": 1024, "use_dynamic_ntk": true, "use_logn_attn": true,
         "tie_word_embeddings": false,
         "visual": {"heads": 16, "image_size": 448, "image_start_id": 151857, "layers": 1, "mlp_ratio": 4.9231,
                    "output_dim": 4096, "patch_size": 14, "width": 1664}}
        """
        let c = try JSONDecoder().decode(QwenVLConfig.self, from: Data(json.utf8))
        try c.validate()
        return c
    }

    public static func run(only: Set<String>? = nil, log: (Row) -> Void) throws -> [Row] {
        var rows: [Row] = []
        func add(_ r: Row) { rows.append(r); log(r) }
        func want(_ k: String) -> Bool { only == nil || only!.contains(k) }

        // Limits: OpenBLAS sgemm 2048^3 and a streaming read of 1 GiB of touched memory.
        let n = 2048
        var a = [Float](repeating: 0, count: n * n), b = a, c = a
        for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.1; b[i] = Float(i % 5) * 0.2 }
        let ts = time(3) { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, &c, Int32(n)) }
        let sgemm = 2.0 * Double(n * n * n) / ts
        add(Row(name: "limit: sgemm 2048^3 (OpenBLAS)", seconds: ts, rate: sgemm / 1e9, unit: "GFLOP/s", ofLimit: nil))
        let big = [UInt8](repeating: 1, count: 1 << 30)
        var sink: UInt64 = 0
        let tr = time(3) {
            big.withUnsafeBytes { raw in
                let parts = Threads.count
                var partial = [UInt64](repeating: 0, count: parts)
                partial.withUnsafeMutableBufferPointer { pp in
                    DispatchQueue.concurrentPerform(iterations: parts) { i in
                        let lo = raw.count / parts * i, hi = i == parts - 1 ? raw.count : raw.count / parts * (i + 1)
                        pp[i] = sq_read_bandwidth_probe(raw.baseAddress! + lo, hi - lo)
                    }
                }
                sink &+= partial.reduce(0, &+)
            }
        }
        let bw = Double(big.count) / tr
        add(Row(name: "limit: memory read 1 GiB", seconds: tr, rate: bw / 1e9, unit: "GB/s", ofLimit: nil))
        if sink == 42 { print("") }

        let cfg = try oneLayerConfig()
        let model = try QwenVLModel(config: cfg, weights: syntheticCheckpoint(config: cfg, seed: 1))
        let h = 4096.0, f = 11008.0
        let blockParams = 3 * h * h + 3 * h + h * h + 3 * h * f
        if want("llm") {
            let S = 512
            let ids = (0..<S).map { Int32(($0 * 37) % 1000) }
            let tp = try time(3) {
                let cache = KVCache(config: cfg, capacity: S + 16)
                _ = try model.language.prefill(ids: ids, imageFeatures: nil, cache: cache, allLogits: false)
            }
            let flops = 2 * Double(S) * blockParams + 2.0 * 2 * Double(S) * Double(S) / 2 * h
            add(Row(name: "LLM block prefill, 512 tokens (bf16 weights)", seconds: tp, rate: flops / tp / 1e9, unit: "GFLOP/s", ofLimit: flops / tp / sgemm))
            let cache = KVCache(config: cfg, capacity: S + 16)
            _ = try model.language.prefill(ids: ids, imageFeatures: nil, cache: cache, allLogits: false)
            var steps: [Double] = []
            for i in 0..<8 { steps.append(try time(1) { _ = try model.language.decodeStep(Int32(i), cache: cache) }) }
            let td = steps.sorted()[steps.count / 2]
            let bytes = 2 * blockParams + 2.0 * Double(S) * h * 4
            add(Row(name: "LLM block decode, KV 512 (bf16 weights + f32 KV)", seconds: td, rate: bytes / td / 1e9, unit: "GB/s", ofLimit: bytes / td / bw))
        }
        if want("vit") {
            let w = 1664.0, m = 8192.0, T = 1024.0
            var x = FloatTensor(shape: [1024, 1664], data: (0..<(1024 * 1664)).map { Float(($0 * 7919) % 1000) / 1000 - 0.5 })
            let tv = time(3) { model.vision.block(0, &x) }
            let flops = 2 * T * (3 * w * w + w * w + 2 * w * m) + 2 * 2 * T * T * w
            add(Row(name: "ViT block, 1024 tokens", seconds: tv, rate: flops / tv / 1e9, unit: "GFLOP/s", ofLimit: flops / tv / sgemm))
        }
        return rows
    }
}
