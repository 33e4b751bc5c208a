import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A progress line on stderr with rate and ETA for anything longer than a second. On a terminal it
/// redraws in place (throttled to 5 Hz); otherwise (CI logs) it prints a line every 10 seconds.
public final class ProgressBar: @unchecked Sendable {
    public enum Unit { case bytes, items(String) }
    let label: String
    let unit: Unit
    let start = Date()
    var last = Date.distantPast
    let tty = isatty(2) != 0
    let lock = NSLock()
    var printed = false

    public init(label: String, unit: Unit) { self.label = label; self.unit = unit }

    func amount(_ n: Int) -> String {
        switch unit {
        case .bytes: return InspectText.bytes(n)
        case .items: return "\(n)"
        }
    }

    static func clock(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "--:--" }
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }

    /// Reports `done` of `total`; `detail` is appended (e.g. "block 3/32 c_attn").
    public func update(_ done: Int, _ total: Int, detail: String = "") {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        let interval = tty ? 0.2 : 10.0
        guard now.timeIntervalSince(last) >= interval || done >= total else { return }
        last = now
        let elapsed = now.timeIntervalSince(start)
        let frac = total > 0 ? Double(done) / Double(total) : 1
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : .infinity
        let width = 24
        let filled = Int(frac * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        var rateText = ""
        switch unit {
        case .bytes: rateText = "\(InspectText.bytes(Int(rate)))/s"
        case .items(let name): rateText = String(format: "%.2f %@/s", rate, name)
        }
        let line = String(format: "%@ [%@] %3.0f%% %@/%@ %@ elapsed %@ ETA %@ %@", label, bar, frac * 100,
                          amount(done), amount(total), rateText, Self.clock(elapsed), Self.clock(eta), detail)
        FileHandle.standardError.write(Data((tty ? "\r\u{1B}[K" + line : line + "\n").utf8))
        printed = true
    }

    /// Ends the line (terminal) so later output starts clean.
    public func finish() {
        lock.lock(); defer { lock.unlock() }
        if tty && printed { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
