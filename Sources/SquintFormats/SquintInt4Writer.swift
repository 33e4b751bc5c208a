/// Writes an SQ4 file (Formats/SQUINT_INT4.md): tensors in the order given, each aligned by §1.2,
/// streamed one by one (the 9.6B-parameter model never has to be in memory twice), checksums computed
/// as the bytes pass and filled into the fixed-width header fields at the end, then an atomic rename.
///
/// Deterministic: the layout is a pure function of the header, the linears and the tensor list, the
/// JSON is written by `JSONValue.compactText` rules, and nothing time-dependent is recorded, so the
/// same input gives byte-identical files (STYLE habit 13).
public struct SquintInt4Writer {
    public typealias Tensor = SafetensorsWriter.Tensor

    public let header: SQ4Header
    public let linears: [QuantizedLinearSpec]
    /// Tensors in file order with their data-section offsets.
    public let layout: [(tensor: Tensor, offset: Int, length: Int)]
    /// N: the JSON header's padded length.
    public let headerLength: Int
    /// D: where the data section starts.
    public var dataSectionOffset: Int { SQ4.roundUp(SQ4.preludeSize + headerLength, SQ4.pageAlignment)! }
    public var fileSize: Int { dataSectionOffset + (layout.last.map { $0.offset + $0.length } ?? 0) }
    let path: String

    /// Checks everything the reader will (names unique and valid, sizes fit, every linear's tensors
    /// present with their dtype and shape, no orphans, vocab tensor) and fixes the layout.
    /// `path` only names the file in errors.
    public init(header: SQ4Header, linears: [QuantizedLinearSpec], tensors: [Tensor], path: String = "<SQ4 writer>") throws {
        func bad(_ w: String) -> FormatError { .invalid(path: path, what: w) }
        guard header.quantization.bits == 4 else { throw bad("SQ4 version 1 writes 4-bit codes only") }
        guard case .object = header.config else { throw bad("config must be a JSON object") }
        if let g = header.generationConfig { guard case .object = g else { throw bad("generation_config must be a JSON object") } }
        for s in [header.tokenizer.qwenTiktokenSHA256, header.provenance.sourceSHA256].compactMap({ $0 }) {
            guard s.utf8.count == 64, s.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                throw bad("checksum \"\(s)\" must be 64 lowercase hex digits")
            }
        }
        var seenLinear = Set<String>()
        for l in linears {
            if let p = l.shapeProblem() { throw bad(p) }
            guard seenLinear.insert(l.name).inserted else { throw bad("linear '\(l.name)' is given twice") }
        }
        for t in tensors {
            guard !t.name.isEmpty, !t.name.utf8.contains(0) else { throw bad("cannot write a tensor named \"\(t.name)\"") }
            guard t.byteCount != nil else { throw bad("tensor '\(t.name)': shape \(t.shape) overflows a 64-bit byte count") }
        }
        try SQ4HeaderParser.checkRecords(linears, tensors: tensors.map { ($0.name, $0.dtype, $0.shape) },
                                         vocabTensor: header.tokenizer.vocabTensor, path: path,
                                         tokenizerJSONTensor: header.tokenizer.tokenizerJSONTensor)
        var end = 0
        var layout: [(tensor: Tensor, offset: Int, length: Int)] = []
        for t in tensors {
            let n = t.byteCount!
            guard let o = SQ4.roundUp(end, SQ4.alignment(forLength: n)), !o.addingReportingOverflow(n).overflow else {
                throw bad("total data size overflows 64 bits")
            }
            layout.append((t, o, n))
            end = o + n
        }
        self.header = header; self.linears = linears; self.layout = layout; self.path = path
        headerLength = Self.headerBytes(header: header, linears: linears, layout: layout,
                                        crcs: [UInt32](repeating: 0, count: layout.count)).count
    }

    /// The tensors of a record, in the order `QuantizedLinearRecord.views` lists them.
    public static func tensors(for record: QuantizedLinearRecord) -> [Tensor] {
        record.views.map { Tensor(name: $0.info.name, dtype: $0.info.dtype, shape: $0.info.shape) }
    }

    /// The padded JSON header; its length does not depend on the checksums (fixed-width hex).
    static func headerBytes(header: SQ4Header, linears: [QuantizedLinearSpec],
                            layout: [(tensor: Tensor, offset: Int, length: Int)], crcs: [UInt32]) -> [UInt8] {
        let q = header.quantization
        var damp = "\(q.dampPercent)"
        if damp.hasSuffix(".0") { damp.removeLast(2) }
        func opt(_ s: String?) -> String { s.map(JSONText.quoted) ?? "null" }
        let v2 = header.version >= 2
        var j = "{\"format\":\"SQ4\",\"config\":" + header.config.compactText
        if v2 { j += ",\"generation_config\":" + (header.generationConfig?.compactText ?? "null") }
        j += ",\"quantization\":{\"bits\":\(q.bits),\"group_size\":\(q.groupSize),\"sym\":\(q.sym),\"desc_act\":\(q.descAct)"
        j += ",\"static_groups\":\(q.staticGroups),\"damp_percent\":\(damp),\"true_sequential\":\(q.trueSequential)"
        j += ",\"method\":\"\(q.method.rawValue)\"}"
        j += ",\"tokenizer\":{\"qwen_tiktoken_sha256\":\(opt(header.tokenizer.qwenTiktokenSHA256)),\"vocab_tensor\":\(opt(header.tokenizer.vocabTensor))"
        if v2 {
            j += ",\"tokenizer_json_tensor\":\(opt(header.tokenizer.tokenizerJSONTensor)),\"chat_template\":\(opt(header.tokenizer.chatTemplate))"
        }
        j += "}"
        let p = header.provenance
        j += ",\"provenance\":{\"source\":\(JSONText.quoted(p.source)),\"source_sha256\":\(opt(p.sourceSHA256))"
        j += ",\"calibration\":\(JSONText.quoted(p.calibration)),\"tool\":\(JSONText.quoted(p.tool))}"
        j += ",\"linears\":[" + linears.map { l in
            "{\"name\":\(JSONText.quoted(l.name)),\"out\":\(l.outFeatures),\"in\":\(l.inFeatures),\"group_size\":\(l.groupSize)"
                + ",\"zeros\":\"\(l.symmetric ? "symmetric" : "explicit")\",\"act_order\":\(l.actOrder),\"bias\":\(l.hasBias)}"
        }.joined(separator: ",") + "]"
        j += ",\"tensors\":[" + zip(layout, crcs).map { e, c in
            "{\"name\":\(JSONText.quoted(e.tensor.name)),\"dtype\":\"\(e.tensor.dtype.rawValue)\",\"shape\":["
                + e.tensor.shape.map(String.init).joined(separator: ",")
                + "],\"offset\":\(e.offset),\"length\":\(e.length),\"crc32\":\"\(SQ4.hex8(c))\"}"
        }.joined(separator: ",") + "]}"
        var b = Array(j.utf8)
        b.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - b.count % 8) % 8))
        return b
    }

    static func prelude(version: UInt32, headerLength: Int, headerCRC: UInt32) -> [UInt8] {
        var b = SQ4.magic
        func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
        le(version); le(UInt32(0)); le(UInt64(headerLength)); le(headerCRC); le(UInt32(0))
        return b
    }

    /// Writes the file. `data` is called once per tensor, in `layout` order, and must pass exactly the
    /// tensor's bytes to the sink (in pieces if it likes). On any error the destination is untouched.
    public func write(to destination: String, overwrite: Bool, data: (Tensor, TensorSink) throws -> Void) throws {
        let out = try AtomicFileWriter(destination: destination, overwrite: overwrite)
        do {
            let placeholder = Self.headerBytes(header: header, linears: linears, layout: layout,
                                               crcs: [UInt32](repeating: 0, count: layout.count))
            try out.write(Self.prelude(version: header.version, headerLength: placeholder.count, headerCRC: 0))
            try out.write(placeholder)
            try out.writeZeros(dataSectionOffset - out.bytesWritten)
            var crcs: [UInt32] = []
            crcs.reserveCapacity(layout.count)
            for (t, o, n) in layout {
                try out.writeZeros(dataSectionOffset + o - out.bytesWritten)
                let sink = TensorSink(out: out, tensor: t, expected: n, path: destination)
                sink.crc = 0
                try data(t, sink)
                guard sink.remaining == 0 else {
                    throw FormatError.invalid(path: destination, what: "tensor '\(t.name)' needs \(n) bytes but \(n - sink.remaining) were given")
                }
                crcs.append(sink.crc!)
            }
            let final = Self.headerBytes(header: header, linears: linears, layout: layout, crcs: crcs)
            precondition(final.count == placeholder.count, "SQ4 header length changed when checksums were filled in")
            let crc = final.withUnsafeBytes { SQ4.crc32($0) }
            try out.patch(Self.prelude(version: header.version, headerLength: final.count, headerCRC: crc) + final, at: 0)
            try out.commit()
        } catch {
            out.abandon()
            throw error
        }
    }

    /// Convenience: the bytes of each tensor from views (records, dense tensors of another file).
    public func write(to destination: String, overwrite: Bool, views: [String: TensorView]) throws {
        try write(to: destination, overwrite: overwrite) { t, sink in
            guard let v = views[t.name] else { throw FormatError.missingTensor(path: destination, name: t.name) }
            try sink.write(v.bytes)
        }
    }
}
