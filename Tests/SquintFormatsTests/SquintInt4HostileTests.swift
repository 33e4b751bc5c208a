import CSquintKernels
import Foundation
import TestSupport
import XCTest
@testable import SquintFormats

/// One hostile file per SQ4 reader rule (Formats/SQUINT_INT4.md): each is refused with the right
/// FormatError case naming the file and the problem. Built at run time from a valid file.
final class SquintInt4HostileTests: XCTestCase {
    let dir = TempDir()
    lazy var valid: [UInt8] = {
        let p = dir.path + "/valid.sq4"
        _ = try! SQ4Fixture.write(p)
        return [UInt8](try! Data(contentsOf: URL(fileURLWithPath: p)))
    }()

    private func u64(_ b: [UInt8], _ o: Int) -> Int { Int(b[o..<o + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) }
    private func put<T: FixedWidthInteger>(_ v: T, into b: inout [UInt8], at o: Int) {
        withUnsafeBytes(of: v.littleEndian) { for (i, x) in $0.enumerated() { b[o + i] = x } }
    }
    private var headerLength: Int { u64(valid, 16) }
    private var dataStart: Int { (32 + headerLength + 4095) / 4096 * 4096 }
    private var json: String { String(decoding: valid[32..<32 + headerLength], as: UTF8.self).trimmingCharacters(in: .whitespaces) }

    /// The valid file with its JSON header replaced (CRC recomputed, the data section kept where it is
    /// when the new header fits, else moved to the new D).
    private func withHeader(_ text: String, data: [UInt8]? = nil) -> [UInt8] {
        var h = Array(text.utf8)
        h += [UInt8](repeating: 0x20, count: (8 - h.count % 8) % 8)
        if h.count < headerLength { h += [UInt8](repeating: 0x20, count: headerLength - h.count) }
        var b = Array(valid[0..<32])
        put(UInt64(h.count), into: &b, at: 16)
        put(sq_crc32(0, h, h.count), into: &b, at: 24)
        b += h
        let d = (32 + h.count + 4095) / 4096 * 4096
        b += [UInt8](repeating: 0, count: d - b.count)
        b += data ?? Array(valid[dataStart...])
        return b
    }

    /// Replaces the first `"field":value` after `"name":"tensor"` in the JSON.
    private func editTensor(_ tensor: String, _ field: String, _ value: String, in base: String? = nil) -> String {
        let s = base ?? json
        guard let at = s.range(of: "\"name\":\(JSONText.quoted(tensor))") else { fatalError("no tensor \(tensor) in \(s.prefix(300))") }
        let f = s.range(of: "\"\(field)\":", range: at.upperBound..<s.endIndex)!
        var end = f.upperBound
        var depth = 0
        while end < s.endIndex {
            let c = s[end]
            if c == "[" { depth += 1 } else if c == "]" { if depth == 0 { break }; depth -= 1; if depth == 0 { end = s.index(after: end); break } }
            else if (c == "," || c == "}") && depth == 0 { break }
            end = s.index(after: end)
        }
        return s.replacingCharacters(in: f.upperBound..<end, with: value)
    }

    private func refuse(_ bytes: [UInt8], _ kind: String, mentioning: String, line: UInt = #line) {
        let p = dir.write("hostile-\(line).sq4", bytes)
        assertFormatError(try SquintInt4File(path: p), kind, path: p, mentioning: mentioning, line: line)
    }

    private func offsetOf(_ tensor: String) throws -> (offset: Int, length: Int, index: Int) {
        let f = try SquintInt4File(path: dir.write("probe.sq4", valid))
        let i = f.table.firstIndex { $0.name == tensor }!
        return (f.table[i].offset, f.table[i].length, i)
    }

    func testTheUnmodifiedFileIsAccepted() throws {
        XCTAssertNoThrow(try SquintInt4File(path: dir.write("ok.sq4", valid)).verify())
        XCTAssertNoThrow(try SquintInt4File(path: dir.write("ok2.sq4", withHeader(json))))   // the helper itself keeps files valid
    }

    // MARK: prelude

    func testTruncatedAtManyOffsetsIsRefusedAsTruncated() throws {
        // Every byte of the prelude and header, then a sample of the padding and the data.
        var cuts = Array(0..<(32 + headerLength + 1))
        cuts += stride(from: 32 + headerLength + 1, to: dataStart + 200, by: 61)
        cuts += stride(from: dataStart + 200, to: valid.count, by: 997)
        cuts.append(valid.count - 1)
        for n in cuts {
            let p = dir.write("cut.sq4", Array(valid[..<n]))
            let expected = n < 32 ? "needs bytes" : n < 32 + headerLength ? "JSON header" : n < dataStart ? "padding" : "needs data bytes"
            assertFormatError(try SquintInt4File(path: p), "truncated", path: p, mentioning: expected)
        }
    }

    func testBadMagicVersionFlagsAndReserved() {
        var b = valid; b[0] = UInt8(ascii: "X")
        refuse(b, "invalid", mentioning: "not an SQ4 file")
        b = valid; put(UInt32(3), into: &b, at: 8)
        refuse(b, "unsupported", mentioning: "SQ4 version 3")
        b = valid; put(UInt32(1), into: &b, at: 12)
        refuse(b, "unsupported", mentioning: "flags")
        b = valid; put(UInt32(7), into: &b, at: 28)
        refuse(b, "invalid", mentioning: "reserved field")
        refuse(Array("{\"__metadata__\":{}}     ".utf8), "invalid", mentioning: "not an SQ4 file")   // a safetensors-like file
    }

    // MARK: version 2 members

    /// The valid file as version 2 with the given `generation_config` and tokenizer members (JSON text).
    private func version2(generation: String? = "{\"top_p\":0.8,\"do_sample\":true}", jsonTensor: String = "null",
                          template: String = "\"<|im_start|>{{x}}\"", version: UInt32 = 2) -> [UInt8] {
        var j = json
        if let generation { j = j.replacingOccurrences(of: ",\"quantization\":", with: ",\"generation_config\":\(generation),\"quantization\":") }
        j = j.replacingOccurrences(of: "\"vocab_tensor\":\"tokenizer.qwen_tiktoken\"}",
                                   with: "\"vocab_tensor\":\"tokenizer.qwen_tiktoken\",\"tokenizer_json_tensor\":\(jsonTensor),\"chat_template\":\(template)}")
        var b = withHeader(j)
        put(version, into: &b, at: 8)
        return b
    }

    func testVersion2MembersAreReadAndCheckedByKind() throws {
        let ok = try SquintInt4File(path: dir.write("v2.sq4", version2(jsonTensor: "\"tokenizer.qwen_tiktoken\"")))
        XCTAssertEqual(ok.version, 2)
        XCTAssertEqual(ok.header.generationConfig?["top_p"], .double(0.8, text: "0.8"))
        XCTAssertEqual(ok.header.tokenizer.chatTemplate, "<|im_start|>{{x}}")
        XCTAssertEqual(ok.header.tokenizer.tokenizerJSONTensor, "tokenizer.qwen_tiktoken")
        XCTAssertNoThrow(try SquintInt4File(path: dir.write("v2null.sq4", version2(generation: "null", template: "null"))))
        refuse(version2(generation: "3"), "invalid", mentioning: "generation_config must be an object or null")
        refuse(version2(generation: "[1]"), "invalid", mentioning: "generation_config must be an object or null")
        refuse(version2(generation: nil), "invalid", mentioning: "lacks \"generation_config\"")
        refuse(version2(template: "5"), "invalid", mentioning: "tokenizer.chat_template must be a string")
        refuse(version2(jsonTensor: "\"nope\""), "invalid", mentioning: "tokenizer.tokenizer_json_tensor 'nope' must name a rank-1 U8 tensor")
        let f16 = try XCTUnwrap(try SquintInt4File(path: dir.write("probe2.sq4", valid)).table.first { $0.dtype != .u8 }).name
        refuse(version2(jsonTensor: JSONText.quoted(f16)), "invalid", mentioning: "must name a rank-1 U8 tensor")
        refuse(version2(jsonTensor: "7"), "invalid", mentioning: "tokenizer.tokenizer_json_tensor must be a string")
        // Version 1 files do not have these members: refused as unknown, not silently read.
        refuse(version2(version: 1), "invalid", mentioning: "unknown member \"generation_config\"")
    }

    /// A writer records version 2 only when a version-2 member is set; both read back equal.
    func testWriterChoosesTheVersionByTheMembersUsed() throws {
        var h = try SQ4Fixture.header()
        XCTAssertEqual(h.version, 1)
        h.generationConfig = .object([("top_k", .integer(20))])
        h.tokenizer.chatTemplate = "t"
        XCTAssertEqual(h.version, 2)
        let w = try SquintInt4Writer(header: h, linears: [], tensors: [.init(name: "tokenizer.qwen_tiktoken", dtype: .u8, shape: [3])], path: "x")
        let p = dir.path + "/w2.sq4"
        try w.write(to: p, overwrite: false) { _, sink in try [UInt8]([1, 2, 3]).withUnsafeBytes { try sink.write($0) } }
        let f = try SquintInt4File(path: p)
        XCTAssertEqual(f.version, 2)
        XCTAssertEqual(f.header, h)
        XCTAssertThrowsError(try SquintInt4Writer(header: { var x = h; x.generationConfig = .integer(1); return x }(), linears: [], tensors: []))
    }

    func testHeaderLengthOutsideTheCapOrUnalignedIsRefused() {
        var b = valid; put(UInt64(1) << 40, into: &b, at: 16)
        refuse(b, "invalid", mentioning: "header length 1099511627776")
        b = valid; put(UInt64(SQ4.maxHeaderLength + 8), into: &b, at: 16)
        refuse(b, "invalid", mentioning: "header length")
        b = valid; put(UInt64(headerLength - 3), into: &b, at: 16)
        refuse(b, "invalid", mentioning: "multiple of 8")
        b = valid; put(UInt64(0), into: &b, at: 16)
        refuse(b, "invalid", mentioning: "header length 0")
    }

    func testHeaderChecksumMismatchIsRefused() {
        var b = valid; b[40] ^= 0x01
        refuse(b, "invalid", mentioning: "header checksum mismatch")
    }

    func testNonZeroPaddingBeforeTheDataIsRefused() {
        var b = valid; b[dataStart - 1] = 1
        refuse(b, "invalid", mentioning: "padding between the header and the data section")
    }

    // MARK: JSON header

    func testMalformedHeaderJSONIsRefused() {
        refuse(withHeader(json.replacingOccurrences(of: "\"format\":\"SQ4\"", with: "\"format\":\"SQ5\"")), "invalid", mentioning: "format must be")
        refuse(withHeader(String(json.dropLast())), "invalid", mentioning: "JSON object padded")
        refuse(withHeader(json.replacingOccurrences(of: "{\"format\":\"SQ4\",", with: "{\"format\":\"SQ4\",\"extra\":1,")), "invalid",
               mentioning: "unknown member \"extra\"")
        refuse(withHeader(json.replacingOccurrences(of: "{\"format\":\"SQ4\",", with: "{\"format\":\"SQ4\",\"format\":\"SQ4\",")), "invalid",
               mentioning: "duplicate")
        refuse(withHeader(json.replacingOccurrences(of: "\"bits\":4", with: "\"bits\":8")), "unsupported", mentioning: "bits is 8")
        refuse(withHeader(json.replacingOccurrences(of: "\"method\":\"gptq\"", with: "\"method\":\"awq\"")), "invalid", mentioning: "awq")
        refuse(withHeader(json.replacingOccurrences(of: "\"zeros\":\"symmetric\"", with: "\"zeros\":\"none\"")), "invalid", mentioning: "zeros must be")
    }

    func testTableEntryRulesAreEnforced() throws {
        let big = "transformer.h.0.mlp.c_proj.q4_codes"   // first tensor, 24576 bytes
        let (off, len, _) = try offsetOf("dense.large")
        refuse(withHeader(editTensor(big, "length", "24575")), "invalid", mentioning: "needs 24576 bytes but length is 24575")
        refuse(withHeader(editTensor("dense.large", "offset", String(off + 64))), "invalid", mentioning: "expected \(off)")
        refuse(withHeader(editTensor("dense.large", "offset", "0")), "invalid", mentioning: "without overlap")
        refuse(withHeader(editTensor("dense.small", "dtype", "\"Q4\"")), "unsupported", mentioning: "dtype \"Q4\"")
        refuse(withHeader(editTensor("dense.small", "crc32", "\"DEADBEEF\"")), "invalid", mentioning: "8 lowercase hex")
        refuse(withHeader(editTensor("dense.small", "shape", "[-3,256]")), "invalid", mentioning: "non-negative integer")
        refuse(withHeader(editTensor("dense.small", "shape", "[4611686018427387904,4]")), "invalid", mentioning: "overflows")
        _ = len
        // The last tensor claims more bytes than the file has.
        let lastName = "tokenizer.qwen_tiktoken"
        let n = SQ4Fixture.vocabBytes.count
        refuse(withHeader(editTensor(lastName, "length", "\(n + 64)", in: editTensor(lastName, "shape", "[\(n + 64)]"))), "truncated",
               mentioning: "needs data bytes")
        // Bytes after the last tensor.
        refuse(valid + [0], "invalid", mentioning: "after the last tensor")
        refuse(withHeader(editTensor(big, "name", "\"dense.small\"")), "invalid", mentioning: "listed twice")
    }

    func testLinearRecordRulesAreEnforced() {
        let j = json
        refuse(withHeader(j.replacingOccurrences(of: "\"name\":\"transformer.h.0.mlp.c_proj\",\"out\":128",
                                                  with: "\"name\":\"transformer.h.0.mlp.c_proj\",\"out\":64")),
               "invalid", mentioning: "needs [64, 192]")
        refuse(withHeader(j.replacingOccurrences(of: "\"name\":\"transformer.h.0.mlp.c_proj\",\"out\":128,\"in\":384,\"group_size\":128",
                                                  with: "\"name\":\"transformer.h.0.mlp.c_proj\",\"out\":128,\"in\":384,\"group_size\":48")),
               "invalid", mentioning: "group_size 48")
        refuse(withHeader(j.replacingOccurrences(of: "\"name\":\"synthetic.actorder_asym\",", with: "\"name\":\"synthetic.other\",")),
               "invalid", mentioning: "needs tensor 'synthetic.other.q4_codes'")
        refuse(withHeader(j.replacingOccurrences(of: "\"vocab_tensor\":\"tokenizer.qwen_tiktoken\"", with: "\"vocab_tensor\":\"dense.small\"")),
               "invalid", mentioning: "rank-1 U8")
    }

    // MARK: data (checked on demand)

    func testTensorChecksumMismatchIsFoundByVerify() throws {
        let (off, _, _) = try offsetOf("dense.large")
        var b = valid; b[dataStart + off + 100] ^= 0x40
        let p = dir.write("flipped.sq4", b)
        let f = try SquintInt4File(path: p)     // opening does not read tensor data
        assertFormatError(try f.verify(), "invalid", path: p, mentioning: "tensor 'dense.large': checksum mismatch")
        assertFormatError(try f.verify(tensor: "dense.large"), "invalid", path: p, mentioning: "checksum mismatch")
        XCTAssertNoThrow(try f.verify(tensor: "dense.small"))
    }

    /// Two corrupt tensors, checked on several threads: the one first in the table is reported, every time.
    func testParallelVerifyReportsTheFirstCorruptTensorInTableOrder() throws {
        let (offSmall, _, iSmall) = try offsetOf("dense.small")
        let (offLarge, _, iLarge) = try offsetOf("dense.large")
        var b = valid
        b[dataStart + offSmall] ^= 0x01
        b[dataStart + offLarge + 7] ^= 0x80
        let p = dir.write("two.sq4", b)
        let first = iSmall < iLarge ? "dense.small" : "dense.large"
        let f = try SquintInt4File(path: p)
        for threads in [1, 2, 4] {
            assertFormatError(try f.verify(threads: threads), "invalid", path: p, mentioning: "tensor '\(first)': checksum mismatch")
        }
        let seen = Counter()
        XCTAssertNoThrow(try SquintInt4File(path: dir.write("ok2.sq4", valid)).verify(threads: 2) { done, total in seen.add(done, total) })
        XCTAssertEqual(seen.last, seen.total)                 // progress reaches every tensor's bytes
        XCTAssertGreaterThan(seen.total, 0)
    }

    final class Counter: @unchecked Sendable {
        let lock = NSLock()
        var last = 0, total = 0
        func add(_ d: Int, _ t: Int) { lock.lock(); last = max(last, d); total = t; lock.unlock() }
    }

    func testNonZeroGapBetweenTensorsIsFoundByVerify() throws {
        let (off, _, i) = try offsetOf("dense.large")
        XCTAssertGreaterThan(i, 0)
        var b = valid; b[dataStart + off - 1] = 9   // the page-alignment gap before dense.large
        let p = dir.write("gap.sq4", b)
        assertFormatError(try SquintInt4File(path: p).verify(), "invalid", path: p, mentioning: "padding before tensor 'dense.large'")
    }

    func testZeroPointAbove16AndBadPermutationAreRefusedByTheRecord() throws {
        let (zoff, _, _) = try offsetOf("synthetic.actorder_asym.q4_zeros")
        var b = valid; b[dataStart + zoff + 5] = 17
        var p = dir.write("zero17.sq4", b)
        assertFormatError(try SquintInt4File(path: p).quantizedLinear("synthetic.actorder_asym"), "invalid", path: p, mentioning: "exceeds 16")
        let (poff, _, _) = try offsetOf("synthetic.actorder_asym.q4_perm")
        b = valid
        for i in 0..<4 { b[dataStart + poff + 4 + i] = b[dataStart + poff + i] }   // perm[1] = perm[0]
        p = dir.write("perm.sq4", b)
        assertFormatError(try SquintInt4File(path: p).quantizedLinear("synthetic.actorder_asym"), "invalid", path: p,
                          mentioning: "not a permutation")
    }

    /// Every single-byte change of the header JSON (CRC fixed up) is refused or still a consistent
    /// file; none traps. Flips the low bit of each byte.
    func testEveryHeaderByteFlipIsRefusedOrConsistent() throws {
        let h = Array(json.utf8)
        var accepted = 0
        for i in stride(from: 0, to: h.count, by: 5) {
            var m = h; m[i] ^= 0x01
            let p = dir.write("flip.sq4", withHeader(String(decoding: m, as: UTF8.self)))
            guard let f = try? SquintInt4File(path: p) else { continue }
            accepted += 1
            // Accepted means consistent: every tensor viewable with dtype x shape bytes, every record built.
            for t in f.tensors {
                XCTAssertEqual(try f.view(t.name).bytes.count, checkedByteCount(shape: t.shape, dtype: t.dtype), "flip at \(i)")
            }
            for l in f.linears { _ = try? f.quantizedLinear(l.name) }
        }
        XCTAssertLessThan(accepted, h.count / 5, "most flips must be refused")
    }
}
