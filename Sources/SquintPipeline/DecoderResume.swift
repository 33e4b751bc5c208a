import Foundation
import SquintFormats
import SquintModels
import SquintQuant
import SquintTensor

/// The resume state of a text-model conversion (`convert MODEL --calib-text ... --resume`), kept in
/// the same work folder beside the output as a Qwen-VL conversion's (`Converter.workFolder(for:)`):
///
/// - `state.json`: the run's fingerprint (settings, source identity, calibration tokens) and the
///   number of finished blocks; rewritten atomically after each block, and a block counts as done
///   only once this file says so;
/// - `block-<l>.safetensors`: every module of block l as GPTQ left it (codes U8, scales and zeros
///   F32, g_idx I32; the fake-quantized weight F32 only when it is not exactly the codes on their
///   grid), its log line in the metadata;
/// - `acts-<l>.safetensors`: the calibration windows' hidden states after block l (F32), the next
///   block's inputs; the previous block's file is removed only once `state.json` names block l done,
///   so a kill at any moment leaves a state that resumes.
///
/// A resumed run loads the finished blocks and continues at the next one from exactly the inputs an
/// uninterrupted run would have had, so it writes the same bytes.
final class DecoderWork {
    private let work: WorkFolder<BlockProgress>
    let fingerprint: String
    private(set) var blocksDone = 0
    /// The thread count the run was started with (a resumed run keeps the saved one).
    private let threads: Int?
    var folder: String { work.path }

    /// Opens (with `resume`) or creates the work folder for `output` (`WorkFolder`'s rules).
    init(output: String, fingerprint: String, resume: Bool, force: Bool) throws {
        work = try WorkFolder(output: output, fingerprint: fingerprint, resume: resume, force: force)
        self.fingerprint = fingerprint
        threads = work.saved.map { $0.threads } ?? Threads.count
        if let saved = work.saved { blocksDone = saved.blocksDone } else { try writeState() }
    }

    /// The identity a saved run must match: settings, the source (the file's, or every file's of a
    /// folder, name, size and modification time) and the calibration tokens.
    static func fingerprint(model: String, options o: DecoderConvert.Options, windows: [[Int32]]) throws -> String {
        let fm = FileManager.default
        func identity(_ path: String) throws -> String {
            let attrs: [FileAttributeKey: Any]
            do { attrs = try fm.attributesOfItem(atPath: path) } catch {
                throw FormatError.io(path: path, doing: "cannot read the source's attributes", error)
            }
            let size = (attrs[.size] as? NSNumber)?.int64Value ?? -1
            let mtime = (attrs[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\((path as NSString).lastPathComponent) size \(size) mtime \(mtime)"
        }
        var isDir: ObjCBool = false
        let root = (model as NSString).standardizingPath
        var source = try identity(root)
        if fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue {
            let names = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
            source = try names.map { try identity(root + "/" + $0) }.joined(separator: ", ")
        }
        let tokens = windows.flatMap { $0 }.withUnsafeBytes { sha256Hex($0) }
        return ([Converter.toolVersion, "source \(root): \(source)",
                "calib \(windows.count) windows sha256 \(tokens)",
                "method \(o.method.rawValue) container \(o.container.rawValue) target \(o.target.rawValue) grid \(o.grid.rawValue)",
                "group \(o.groupSize) sym \(o.sym) desc_act \(o.descAct) static \(o.staticGroups) damp \(o.dampPercent)"]
            + (o.rtnLinears.isEmpty ? [] : ["rtn " + o.rtnNames.joined(separator: ",")])
            + (o.scaleSearch ? ["scale search" + (o.scaleWeights == .hessian ? "" : " weights \(o.scaleWeights.rawValue)")] : [])
            + (o.hessianShrink > 0 ? ["hessian shrink \(o.hessianShrink)"] : [])).joined(separator: "; ")
    }

    private func writeState() throws { try work.write(BlockProgress(fingerprint: fingerprint, blocksDone: blocksDone, threads: threads)) }

    private func blockPath(_ l: Int) -> String { "\(folder)/block-\(l).safetensors" }
    private func actsPath(_ l: Int) -> String { "\(folder)/acts-\(l).safetensors" }

    /// Saves block `l`'s modules and the next block's inputs, then marks the block done.
    func save(block l: Int, modules: [DecoderConvert.Module], inputs xs: [FloatTensor], minOffset: Bool) throws {
        // Each tensor's bytes are streamed from the arrays they live in (no copies).
        var tensors: [SafetensorsWriter.Tensor] = []
        var data: [String: (TensorSink) throws -> Void] = [:]
        func add<T>(_ name: String, _ dtype: DType, _ shape: [Int], _ values: [T]) {
            tensors.append(.init(name: name, dtype: dtype, shape: shape))
            data[name] = { sink in try values.withUnsafeBytes { try sink.write($0) } }
        }
        var logs: [ConvertModuleLog] = []
        for (k, m) in modules.enumerated() {
            let w = m.weight, p = "m\(k)."
            add(p + "codes", .u8, [w.rows, w.columns], w.codes)
            add(p + "scale", .f32, [w.rows, w.groups], w.scale)
            add(p + "zero", .f32, [w.rows, w.groups], w.zero)
            add(p + "g_idx", .i32, [w.columns], w.gIdx)
            if !w.q.isEmpty && !w.codesGiveBack(w.q, minOffset: minOffset) { add(p + "q", .f32, [w.rows, w.columns], w.q) }
            logs.append(m.log)
        }
        let meta = ["modules": modules.map { "\($0.layer) \($0.linear.rawValue) \($0.weight.lossSum.bitPattern)" }.joined(separator: ","),
                    "logs": String(decoding: try JSONEncoder().encode(logs), as: UTF8.self)]
        let w = try SafetensorsWriter(tensors: tensors, metadata: meta, path: blockPath(l))
        try w.write(to: blockPath(l), overwrite: true) { t, sink in try data[t.name]!(sink) }
        let acts = xs.enumerated().map { SafetensorsWriter.Tensor(name: "x\($0.offset)", dtype: .f32, shape: $0.element.shape) }
        let a = try SafetensorsWriter(tensors: acts, metadata: ["after_block": "\(l)"], path: actsPath(l))
        try a.write(to: actsPath(l), overwrite: true) { t, sink in
            try xs[Int(t.name.dropFirst())!].data.withUnsafeBytes { try sink.write($0) }
        }
        blocksDone = l + 1
        try writeState()
        if l > 0 { try? FileManager.default.removeItem(atPath: actsPath(l - 1)) }
    }

    /// The finished blocks' modules and the next block's inputs (nil when no block is finished).
    /// With `materialize` false a module's `q` stays empty unless it was saved (the codes give it
    /// back: `QuantizedWeight.fakeQuantized`).
    func load(minOffset: Bool, windows: Int, materialize: Bool = true) throws -> (modules: [DecoderConvert.Module], inputs: [FloatTensor])? {
        guard blocksDone > 0 else { return nil }
        var modules: [DecoderConvert.Module] = []
        for l in 0..<blocksDone {
            let f = try SafetensorsFile(path: blockPath(l))
            guard let list = f.metadata["modules"], let logText = f.metadata["logs"],
                  let logs = try? JSONDecoder().decode([ConvertModuleLog].self, from: Data(logText.utf8)) else {
                throw ConvertError.workState(path: blockPath(l), problem: "the saved block is damaged; start over with --force")
            }
            let entries = list.split(separator: ",").map { $0.split(separator: " ") }
            guard entries.count == logs.count else {
                throw ConvertError.workState(path: blockPath(l), problem: "the saved block is damaged; start over with --force")
            }
            for (k, e) in entries.enumerated() {
                guard e.count == 3, let layer = Int(e[0]), let linear = DecoderLinear(rawValue: String(e[1])), let bits = UInt64(e[2]) else {
                    throw ConvertError.workState(path: blockPath(l), problem: "the saved block is damaged; start over with --force")
                }
                let p = "m\(k)."
                let codes = try f.view(p + "codes"), scale = try f.view(p + "scale")
                let rows = codes.info.shape[0], columns = codes.info.shape[1], groups = scale.info.shape[1]
                var w = QuantizedWeight(rows: rows, columns: columns, q: [], codes: Array(codes.bytes),
                                        scale: Kernels.floats(scale), zero: Kernels.floats(try f.view(p + "zero")), groups: groups,
                                        gIdx: try f.view(p + "g_idx").bytes.withMemoryRebound(to: Int32.self) { Array($0) },
                                        lossSum: Double(bitPattern: bits))
                if f.info(p + "q") != nil { w.q = Kernels.floats(try f.view(p + "q")) }
                else if materialize { w.q = w.dequantized(minOffset: minOffset) }
                modules.append(DecoderConvert.Module(layer: layer, linear: linear, weight: w, log: logs[k]))
            }
        }
        let a = try SafetensorsFile(path: actsPath(blocksDone - 1))
        guard a.metadata["after_block"] == "\(blocksDone - 1)" else {
            throw ConvertError.workState(path: actsPath(blocksDone - 1), problem: "the saved activations do not belong to block \(blocksDone - 1); start over with --force")
        }
        let inputs = try (0..<windows).map { i -> FloatTensor in
            let v = try a.view("x\(i)")
            return FloatTensor(shape: v.info.shape, data: Kernels.floats(v))
        }
        return (modules, inputs)
    }

    /// The run finished (its output is in place): the state is no longer needed.
    func remove() { work.remove() }

    /// The run failed: a folder this run made and that holds no finished block goes too.
    func failed() { if work.fresh && blocksDone == 0 { remove() } }
}

extension QuantizedWeight {
    /// The fake-quantized weight GPTQ's codes stand for (`Quantizer.value`, the step
    /// `Quantizer.quantize` ends with, so the two agree bit for bit by construction).
    func dequantized(minOffset: Bool) -> [Float] {
        var q = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for c in 0..<columns {
                let g = r * groups + Int(gIdx[c])
                q[r * columns + c] = Quantizer.value(code: Float(codes[r * columns + c]), scale: scale[g],
                                                     zeroOrOffset: zero[g], minOffset: minOffset)
            }
        }
        return q
    }

    /// Whether the codes give back `values` bit for bit.
    func codesGiveBack(_ values: [Float], minOffset: Bool) -> Bool {
        dequantized(minOffset: minOffset).elementsEqualBitwise(values)
    }

    /// `q`, or the codes' values when `q` was dropped (`dropFakeQuantized`).
    func fakeQuantized(minOffset: Bool) -> [Float] { q.isEmpty ? dequantized(minOffset: minOffset) : q }

    /// Frees `q` when the codes give it back (a text conversion keeps codes only for finished blocks:
    /// one float32 copy of every weight less; docs/QUANTIZING.md "Memory").
    mutating func dropFakeQuantized(minOffset: Bool) {
        if !q.isEmpty && codesGiveBack(q, minOffset: minOffset) { q = [] }
    }
}

extension Array where Element == Float {
    func elementsEqualBitwise(_ other: [Float]) -> Bool {
        count == other.count && zip(self, other).allSatisfy { $0.bitPattern == $1.bitPattern }
    }
}
