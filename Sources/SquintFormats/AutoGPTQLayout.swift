/// The tensors of one AutoGPTQ v1 ("gptq" checkpoint format) quantized module (SPEC §2.2, §5.4).
public struct AutoGPTQModule {
    /// I32 [in/8, out]: nibble j of qweight[r, o] is the code of input 8r + j (low nibble = lowest input).
    public let qweight: TensorView
    /// I32 [groups, out/8]: nibble j of qzeros[g, c] is zero(g, 8c + j) MINUS ONE (the v1 quirk).
    public let qzeros: TensorView
    /// F16 [groups, out].
    public let scales: TensorView
    /// I32 [in]: group of each input.
    public let gIdx: TensorView
    /// F16 [out]; AutoGPTQ always stores one (zeros when the layer had none). nil only if absent.
    public let bias: TensorView?

    public init(qweight: TensorView, qzeros: TensorView, scales: TensorView, gIdx: TensorView, bias: TensorView?) {
        self.qweight = qweight; self.qzeros = qzeros; self.scales = scales; self.gIdx = gIdx; self.bias = bias
    }

    public var views: [TensorView] { [qweight, qzeros, scales, gIdx, bias].compactMap { $0 } }
}

/// Lossless conversion between AutoGPTQ v1 tensors and SQ4 quantized-linear records
/// (Formats/SQUINT_INT4.md §5). No requantisation: every code, scale bit, zero and bias bit is kept,
/// and SQ4 -> AutoGPTQ gives back the original bytes.
///
/// Quirk handled here and only here: AutoGPTQ v1 stores each zero point minus one (`qzeros` nibble
/// `zst`, real zero `zst + 1`, so 1...16); SQ4 stores the zero itself.
public enum AutoGPTQLayout {
    public static let suffixes = (qweight: ".qweight", qzeros: ".qzeros", scales: ".scales", gIdx: ".g_idx", bias: ".bias")

    /// The module `prefix` (e.g. `transformer.h.0.mlp.c_proj`) of an AutoGPTQ checkpoint.
    public static func module(in file: TensorFile, prefix: String) throws -> AutoGPTQModule {
        let hasBias = file.info(prefix + suffixes.bias) != nil
        return AutoGPTQModule(qweight: try file.view(prefix + suffixes.qweight), qzeros: try file.view(prefix + suffixes.qzeros),
                              scales: try file.view(prefix + suffixes.scales), gIdx: try file.view(prefix + suffixes.gIdx),
                              bias: hasBias ? try file.view(prefix + suffixes.bias) : nil)
    }

    static func i32(_ v: TensorView, _ i: Int) -> UInt32 {
        UInt32(littleEndian: v.bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
    }

    /// AutoGPTQ -> SQ4 record named `name`. Checks the shapes against each other, that `g_idx` is
    /// either `i / g` or an act-order assignment with exactly `g` inputs per group.
    public static func toSQ4(_ m: AutoGPTQModule, name: String, path: String) throws -> QuantizedLinearRecord {
        let a = try analyze(m, name: name, path: path)
        let (inF, out, groups, perm, trivial, zeros, symmetric, spec) = (a.inF, a.out, a.groups, a.perm, a.trivial, a.zeros, a.symmetric, a.spec)
        // Codes: code(o, k) = q[perm[k], o], SQ4 block order.
        let rowBytes = inF / 2
        var codes = [UInt8](repeating: 0, count: out * rowBytes)
        codes.withUnsafeMutableBufferPointer { c in
            for k in 0..<inF {
                let i = perm[k]
                let byteInRow = (k / 32) * 16 + (k % 16), shift: UInt8 = (k % 32) < 16 ? 0 : 4
                let srcShift = 4 * UInt32(i % 8)
                let rowBase = (i / 8) * out
                for o in 0..<out {
                    let q = UInt8((i32(m.qweight, rowBase + o) >> srcShift) & 0xF)
                    c[o * rowBytes + byteInRow] |= q << shift
                }
            }
        }
        // Scales transposed [groups, out] -> [out, groups], F16 bits copied.
        var scales = [UInt16](repeating: 0, count: out * groups)
        for q in 0..<groups {
            for o in 0..<out {
                scales[o * groups + q] = UInt16(littleEndian: m.scales.bytes.loadUnaligned(fromByteOffset: 2 * (q * out + o), as: UInt16.self))
            }
        }
        var bias: TensorView? = nil
        if let b = m.bias {
            bias = OwnedBytes.view(name: spec.biasName, dtype: b.info.dtype, shape: [out], Array(b.bytes))
        }
        return try QuantizedLinearRecord(
            spec: spec,
            codes: OwnedBytes.view(name: spec.codesName, dtype: .u8, shape: [out, rowBytes], codes),
            scales: OwnedBytes.view(name: spec.scalesName, dtype: .f16, shape: [out, groups], scales),
            zeros: symmetric ? nil : OwnedBytes.view(name: spec.zerosName, dtype: .u8, shape: [out, groups], zeros),
            perm: trivial ? nil : OwnedBytes.view(name: spec.permName, dtype: .i32, shape: [inF], perm.map { Int32($0).littleEndian }),
            bias: bias, path: path)
    }

    /// The SQ4 declaration the module converts to, reading only shapes, `qzeros` and `g_idx` (cheap:
    /// lets a whole-checkpoint conversion lay out the file before converting any codes).
    public static func spec(of m: AutoGPTQModule, name: String, path: String) throws -> QuantizedLinearSpec {
        try analyze(m, name: name, path: path).spec
    }

    private struct Analysis {
        var inF: Int, out: Int, groups: Int, perm: [Int], trivial: Bool, zeros: [UInt8], symmetric: Bool, spec: QuantizedLinearSpec
    }

    /// Shapes, g_idx (trivial or act order) and zero points of a module, checked.
    private static func analyze(_ m: AutoGPTQModule, name: String, path: String) throws -> Analysis {
        func bad(_ w: String) -> FormatError { .invalid(path: path, what: "AutoGPTQ module '\(name)': \(w)") }
        let qs = m.qweight.info.shape, zs = m.qzeros.info.shape, ss = m.scales.info.shape
        guard m.qweight.info.dtype == .i32, qs.count == 2, m.qzeros.info.dtype == .i32, zs.count == 2,
              m.scales.info.dtype == .f16, ss.count == 2, m.gIdx.info.dtype == .i32, m.gIdx.info.shape.count == 1 else {
            throw bad("expected qweight I32 [in/8, out], qzeros I32 [groups, out/8], scales F16 [groups, out], g_idx I32 [in]")
        }
        let inF = qs[0] * 8, out = qs[1], groups = ss[0]
        guard out >= 1, groups >= 1, ss[1] == out, zs[0] == groups, zs[1] * 8 == out, m.gIdx.info.shape[0] == inF,
              inF % groups == 0 else {
            throw bad("shapes disagree: qweight \(qs), qzeros \(zs), scales \(ss), g_idx \(m.gIdx.info.shape)")
        }
        let g = inF / groups
        // g_idx: trivial, or act order with exactly g inputs per group (perm = stable argsort).
        var gidx = [Int](repeating: 0, count: inF)
        var counts = [Int](repeating: 0, count: groups)
        var trivial = true
        for i in 0..<inF {
            let v = Int(Int32(bitPattern: i32(m.gIdx, i)))
            guard v >= 0, v < groups else { throw bad("g_idx[\(i)] = \(v) is not a group index 0..<\(groups)") }
            gidx[i] = v; counts[v] += 1
            if v != i / g { trivial = false }
        }
        if let bad_ = counts.firstIndex(where: { $0 != g }) {
            throw FormatError.unsupported(path: path, what: "AutoGPTQ module '\(name)': group \(bad_) has \(counts[bad_]) inputs in g_idx; "
                + "SQ4 needs exactly \(g) per group")
        }
        var perm = Array(0..<inF)
        if !trivial {
            var start = [Int](repeating: 0, count: groups)
            for q in 1..<max(groups, 1) { start[q] = start[q - 1] + counts[q - 1] }
            for i in 0..<inF { perm[start[gidx[i]]] = i; start[gidx[i]] += 1 }   // stable counting sort
        }
        // Zero points: zst + 1.
        var zeros = [UInt8](repeating: 0, count: out * groups)
        var symmetric = true
        for q in 0..<groups {
            for o in 0..<out {
                let z = UInt8((i32(m.qzeros, q * (out / 8) + o / 8) >> (4 * UInt32(o % 8))) & 0xF) + 1
                zeros[o * groups + q] = z
                if z != 8 { symmetric = false }
            }
        }
        let spec = QuantizedLinearSpec(name: name, outFeatures: out, inFeatures: inF, groupSize: g, symmetric: symmetric,
                                       actOrder: !trivial, hasBias: m.bias != nil)
        if let p = spec.shapeProblem() { throw FormatError.unsupported(path: path, what: p) }
        if let b = m.bias, b.info.shape != [out] { throw bad("bias has shape \(b.info.shape), expected [\(out)]") }
        return Analysis(inF: inF, out: out, groups: groups, perm: perm, trivial: trivial, zeros: zeros, symmetric: symmetric, spec: spec)
    }

    /// SQ4 record -> AutoGPTQ v1 tensors (named `spec.name + .qweight` ...). Refuses what v1 cannot
    /// hold: `out % 8 != 0`, a zero point of 0 (v1 stores zero - 1 in a nibble).
    public static func toAutoGPTQ(_ r: QuantizedLinearRecord, path: String) throws -> AutoGPTQModule {
        let s = r.spec
        let out = s.outFeatures, inF = s.inFeatures, groups = s.groups, g = s.groupSize
        guard out % 8 == 0 else {
            throw FormatError.unsupported(path: path, what: "linear '\(s.name)': AutoGPTQ packs 8 outputs per qzeros word; out \(out) is not a multiple of 8")
        }
        var perm = Array(0..<inF)
        if let p = r.perm {
            for k in 0..<inF { perm[k] = Int(Int32(littleEndian: p.bytes.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self))) }
        }
        var qweight = [UInt32](repeating: 0, count: inF / 8 * out)
        for k in 0..<inF {
            let i = perm[k]
            for o in 0..<out { qweight[(i / 8) * out + o] |= UInt32(r.code(o, k)) << (4 * UInt32(i % 8)) }
        }
        var gIdx = [Int32](repeating: 0, count: inF)
        for k in 0..<inF { gIdx[perm[k]] = Int32(k / g) }
        var qzeros = [UInt32](repeating: 0, count: groups * out / 8)
        for q in 0..<groups {
            for o in 0..<out {
                let z = r.zeros.map { $0.bytes[o * groups + q] } ?? 8
                guard z >= 1 else {
                    throw FormatError.unsupported(path: path, what: "linear '\(s.name)': zero point 0 at [\(o), \(q)] cannot be stored "
                        + "in AutoGPTQ v1 (it stores zero - 1 in 4 bits)")
                }
                qzeros[q * (out / 8) + o / 8] |= UInt32(z - 1) << (4 * UInt32(o % 8))
            }
        }
        var scales = [UInt16](repeating: 0, count: groups * out)
        for o in 0..<out {
            for q in 0..<groups {
                scales[q * out + o] = UInt16(littleEndian: r.scales.bytes.loadUnaligned(fromByteOffset: 2 * (o * groups + q), as: UInt16.self))
            }
        }
        let n = s.name
        return AutoGPTQModule(
            qweight: OwnedBytes.view(name: n + suffixes.qweight, dtype: .i32, shape: [inF / 8, out], qweight.map { $0.littleEndian }),
            qzeros: OwnedBytes.view(name: n + suffixes.qzeros, dtype: .i32, shape: [groups, out / 8], qzeros.map { $0.littleEndian }),
            scales: OwnedBytes.view(name: n + suffixes.scales, dtype: .f16, shape: [groups, out], scales.map { $0.littleEndian }),
            gIdx: OwnedBytes.view(name: n + suffixes.gIdx, dtype: .i32, shape: [inF], gIdx.map { $0.littleEndian }),
            bias: r.bias.map { OwnedBytes.view(name: n + suffixes.bias, dtype: $0.info.dtype, shape: $0.info.shape, Array($0.bytes)) })
    }

    /// Converts a whole AutoGPTQ v1 checkpoint (one file or a sharded folder, any `TensorFile`) to an
    /// SQ4 file: every module with a `.qweight` becomes a quantized-linear record (its `.bias` moves
    /// into the record), every other tensor is copied unchanged as a dense tensor, in source order.
    /// Streams one module at a time, so the model is never in memory twice: a first pass reads only
    /// shapes, qzeros and g_idx (`spec(of:)`) to lay out the file; codes are converted while writing.
    public static func convertCheckpoint(_ source: TensorFile, header: SQ4Header, to destination: String,
                                         overwrite: Bool) throws {
        let names = Set(source.tensors.map(\.name))
        var modules: [String: QuantizedLinearSpec] = [:]
        var tensors: [SquintInt4Writer.Tensor] = []
        var specs: [QuantizedLinearSpec] = []
        var partOfModule = Set<String>()
        for t in source.tensors where t.name.hasSuffix(suffixes.qweight) {
            let prefix = String(t.name.dropLast(suffixes.qweight.count))
            for s in [suffixes.qweight, suffixes.qzeros, suffixes.scales, suffixes.gIdx, suffixes.bias] where names.contains(prefix + s) {
                partOfModule.insert(prefix + s)
            }
        }
        for t in source.tensors {
            if t.name.hasSuffix(suffixes.qweight) {
                let prefix = String(t.name.dropLast(suffixes.qweight.count))
                let spec = try self.spec(of: module(in: source, prefix: prefix), name: prefix, path: source.path)
                modules[prefix] = spec
                specs.append(spec)
                tensors += spec.expectedTensors().map { e in
                    .init(name: e.name, dtype: e.dtype ?? source.info(prefix + suffixes.bias)!.dtype, shape: e.shape)
                }
            } else if !partOfModule.contains(t.name) {
                tensors.append(.init(name: t.name, dtype: t.dtype, shape: t.shape))
            }
        }
        let writer = try SquintInt4Writer(header: header, linears: specs, tensors: tensors, path: destination)
        var current: (prefix: String, views: [String: TensorView])? = nil
        try writer.write(to: destination, overwrite: overwrite) { t, sink in
            if let c = current, let v = c.views[t.name] { try sink.write(v.bytes); return }
            if let prefix = QuantizedLinearSpec.quantSuffixes.first(where: { t.name.hasSuffix($0) }).map({ String(t.name.dropLast($0.count)) }),
               modules[prefix] != nil {
                let rec = try toSQ4(module(in: source, prefix: prefix), name: prefix, path: source.path)
                current = (prefix, Dictionary(uniqueKeysWithValues: rec.views.map { ($0.info.name, $0) }))
                try sink.write(current!.views[t.name]!.bytes)
                return
            }
            try sink.write(try source.view(t.name).bytes)
        }
    }

    /// SPEC §5.5 in float32, straight from the AutoGPTQ tensors: W[o, i] = scale * (q - (zst + 1)),
    /// returned as the nn.Linear weight [out, in]. The reference the SQ4 dequantisation is tested against.
    public static func dequantize(_ m: AutoGPTQModule, f16ToF32: (UInt16) -> Float) -> [Float] {
        let inF = m.qweight.info.shape[0] * 8, out = m.qweight.info.shape[1]
        var w = [Float](repeating: 0, count: out * inF)
        for i in 0..<inF {
            let g = Int(Int32(bitPattern: i32(m.gIdx, i)))
            for o in 0..<out {
                let q = Int((i32(m.qweight, (i / 8) * out + o) >> (4 * UInt32(i % 8))) & 0xF)
                let zst = Int((i32(m.qzeros, g * (out / 8) + o / 8) >> (4 * UInt32(o % 8))) & 0xF)
                let s = f16ToF32(UInt16(littleEndian: m.scales.bytes.loadUnaligned(fromByteOffset: 2 * (g * out + o), as: UInt16.self)))
                w[o * inF + i] = s * Float(q - (zst + 1))
            }
        }
        return w
    }
}
