import Foundation
import SquintFormats
import SquintModels
import SquintTensor
import SquintTokenizer

/// What `convert --format gguf` writes besides the quantized block linears: the metadata, in order,
/// and every tensor under llama.cpp's name (torch-order shape) with its float32 values, or its stored
/// bytes when the source already holds it in a GGUF type (copied unchanged when the output keeps that
/// type). Made from a GGUF file as it is, or from a Hugging Face folder as llama.cpp's converter
/// (`convert_hf_to_gguf.py`) would have written it (`folder(_:)`).
public struct GGUFOutputSource {
    public struct Tensor {
        public var name: String
        public var shape: [Int]
        public var stored: (type: GGMLType, bytes: () throws -> [UInt8])?
        public var floats: () throws -> [Float]
    }
    public var path: String
    public var keyValues: [GGUFKeyValue]
    public var tensors: [Tensor]

    /// A GGUF file's metadata and tensors as they are.
    public init(file: GGUFFile) {
        path = file.path
        keyValues = file.keyValues
        tensors = file.ggufTensors.map { t in
            Tensor(name: t.name, shape: t.shape, stored: (t.type, { Array(try file.bytes(of: t)) }),
                   floats: { try GGUFDequant.dequantize(t, of: file) })
        }
    }

    /// A Hugging Face folder's model (opened by `TextModel.open`), as llama.cpp's converter writes a
    /// `qwen2` / `llama` GGUF: the architecture numbers under `<arch>.*` (context length from
    /// `max_position_embeddings`, else 4096; `rope.dimension_count` and `vocab_size` for llama, as the
    /// converter writes them), the tokenizer as `tokenizer.ggml.*` (model `gpt2`; tokens, types and merges
    /// of tokenizer.json, padded to the embedding's rows with unused `[PAD<id>]`; the pre-tokenizer's llama.cpp name; BOS / EOS / padding ids from
    /// tokenizer_config.json's tokens, else config.json's; `add_bos_token` as the tokenizer adds it;
    /// the chat template), then the tensors in the order of `DecoderDims.tensorTable` with llama's q/k
    /// bias rows in GGUF order (the weights are reordered by the writer). tokenizer.json's NFC
    /// normaliser has no GGUF key: llama.cpp does not normalise (docs/QUANTIZING.md). Not read:
    /// tokenizer_config.json's `add_bos_token` (the converter uses it only when tokenizer.json's
    /// post-processor says nothing), the unknown token, config.json's `pad_token_id`.
    public static func folder(_ tm: TextModel) throws -> GGUFOutputSource {
        let m = tm.model, d = m.dims, arch = m.architecture, tok = tm.tokenizer
        guard !d.fusedQKV && !d.fusedGateUp else {
            throw ConvertError.invalidOption("\(tm.path): fused qkv_proj / gate_up_proj layers have no GGUF output in Squint")
        }
        var kv: [GGUFKeyValue] = []
        func add(_ key: String, _ v: GGUFValue) { kv.append(GGUFKeyValue(key: key, value: v)) }
        func u32(_ i: Int) -> GGUFValue { .uint32(UInt32(clamping: i)) }
        let a = arch.name
        add("general.architecture", .string(a))
        add("general.type", .string("model"))
        add("general.name", .string(((tm.path as NSString).standardizingPath as NSString).lastPathComponent))
        add("\(a).block_count", u32(d.layers))
        add("\(a).context_length", u32(d.maxPositions ?? 4096))
        add("\(a).embedding_length", u32(d.hidden))
        add("\(a).feed_forward_length", u32(d.intermediate))
        add("\(a).attention.head_count", u32(d.heads))
        add("\(a).attention.head_count_kv", u32(d.kvHeads))
        add("\(a).rope.freq_base", .float32(Float(d.ropeTheta)))
        add("\(a).attention.layer_norm_rms_epsilon", .float32(Float(d.rmsNormEps)))
        if d.headDim != d.hidden / d.heads {
            add("\(a).attention.key_length", u32(d.headDim))
            add("\(a).attention.value_length", u32(d.headDim))
        }
        if arch.ggufPermutesQK {
            add("\(a).vocab_size", u32(d.vocab))
            add("\(a).rope.dimension_count", u32(d.headDim))
        }
        // Special tokens: tokenizer_config.json names them by text (as the converter reads them).
        let tc = try DecoderOutputs.parseJSONFile(tm.path + "/tokenizer_config.json")
        func special(_ key: String) -> Int? {   // "<s>" or {"content": "<s>", ...}
            guard let v = tc?[key], case .string(let s) = v["content"] ?? v else { return nil }
            return tok.tokenID(of: s)
        }
        // One token per embedding row: ids tokenizer.json does not use (Qwen2.5: 151,665 tokens for
        // 151,936 rows) become unused `[PAD<id>]` tokens, as the converter writes them; llama.cpp
        // refuses a vocabulary shorter than token_embd.
        guard tok.vocabularySize <= d.vocab else {
            throw ConvertError.invalidOption("\(tm.path): tokenizer.json has \(tok.vocabularySize) tokens for \(d.vocab) embedding rows")
        }
        let pads = tok.vocabularySize..<d.vocab
        add("tokenizer.ggml.model", .string("gpt2"))
        add("tokenizer.ggml.pre", .string(tok.preTokenizer.llamaCppName))
        add("tokenizer.ggml.tokens", .array(.string, (tok.tokens + pads.map { "[PAD\($0)]" }).map { .string($0) }))
        // The converter makes a non-special added token control when it looks special (`<|...|>` and a
        // few others: `does_token_look_special`); llama.cpp then never splits it out of plain text.
        func looksSpecial(_ t: String) -> Bool {
            ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(t) || (t.hasPrefix("<|") && t.hasSuffix("|>"))
                || (t.hasPrefix("<\u{FF5C}") && t.hasSuffix("\u{FF5C}>")) || (t.hasPrefix("<unused") && t.hasSuffix(">"))
        }
        let types = zip(tok.tokens, tok.tokenTypes).map { t, type -> ByteLevelBPETokenizer.TokenType in
            type == .userDefined && looksSpecial(t) ? .control : type
        }
        add("tokenizer.ggml.token_type", .array(.int32, types.map { .int32($0.rawValue) }
            + pads.map { _ in .int32(ByteLevelBPETokenizer.TokenType.unused.rawValue) }))
        add("tokenizer.ggml.merges", .array(.string, tok.merges.map { .string($0) }))
        if let b = special("bos_token") ?? d.bosTokenId ?? tok.bosTokenID { add("tokenizer.ggml.bos_token_id", u32(b)) }
        if let e = special("eos_token") ?? d.eosTokenIds.first ?? tok.eosTokenID { add("tokenizer.ggml.eos_token_id", u32(e)) }
        if let p = special("pad_token") { add("tokenizer.ggml.padding_token_id", u32(p)) }
        add("tokenizer.ggml.add_bos_token", .bool(tok.addBOS))
        if tok.addEOS { add("tokenizer.ggml.add_eos_token", .bool(true)) }
        if let t = tm.chatTemplate { add("tokenizer.chat_template", .string(t)) }

        // Tensors: the float ones from the model, block-linear weights and biases from its layers.
        let dense = Dictionary(uniqueKeysWithValues: m.denseTensors(naming: .gguf).map { ($0.name, $0.values) })
        var tensors: [Tensor] = []
        for spec in d.tensorTable(.gguf) {
            let values: () throws -> [Float]
            switch spec.role {
            case .weight(let l):
                guard let lin = m.linear(layer: spec.layer!, l) as? Linear else {
                    throw ConvertError.invalidOption("\(tm.path): \(spec.name) is not a float layer")
                }
                values = { Kernels.floats(lin.weightView) }
            case .bias(let l):
                guard let b = (m.linear(layer: spec.layer!, l) as? Linear)?.bias else {
                    throw ConvertError.invalidOption("\(tm.path): \(spec.name): the layer's bias is missing")
                }
                let heads = l == .q ? d.heads : l == .k ? d.kvHeads : 0
                if arch.ggufPermutesQK && heads > 0 {
                    let bytes = b.withUnsafeBytes { Array($0) }
                    let p = DecoderConvert.permuteRowsToGGUF(bytes, rows: b.count, heads: heads, rowBytes: 4)
                    values = { p.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
                } else {
                    values = { b }
                }
            default:
                guard let v = dense[spec.name] else { throw ConvertError.invalidOption("\(tm.path): no tensor for \(spec.name)") }
                values = { v }
            }
            tensors.append(Tensor(name: spec.name, shape: spec.shape, stored: nil, floats: values))
        }
        return GGUFOutputSource(path: tm.path, keyValues: kv, tensors: tensors)
    }

    public init(path: String, keyValues: [GGUFKeyValue], tensors: [Tensor]) {
        self.path = path; self.keyValues = keyValues; self.tensors = tensors
    }

    public func value(forKey key: String) -> GGUFValue? { keyValues.first { $0.key == key }?.value }
}
