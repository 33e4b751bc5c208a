import Foundation
import XCTest
import TestSupport
@testable import SquintFormats

/// Hostile torch files (fixtures/torch/hostile, hand-crafted by the generator): each is refused with
/// the right FormatError and nothing they ask for ever runs.
final class TorchHostileTests: XCTestCase {
    private let marker = TorchFixtures.expected["_marker"] as! String

    override func setUp() { unlink(marker) }

    private func refusal(_ name: String, line: UInt = #line) -> FormatError? {
        let p = TorchFixtures.path("hostile/\(name).pt")
        let e = assertFormatError(try TorchCheckpoint(path: p), line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "\(name) ran code", line: line)
        return e
    }

    private func assertForbidden(_ name: String, _ global: String, line: UInt = #line) {
        XCTAssertEqual(refusal(name, line: line),
                       .forbiddenGlobal(path: TorchFixtures.path("hostile/\(name).pt"), global: global), line: line)
    }

    private func assertInvalid(_ name: String, containing text: String, line: UInt = #line) {
        guard let e = refusal(name, line: line) else { return }
        guard case let .invalid(_, what) = e else { return XCTFail("\(name): \(e)", line: line) }
        XCTAssertTrue(what.contains(text), "\(name): \(what)", line: line)
    }

    private func assertUnsupported(_ name: String, containing text: String, line: UInt = #line) {
        guard let e = refusal(name, line: line) else { return }
        guard case let .unsupported(_, what) = e else { return XCTFail("\(name): \(e)", line: line) }
        XCTAssertTrue(what.contains(text), "\(name): \(what)", line: line)
    }

    private func assertTruncated(_ name: String, line: UInt = #line) {
        guard let e = refusal(name, line: line) else { return }
        guard case .truncated = e else { return XCTFail("\(name): \(e)", line: line) }
    }

    func testCodeExecutionGlobalsAreRefusedByName() {
        assertForbidden("os_system", "os.system")
        assertForbidden("posix_system", "posix.system")
        assertForbidden("builtins_eval", "builtins.eval")
        assertForbidden("subprocess_popen", "subprocess.Popen")
        assertForbidden("reduce_trick", "posix.system")
        assertForbidden("stack_global_eval", "builtins.eval")
        assertForbidden("qtensor", "torch._utils._rebuild_qtensor")
    }

    func testReduceOnlyCallsAllowlistedCallables() {
        assertInvalid("reduce_storage_class", containing: "called directly")
        assertInvalid("reduce_non_callable", containing: "not an allowlisted callable")
        assertUnsupported("backward_hooks", containing: "hooks")
    }

    func testMalformedPicklesAreRefused() {
        assertInvalid("unknown_opcode", containing: "opcode 0xff")
        assertInvalid("inst_opcode", containing: "opcode 0x69")
        assertInvalid("memo_out_of_range", containing: "memo index 7")
        assertInvalid("stack_underflow", containing: "stack underflow")
        assertInvalid("setitems_on_list", containing: "SETITEMS on a non-dict")
        assertTruncated("huge_string")
        assertTruncated("no_stop")
        assertUnsupported("not_a_dict", containing: "not a state dict")
    }

    private func unpickle(_ bytes: [UInt8], maxMemo: Int, maxStack: Int) -> FormatError? {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        defer { b.deallocate() }
        bytes.withUnsafeBytes { b.copyMemory(from: $0) }
        var u = Unpickler(path: "mem.pkl", bytes: UnsafeRawBufferPointer(b), style: .zip,
                          maxMemo: maxMemo, maxStack: maxStack)
        return assertFormatError(try u.load())
    }

    /// `bytes` unpickled with the real limits (nil when refused).
    private func loadPickle(_ bytes: [UInt8]) -> PickleValue? {
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        defer { b.deallocate() }
        bytes.withUnsafeBytes { b.copyMemory(from: $0) }
        var u = Unpickler(path: "mem.pkl", bytes: UnsafeRawBufferPointer(b), style: .zip)
        return try? u.load()
    }

    /// The same checks guard the real limits (1,000,000 each); small limits keep the test fast.
    func testStackAndMemoAreBounded() {
        let deep: [UInt8] = [0x80, 2] + [UInt8](repeating: 0x4E, count: 101) + [0x2E] // NONE x 101
        XCTAssertEqual(unpickle(deep, maxMemo: 100, maxStack: 100),
                       .invalid(path: "mem.pkl", what: "pickle at byte 102: stack deeper than 100"))
        let memo: [UInt8] = [0x80, 2, 0x4E] + [UInt8](repeating: 0x94, count: 101) + [0x2E] // MEMOIZE x 101
        XCTAssertEqual(unpickle(memo, maxMemo: 100, maxStack: 100),
                       .invalid(path: "mem.pkl", what: "pickle at byte 103: more than 100 memo entries"))
        let marks: [UInt8] = [0x80, 2] + [UInt8](repeating: 0x28, count: 101) + [0x2E] // MARK x 101
        XCTAssertEqual(unpickle(marks, maxMemo: 100, maxStack: 100),
                       .invalid(path: "mem.pkl", what: "pickle at byte 102: too many MARKs"))
    }

    /// Fuzz finding 6: 39,909 nested 1-tuples (TUPLE1 opcodes, a 40 KB file) overflowed the stack when
    /// Swift freed them. Nesting stops at `Unpickler.maxDepth` (100) for tuples, lists and dicts alike,
    /// and a list or dict may not change once it is inside another value (else depths could grow unseen).
    func testNestingIsBoundedAndNestedContainersCannotChange() {
        let tuples = { (n: Int) in [0x80, 2, 0x4E] + [UInt8](repeating: 0x85, count: n) + [0x2E] }   // ((None,),)...
        guard case .tuple? = loadPickle(tuples(100)) else { return XCTFail("100 nested tuples are allowed") }
        XCTAssertEqual(unpickle(tuples(101), maxMemo: 100, maxStack: 100),
                       .invalid(path: "mem.pkl", what: "pickle at byte 103: values nested deeper than 100 levels"))
        XCTAssertNotNil(unpickle(tuples(40_000), maxMemo: 100, maxStack: 100))   // the finding: refused, no crash
        // Lists: 101 empty lists, then 100 APPENDs, each putting the top list into the one beneath it.
        let lists: [UInt8] = [0x80, 2] + [UInt8](repeating: 0x5D, count: 101) + [UInt8](repeating: 0x61, count: 100) + [0x2E]
        XCTAssertEqual(unpickle(lists, maxMemo: 100, maxStack: 1000),
                       .invalid(path: "mem.pkl", what: "pickle at byte 202: values nested deeper than 100 levels"))
        // Dicts: {} then 100 x (key 0, {}), then 100 SETITEMs: {0: {0: {...}}}.
        let dicts: [UInt8] = [0x80, 2, 0x7D] + (0 ..< 100).flatMap { _ in [UInt8]([0x4B, 0, 0x7D]) }
            + [UInt8](repeating: 0x73, count: 100) + [0x2E]
        XCTAssertEqual(unpickle(dicts, maxMemo: 100, maxStack: 1000),
                       .invalid(path: "mem.pkl", what: "pickle at byte 402: values nested deeper than 100 levels"))
        // A list changed after it was placed in another: [ [ ] stores the inner list (BINPUT 0), APPENDs it to
        // the outer, fetches it back (BINGET 0) and APPENDs None to it.
        let changed: [UInt8] = [0x80, 2, 0x5D, 0x5D, 0x71, 0, 0x61, 0x68, 0, 0x4E, 0x61, 0x30, 0x2E]
        XCTAssertEqual(unpickle(changed, maxMemo: 100, maxStack: 100),
                       .invalid(path: "mem.pkl", what: "pickle at byte 10: a list changed after it was placed inside another value (a recursive structure)"))
    }

    /// Fuzz finding 7: 29,506 MEMOIZE opcodes after a None (a 32 KB legacy file) made one 1.58 MB
    /// allocation, a hash table of (value, depth) pairs. The memo is now dense arrays, as Python's pickler
    /// writes it: a key may be overwritten or be the next one; one that skips keys is refused.
    func testMemoIsDenseAndKeysMayNotSkip() {
        // BININT1 5, BINPUT 0, BININT1 6, BINPUT 1, BININT1 7, BINPUT 0 (overwrite), then
        // MARK BINGET 0 BINGET 1 MEMOIZE (key 2) BINGET 2 TUPLE, STOP -> (7, 6, 6); the ints left below
        // the MARK are popped first by POP x3 placed before the MARK.
        let ok: [UInt8] = [0x80, 2, 0x4B, 5, 0x71, 0, 0x4B, 6, 0x71, 1, 0x4B, 7, 0x71, 0, 0x30, 0x30, 0x30,
                           0x28, 0x68, 0, 0x68, 1, 0x94, 0x68, 2, 0x74, 0x2E]
        XCTAssertEqual(loadPickle(ok), .tuple([.int(7), .int(6), .int(6)]))
        let skip: [UInt8] = [0x80, 2, 0x4E, 0x71, 0, 0x71, 2, 0x2E]   // None, BINPUT 0, BINPUT 2
        XCTAssertEqual(unpickle(skip, maxMemo: 100, maxStack: 100),
                       .invalid(path: "mem.pkl", what: "pickle at byte 5: memo key 2 skips keys 1...1 (a pickler stores them in order)"))
        let long: [UInt8] = [0x80, 2, 0x4E, 0x72, 0x40, 0x42, 0x0F, 0x00, 0x2E]   // LONG_BINPUT 1,000,000
        XCTAssertEqual(unpickle(long, maxMemo: 100, maxStack: 100),
                       .invalid(path: "mem.pkl", what: "pickle at byte 3: memo key 1000000 skips keys 0...999999 (a pickler stores them in order)"))
    }

    func testCorruptTensorBytesFailChecksumVerification() throws {
        let c = try TorchCheckpoint(path: TorchFixtures.path("hostile_views/bad_crc.pt"))
        guard let e = assertFormatError(try c.verifyChecksums()) else { return }
        guard case let .invalid(_, what) = e else { return XCTFail("\(e)") }
        XCTAssertTrue(what.contains("data/0' CRC-32"), what)
    }

    /// Regression (fuzzer, torch-zip, allocation bound 1 MiB + 16 x input): verifying the 1,577-byte
    /// seed fixtures/fuzz/torch-zip/bad_crc.pt (= hostile_views/bad_crc.pt) allocated a fixed 4 MiB CRC
    /// buffer. The buffer is now at most the largest entry (entries are checked against the file size).
    func testChecksumBufferIsNoLargerThanTheLargestEntry() throws {
        for largest in [0, 63, 64, 1577, 1 << 20] {
            XCTAssertEqual(TorchCheckpoint.checksumChunk(largestEntry: largest), max(64, largest))
        }
        XCTAssertEqual(TorchCheckpoint.checksumChunk(largestEntry: 9 << 30), 4 << 20)
        try testCorruptTensorBytesFailChecksumVerification()       // and that file is still refused
    }

    func testDictKeysMustBeStringsOrInts() {
        assertInvalid("float_dict_key", containing: "dict key is a float")
    }

    func testHugeBroadcastViewOpensButIsNotMaterialised() throws {
        let c = try TorchCheckpoint(path: TorchFixtures.path("hostile_views/huge_broadcast.pt"))
        XCTAssertEqual(c.tensors.first?.shape, [1 << 20, 1 << 20])
        XCTAssertEqual(c.tensors.first?.strides, [0, 0])
        guard let e = assertFormatError(try c.view("w")) else { return }
        guard case let .unsupported(_, what) = e else { return XCTFail("\(e)") }
        XCTAssertTrue(what.contains("broadcast view too large"), what)
    }

    /// Regression (fuzzer, torch-zip, 2026-12-06): a 694-byte checkpoint whose broadcast view asked to
    /// materialise 3.5 MB, within the old cap (max(4x storage, 256 MiB)) but over the allocation bound of
    /// 1 MiB + 16x the file. The cap now also stays under that bound, while a real checkpoint (a large
    /// file) keeps the 256 MiB allowance.
    func testBroadcastViewsOfASmallFileStayWithinItsAllocationBound() throws {
        XCTAssertEqual(TorchCheckpoint.maxViewBytes(storageBytes: 4, fileSize: 694), (1 << 20) + 16 * 694)
        XCTAssertEqual(TorchCheckpoint.maxViewBytes(storageBytes: 4, fileSize: 10 << 30), TorchCheckpoint.maxExpandedBytes)
        XCTAssertEqual(TorchCheckpoint.maxViewBytes(storageBytes: 1 << 30, fileSize: 1 << 30), 4 << 30)
        let path = Fixtures.path("fuzz/torch-zip/regressions/broadcast_3.5MB_from_694_bytes.pt")
        let c = try TorchCheckpoint(path: path)
        var refused = 0
        for t in c.tensors {
            do {
                let v = try c.view(t.name)
                XCTAssertLessThanOrEqual(v.bytes.count, (1 << 20) + 16 * 694, t.name)
            } catch let FormatError.unsupported(_, what) {
                XCTAssertTrue(what.contains("broadcast view too large"), what)
                refused += 1
            }
        }
        XCTAssertGreaterThan(refused, 0, "the 3.5 MB broadcast is refused")
    }

    func testTensorGeometryIsBoundsChecked() {
        assertInvalid("view_out_of_bounds", containing: "reaches element")
        assertInvalid("absurd_shape", containing: "overflows")
        assertInvalid("negative_stride", containing: "negative stride")
        assertInvalid("storage_size_mismatch", containing: "declares 1000 x 4 bytes")
    }

    func testContainerDamageIsRefused() {
        assertUnsupported("compressed", containing: "compressed")
        assertUnsupported("big_endian", containing: "big-endian")
        assertInvalid("missing_storage", containing: "has no entry")
        assertTruncated("entry_outside_file")
        assertInvalid("bad_central_directory", containing: "bad signature")
        assertInvalid("cd_offset_outside", containing: "disagree")
        assertTruncated("entry_size_overrun")
        assertInvalid("not_a_checkpoint", containing: "not a torch checkpoint")
        assertTruncated("legacy_huge_count")
        assertInvalid("legacy_bad_magic", containing: "magic")
        assertUnsupported("legacy_big_endian", containing: "big-endian")
        assertUnsupported("encrypted_entry", containing: "encrypted")
        assertInvalid("duplicate_entry", containing: "duplicate entry name")
        assertInvalid("foreign_prefix", containing: "outside the archive folder")
    }

    /// The classic (non-ZIP64) directory our writer emits: an end record pointing past the file.
    func testClassicEndRecordPointingOutsideTheFileIsTruncated() throws {
        var d = try Data(contentsOf: URL(fileURLWithPath: TorchFixtures.path("writer_roundtrip.pt")))
        let eocd = d.count - 22
        XCTAssertEqual(Array(d[eocd..<(eocd + 4)]), [0x50, 0x4B, 0x05, 0x06])
        d.replaceSubrange((eocd + 16)..<(eocd + 20), with: [0xF0, 0xFF, 0xFF, 0x7F])
        let tmp = NSTemporaryDirectory() + "squint-eocd-\(getpid()).pt"
        defer { unlink(tmp) }
        try d.write(to: URL(fileURLWithPath: tmp))
        guard let e = assertFormatError(try TorchCheckpoint(path: tmp)) else { return }
        guard case let .truncated(_, what) = e else { return XCTFail("\(e)") }
        XCTAssertTrue(what.contains("central directory"), what)
    }

    func testEveryHostileFixtureIsCovered() throws {
        let listed = Set(TorchFixtures.expected["_hostile"] as! [String])
        let onDisk = Set(try FileManager.default.contentsOfDirectory(atPath: TorchFixtures.path("hostile"))
            .map { String($0.dropLast(3)) })
        XCTAssertEqual(listed, onDisk)
        for name in listed { _ = refusal(name) }
    }

    /// Every prefix of a valid zip and a valid legacy file is refused with a FormatError (never a trap).
    func testTruncatedFilesAreRefusedAtEveryLength() throws {
        for file in ["views.pt", "legacy.pt"] {
            let full = try Data(contentsOf: URL(fileURLWithPath: TorchFixtures.path(file)))
            let tmp = NSTemporaryDirectory() + "squint-trunc-\(getpid())-\(file)"
            defer { unlink(tmp) }
            for n in 0..<full.count {
                try full.prefix(n).write(to: URL(fileURLWithPath: tmp))
                guard let e = assertFormatError(try TorchCheckpoint(path: tmp)) else { continue }
                switch e {
                case .truncated, .invalid: break
                default: XCTFail("\(file) cut at \(n): \(e)")
                }
            }
        }
    }

    /// Single-byte corruption anywhere either still reads or throws a FormatError; never traps.
    func testByteFlipsNeverTrap() throws {
        let full = try Data(contentsOf: URL(fileURLWithPath: TorchFixtures.path("legacy.pt")))
        let tmp = NSTemporaryDirectory() + "squint-flip-\(getpid()).pt"
        defer { unlink(tmp) }
        for i in 0..<full.count {
            var d = full
            d[i] ^= 0xA5
            try d.write(to: URL(fileURLWithPath: tmp))
            do {
                let c = try TorchCheckpoint(path: tmp)
                for t in c.tensors { _ = try? c.view(t.name) }
            } catch is FormatError {} catch { XCTFail("byte \(i): \(error)") }
        }
    }
}
