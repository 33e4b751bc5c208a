import Foundation

/// This process's memory from /proc/self/status. Mapped checkpoint pages count in RSS but are
/// clean page cache the kernel can drop at any time, so reports separate them from anonymous
/// memory (what Squint itself allocated).
public struct MemoryUsage: Codable, Sendable {
    /// Peak resident set (VmHWM), bytes.
    public var peakRSS: Int
    /// Current anonymous resident memory (RssAnon), bytes.
    public var anonymous: Int
    /// Current file-backed resident memory (RssFile: mapped weights), bytes.
    public var fileBacked: Int

    enum CodingKeys: String, CodingKey {
        case peakRSS = "peak_rss"
        case anonymous
        case fileBacked = "file_backed"
    }

    public static func current() -> MemoryUsage {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else {
            return MemoryUsage(peakRSS: 0, anonymous: 0, fileBacked: 0)
        }
        return parse(status: text)
    }

    /// The fields of /proc/self/status text ("VmHWM:\t  123456 kB"; from 10^7 kB on the kernel's
    /// "%8lu" leaves no space after the tab, which an earlier reader of VmHWM missed: 0 above 9.5 GiB).
    static func parse(status text: String) -> MemoryUsage {
        var v = MemoryUsage(peakRSS: 0, anonymous: 0, fileBacked: 0)
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let kb = (Int(parts[1].trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") ?? 0) * 1024
            switch parts[0] {
            case "VmHWM": v.peakRSS = kb
            case "RssAnon": v.anonymous = kb
            case "RssFile": v.fileBacked = kb
            default: break
            }
        }
        return v
    }

    public var summary: String {
        "peak RSS \(InspectText.bytes(peakRSS)) (now: \(InspectText.bytes(anonymous)) anonymous, \(InspectText.bytes(fileBacked)) mapped weights)"
    }
}
