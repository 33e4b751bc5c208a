import CSquintKernels
import Foundation
import SquintFormats

/// Rebuilds the official AutoGPTQ Int4 tiny checkpoint (shared/reference/qwen-vl-tiny/int4/
/// model.safetensors, 78 MB, not committed) from what is: the synthetic BF16 weights (regenerated from
/// the recipe) and fixtures/qwen-vl-tiny/int4/quantized_modules.safetensors (the quantized modules'
/// tensors, byte for byte; scripts/fixtures/make_tiny_int4_fixtures.py). Every other tensor of the
/// release is fp16(bf16 weight), written here with round-to-nearest-even as torch's `.half()`.
/// The result's sha256 is compared with the manifest's by the tests, which proves it is the file.
public enum TinyInt4 {
    public static let manifestSHA256 = "d855570307135ac126b6c1758693a1a21dec86af22aa15f9a0a7ce3b29d9eb43"
    public static let manifestBytes = 78_689_804
    /// The official file's `__metadata__` (AutoGPTQ 0.5.0.dev0 writes it; the fixture keeps only
    /// `format`, so it is restated here; the fixture script asserts it).
    public static let metadata = ["auto_gptq_version": "0.5.0.dev0", "format": "pt", "gptq_bits": "4", "gptq_damp_percent": "0.01",
                                  "gptq_desc_act": "False", "gptq_group_size": "128"]

    /// Writes `folder/model.safetensors` (AutoGPTQ layout) plus config.json, quantize_config.json and
    /// generation_config.json. `synthetic` is the BF16 tiny checkpoint (seed 20240611).
    public static func writeAutoGPTQFolder(synthetic: TensorFile, to folder: String, file: String = #filePath) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let fixture = try SafetensorsFile(path: Fixtures.path("qwen-vl-tiny/int4/quantized_modules.safetensors", file: file))
        let modules = Set(fixture.tensors.map(\.name).filter { $0.hasSuffix(".qweight") }.map { String($0.dropLast(8)) })
        var tensors: [SafetensorsWriter.Tensor] = fixture.tensors.map { .init(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        let quantNames = Set(tensors.map(\.name))
        for t in synthetic.tensors {
            // The dense weight of a quantized module is replaced by its qweight/qzeros/scales/g_idx.
            if t.name.hasSuffix(".weight"), modules.contains(String(t.name.dropLast(7))) { continue }
            if quantNames.contains(t.name) { continue }   // module biases come from the fixture
            tensors.append(.init(name: t.name, dtype: .f16, shape: t.shape))
        }
        let w = try SafetensorsWriter(tensors: tensors, metadata: metadata, path: folder + "/model.safetensors")
        try w.write(to: folder + "/model.safetensors", overwrite: true) { t, sink in
            if quantNames.contains(t.name) { try sink.write(try fixture.view(t.name).bytes); return }
            let v = try synthetic.view(t.name)
            precondition(v.info.dtype == .bf16, "synthetic weights are BF16")
            let n = v.info.elementCount
            var f = [Float](repeating: 0, count: n), h = [UInt16](repeating: 0, count: n)
            v.bytes.withMemoryRebound(to: UInt16.self) { sq_bf16_to_f32($0.baseAddress!, &f, n) }
            sq_f32_to_f16(f, &h, n)
            try h.withUnsafeBytes { try sink.write($0) }
        }
        for name in ["config.json", "quantize_config.json", "generation_config.json"] {
            let dst = folder + "/" + name
            try? fm.removeItem(atPath: dst)
            try fm.copyItem(atPath: Fixtures.path("qwen-vl-tiny/int4/" + name, file: file), toPath: dst)
        }
    }

    /// Converts an AutoGPTQ checkpoint to an SQ4 file losslessly (`AutoGPTQLayout.convertCheckpoint`),
    /// with `configPath` (config.json) in the header.
    public static func writeSQ4(fromAutoGPTQ src: TensorFile, configPath: String, to destination: String) throws {
        let cfgBytes = try Data(contentsOf: URL(fileURLWithPath: configPath))
        let config = try cfgBytes.withUnsafeBytes { try StrictJSON.parseObject($0, path: configPath, what: "config.json") }
        let header = SQ4Header(config: config, quantization: SQ4Quantization(), tokenizer: SQ4Tokenizer(),
                               provenance: SQ4Provenance(source: "qwen-vl-tiny/int4/model.safetensors", calibration: "shared/calibration/pairs.jsonl",
                                                         tool: "TestSupport.TinyInt4"))
        try AutoGPTQLayout.convertCheckpoint(src, header: header, to: destination, overwrite: true)
    }

    /// sha256 of a file, streamed.
    public static func sha256(ofFile path: String) throws -> String {
        let m = try MappedFile(path: path)
        return sha256Hex(try m.slice(0, m.size, what: "the file"))
    }
}
