/// Central-directory reader for the stored (uncompressed) zip archives torch.save writes
/// (Formats/PYTORCH.md §1). ZIP64 aware. It only locates entries; bytes stay in the mapping.
struct ZipEntry {
    var name: String
    /// Absolute offset of the entry's bytes in the file (after the local header).
    var dataOffset: Int
    var size: Int
    var crc32: UInt32
}

struct ZipArchive {
    let file: MappedFile
    private(set) var entries: [ZipEntry] = []
    private(set) var byName: [String: Int] = [:]
    /// Start of the central directory: every entry's data lies before it.
    private(set) var centralDirectoryOffset = 0

    init(file: MappedFile) throws {
        self.file = file
        try parse()
    }

    private var path: String { file.path }
    private func bad(_ w: String) -> FormatError { .invalid(path: path, what: "zip: \(w)") }

    private func add(_ a: Int, _ b: Int, _ w: String) throws -> Int {
        let (r, o) = a.addingReportingOverflow(b)
        if o { throw bad("\(w) overflows") }
        return r
    }

    private mutating func parse() throws {
        let size = file.size
        guard size >= 22 else { throw FormatError.truncated(path: path, what: "zip: no end of central directory record") }
        // Scan back for the EOCD signature; the comment is at most 65535 bytes.
        var eocd = -1
        var p = size - 22
        let lowest = max(0, size - 22 - 65535)
        let raw = file.bytes
        while p >= lowest {
            if raw[p] == 0x50, raw[p + 1] == 0x4B, raw[p + 2] == 0x05, raw[p + 3] == 0x06 {
                let commentLen = Int(try file.readLE(UInt16.self, at: p + 20, what: "EOCD"))
                if p + 22 + commentLen == size { eocd = p; break }
            }
            p -= 1
        }
        guard eocd >= 0 else { throw FormatError.truncated(path: path, what: "zip: no end of central directory record") }
        let disk = try file.readLE(UInt16.self, at: eocd + 4, what: "EOCD")
        let cdDisk = try file.readLE(UInt16.self, at: eocd + 6, what: "EOCD")
        var count = Int(try file.readLE(UInt16.self, at: eocd + 10, what: "EOCD"))
        var cdSize = Int(try file.readLE(UInt32.self, at: eocd + 12, what: "EOCD"))
        var cdOffset = Int(try file.readLE(UInt32.self, at: eocd + 16, what: "EOCD"))
        var cdEnd = eocd
        let saturated = count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF
        if eocd >= 20, try file.readLE(UInt32.self, at: eocd - 20, what: "ZIP64 locator") == 0x0706_4b50 {
            let recOff64 = try file.readLE(UInt64.self, at: eocd - 12, what: "ZIP64 locator")
            guard eocd - 20 >= 56, recOff64 <= UInt64(eocd - 20 - 56) else {
                throw bad("ZIP64 end record offset \(recOff64) is outside the file")
            }
            let rec = Int(recOff64)
            guard try file.readLE(UInt32.self, at: rec, what: "ZIP64 end record") == 0x0606_4b50 else {
                throw bad("ZIP64 end record signature missing at \(rec)")
            }
            let c64 = try file.readLE(UInt64.self, at: rec + 32, what: "ZIP64 end record")
            let s64 = try file.readLE(UInt64.self, at: rec + 40, what: "ZIP64 end record")
            let o64 = try file.readLE(UInt64.self, at: rec + 48, what: "ZIP64 end record")
            guard c64 <= UInt64(Int.max), s64 <= UInt64(Int.max), o64 <= UInt64(Int.max) else {
                throw bad("ZIP64 end record values out of range")
            }
            // torch writes the ZIP64 record always, with the classic fields filled in too: where a
            // classic field is not saturated it must agree (two directories would mean two readings).
            guard count == 0xFFFF || UInt64(count) == c64, cdSize == 0xFFFF_FFFF || UInt64(cdSize) == s64,
                  cdOffset == 0xFFFF_FFFF || UInt64(cdOffset) == o64 else {
                throw bad("end of central directory and ZIP64 end record disagree")
            }
            count = Int(c64); cdSize = Int(s64); cdOffset = Int(o64); cdEnd = rec
        } else if saturated {
            throw bad("end of central directory has ZIP64 markers but no ZIP64 locator")
        } else if disk != 0 || cdDisk != 0 {
            throw FormatError.unsupported(path: path, what: "multi-disk zip archives")
        }
        guard try add(cdOffset, cdSize, "central directory") <= cdEnd else {
            throw FormatError.truncated(path: path, what: "zip: central directory \(cdOffset)+\(cdSize) runs past its end record at \(cdEnd)")
        }
        guard count <= cdSize / 46 else { throw bad("\(count) entries cannot fit a \(cdSize)-byte central directory") }
        centralDirectoryOffset = cdOffset

        var q = cdOffset
        let cdLimit = cdOffset + cdSize
        entries.reserveCapacity(count)
        for i in 0..<count {
            guard q + 46 <= cdLimit else { throw bad("central directory entry \(i) runs past the directory") }
            guard try file.readLE(UInt32.self, at: q, what: "central header") == 0x0201_4b50 else {
                throw bad("central directory entry \(i) has a bad signature at \(q)")
            }
            let flags = try file.readLE(UInt16.self, at: q + 8, what: "central header")
            let method = try file.readLE(UInt16.self, at: q + 10, what: "central header")
            let crc = try file.readLE(UInt32.self, at: q + 16, what: "central header")
            var csize = UInt64(try file.readLE(UInt32.self, at: q + 20, what: "central header"))
            var usize = UInt64(try file.readLE(UInt32.self, at: q + 24, what: "central header"))
            let nameLen = Int(try file.readLE(UInt16.self, at: q + 28, what: "central header"))
            let extraLen = Int(try file.readLE(UInt16.self, at: q + 30, what: "central header"))
            let commentLen = Int(try file.readLE(UInt16.self, at: q + 32, what: "central header"))
            var local = UInt64(try file.readLE(UInt32.self, at: q + 42, what: "central header"))
            let next = q + 46 + nameLen + extraLen + commentLen
            guard next <= cdLimit else { throw bad("central directory entry \(i) runs past the directory") }
            guard let name = String(validating: try file.slice(q + 46, nameLen, what: "entry name"), as: UTF8.self) else {
                throw bad("entry \(i) name is not UTF-8")
            }
            // ZIP64 extended information: only the saturated fields, in order.
            var e = q + 46 + nameLen
            let eEnd = e + extraLen
            while e + 4 <= eEnd {
                let id = try file.readLE(UInt16.self, at: e, what: "extra field")
                let len = Int(try file.readLE(UInt16.self, at: e + 2, what: "extra field"))
                guard e + 4 + len <= eEnd else { throw bad("entry '\(name)' extra field runs past its end") }
                if id == 0x0001 {
                    var f = e + 4
                    func next64() throws -> UInt64 {
                        guard f + 8 <= e + 4 + len else { throw bad("entry '\(name)' ZIP64 field is too short") }
                        defer { f += 8 }
                        return try file.readLE(UInt64.self, at: f, what: "ZIP64 field")
                    }
                    if usize == 0xFFFF_FFFF { usize = try next64() }
                    if csize == 0xFFFF_FFFF { csize = try next64() }
                    if local == 0xFFFF_FFFF { local = try next64() }
                }
                e += 4 + len
            }
            if flags & 1 != 0 { throw FormatError.unsupported(path: path, what: "zip entry '\(name)' is encrypted") }
            guard method == 0 else {
                throw FormatError.unsupported(path: path, what: "zip entry '\(name)' is compressed (method \(method)); torch writes stored entries only")
            }
            guard csize == usize else { throw bad("stored entry '\(name)' has compressed size \(csize) != size \(usize)") }
            guard usize <= UInt64(Int.max), local <= UInt64(Int.max) else { throw bad("entry '\(name)' size or offset out of range") }
            // Local header: signature, the same name, then data.
            let lh = Int(local)
            guard try file.readLE(UInt32.self, at: lh, what: "local header of '\(name)'") == 0x0403_4b50 else {
                throw bad("entry '\(name)' local header signature missing at \(lh)")
            }
            let lnameLen = Int(try file.readLE(UInt16.self, at: lh + 26, what: "local header of '\(name)'"))
            let lextraLen = Int(try file.readLE(UInt16.self, at: lh + 28, what: "local header of '\(name)'"))
            let lname = try file.slice(lh + 30, lnameLen, what: "local name of '\(name)'")
            guard lname.elementsEqual(name.utf8) else { throw bad("entry '\(name)' local header names a different file") }
            let dataOffset = lh + 30 + lnameLen + lextraLen
            let end = try add(dataOffset, Int(usize), "entry '\(name)' range")
            guard end <= cdOffset else {
                throw FormatError.truncated(path: path, what: "zip entry '\(name)' data \(dataOffset)..<\(end) runs past the central directory at \(cdOffset)")
            }
            guard byName[name] == nil else { throw bad("duplicate entry name '\(name)'") }
            byName[name] = entries.count
            entries.append(ZipEntry(name: name, dataOffset: dataOffset, size: Int(usize), crc32: crc))
            q = next
        }
        // Data ranges must not overlap (each byte belongs to one entry).
        let sorted = entries.sorted { $0.dataOffset < $1.dataOffset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.dataOffset + a.size > b.dataOffset {
            throw bad("entries '\(a.name)' and '\(b.name)' overlap")
        }
    }

    func entry(_ name: String) -> ZipEntry? { byName[name].map { entries[$0] } }
}
