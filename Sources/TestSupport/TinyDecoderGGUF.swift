import Foundation
import SquintFormats
import SquintTensor

/// fixtures/decoders/qwen2-tiny (transformers' random Qwen2: hidden 64, 2 blocks, 4 heads over 2 KV
/// heads, MLP 96, vocab 300, tied lm_head) written as an F32 GGUF v3 under llama.cpp's names, with a
/// byte-level vocabulary (GPT-2's 256 byte tokens, five merges, ChatML control tokens, control fillers
/// up to 300) and a ChatML chat template: a complete text model for conversion and CLI tests.
public enum TinyDecoderGGUF {
    /// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to U+0100...
    public static func byteToken(_ b: UInt8) -> String {
        let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
        if printable { return String(UnicodeScalar(b)) }
        var n = 0
        for x in 0..<Int(b) where !((33...126).contains(x) || (161...172).contains(x) || (174...255).contains(x)) { n += 1 }
        return String(UnicodeScalar(UInt32(256 + n))!)
    }

    public static let chatTemplate = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a tiny test model.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"

    public static func vocabulary(vocab: Int) -> (tokens: [String], types: [Int32], merges: [String]) {
        var tokens = (0..<256).map { byteToken(UInt8($0)) }
        var merges: [String] = []
        for pair in [("t", "h"), ("th", "e"), ("\u{120}", "t"), ("\u{120}t", "he"), ("i", "n")] {
            merges.append("\(pair.0) \(pair.1)"); tokens.append(pair.0 + pair.1)
        }
        var types = [Int32](repeating: 1, count: tokens.count)
        for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] { tokens.append(special); types.append(3) }
        while tokens.count < vocab { tokens.append("<|ctl_\(tokens.count)|>"); types.append(3) }
        return (tokens, types, merges)
    }

    /// llama.cpp's name of a transformers Qwen2/Llama tensor.
    static func ggufName(_ hf: String) -> String {
        let fixed = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"]
        if let f = fixed[hf] { return f }
        var s = hf.replacingOccurrences(of: "model.layers.", with: "blk.")
        for (a, b) in [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"), ("self_attn.q_proj", "attn_q"),
                       ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                       ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")] {
            s = s.replacingOccurrences(of: a, with: b)
        }
        return s
    }

    /// Writes the GGUF at `path` and returns it. `blockType`: the ggml type of the block linears'
    /// weights (F32 by default; F16, Q8_0 or Q4_0 make a "quantized" copy); `vocabulary` replaces the
    /// tokenizer's token strings.
    @discardableResult
    public static func write(to path: String, blockType: GGMLType = .f32, vocabulary tokens: [String]? = nil) throws -> String {
        let folder = Fixtures.path("decoders/qwen2-tiny")
        let cfg = try XCTUnwrapJSON(folder + "/config.json")
        func n(_ k: String) -> Int { (cfg[k] as? NSNumber)?.intValue ?? 0 }
        let st = try SafetensorsFile(path: folder + "/model.safetensors")
        let w = GGUFWriter()
        var v = vocabulary(vocab: n("vocab_size"))
        if let tokens { v.tokens = tokens }
        let rope = ((cfg["rope_parameters"] as? [String: Any])?["rope_theta"] as? NSNumber)?.floatValue ?? 1e6
        try w.add(key: "general.architecture", .string("qwen2"))
        try w.add(key: "general.name", .string("qwen2-tiny (random, transformers)"))
        try w.add(key: "qwen2.block_count", .uint32(UInt32(n("num_hidden_layers"))))
        try w.add(key: "qwen2.context_length", .uint32(256))
        try w.add(key: "qwen2.embedding_length", .uint32(UInt32(n("hidden_size"))))
        try w.add(key: "qwen2.feed_forward_length", .uint32(UInt32(n("intermediate_size"))))
        try w.add(key: "qwen2.attention.head_count", .uint32(UInt32(n("num_attention_heads"))))
        try w.add(key: "qwen2.attention.head_count_kv", .uint32(UInt32(n("num_key_value_heads"))))
        try w.add(key: "qwen2.rope.freq_base", .float32(rope))
        try w.add(key: "qwen2.attention.layer_norm_rms_epsilon", .float32((cfg["rms_norm_eps"] as? NSNumber)?.floatValue ?? 1e-6))
        try w.add(key: "tokenizer.ggml.model", .string("gpt2"))
        try w.add(key: "tokenizer.ggml.pre", .string("qwen2"))
        try w.add(key: "tokenizer.ggml.tokens", .array(.string, v.tokens.map { .string($0) }))
        try w.add(key: "tokenizer.ggml.token_type", .array(.int32, v.types.map { .int32($0) }))
        try w.add(key: "tokenizer.ggml.merges", .array(.string, v.merges.map { .string($0) }))
        try w.add(key: "tokenizer.ggml.add_bos_token", .bool(false))
        try w.add(key: "tokenizer.ggml.eos_token_id", .uint32(UInt32(v.tokens.firstIndex(of: "<|im_end|>")!)))
        try w.add(key: "tokenizer.chat_template", .string(chatTemplate))
        for t in st.tensors {
            let g = ggufName(t.name)
            let type: GGMLType = g.hasPrefix("blk.") && g.hasSuffix(".weight") && t.shape.count == 2 ? blockType : .f32
            try w.addTensor(name: g, type: type, shape: t.shape, values: Kernels.floats(try st.view(t.name)))
        }
        try w.write(to: path, overwrite: false)
        return path
    }

    static func XCTUnwrapJSON(_ path: String) throws -> [String: Any] {
        guard let d = FileManager.default.contents(atPath: path),
              let o = try JSONSerialization.jsonObject(with: d) as? [String: Any] else {
            throw FormatError.io(path: path, message: "cannot read the fixture's config.json")
        }
        return o
    }
}
