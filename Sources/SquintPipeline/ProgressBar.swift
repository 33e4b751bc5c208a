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

    /// The rate and ETA count from here: work done before (a verification pass, or blocks an earlier
    /// run finished before `--resume`) must not make the rest look faster or slower than it is.
    var clockStart = Date()
    var clockDone = 0
    var clockWork = 0.0

    /// Sees every update before throttling: (done, total, work, workTotal, ETA in seconds).
    public var observer: ((Int, Int, Double, Double, Double) -> Void)?

    public init(label: String, unit: Unit) { self.label = label; self.unit = unit }

    /// Restarts the rate clock at `done` units and `work` (see `update`'s `work`) already done.
    public func restartClock(done: Int, work: Double? = nil) {
        lock.lock(); defer { lock.unlock() }
        clockStart = Date(); clockDone = done; clockWork = work ?? Double(done)
    }

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

    /// Reports `done` of `total`; `detail` is appended (e.g. "block 3/32 c_attn"). When units differ in
    /// cost (a ViT image against one sample through one block), `work` of `workTotal` (any common
    /// measure, e.g. estimated FLOPs) gives the bar's fraction and the ETA instead of the unit count.
    public func update(_ done: Int, _ total: Int, detail: String = "", work: Double? = nil, workTotal: Double? = nil) {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        let elapsed = now.timeIntervalSince(start), clocked = now.timeIntervalSince(clockStart)
        let w = work ?? Double(done), wt = workTotal ?? Double(total)
        let eta = Self.eta(work: w, workTotal: wt, clockWork: clockWork, seconds: clocked)
        observer?(done, total, w, wt, eta)
        let interval = tty ? 0.2 : 10.0
        guard now.timeIntervalSince(last) >= interval || done >= total else { return }
        last = now
        let frac = wt > 0 ? min(1, w / wt) : 1
        let rate = clocked > 0 ? Double(done - clockDone) / clocked : 0
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

    /// Seconds left when `work` of `workTotal` is done and `work - clockWork` took `seconds`: work done
    /// before the clock started (an earlier run's blocks) does not count toward the rate.
    static func eta(work: Double, workTotal: Double, clockWork: Double, seconds: Double) -> Double {
        let rate = seconds > 0 ? (work - clockWork) / seconds : 0
        return rate > 0 ? max(0, workTotal - work) / rate : .infinity
    }

    /// Ends the line (terminal) so later output starts clean.
    public func finish() {
        lock.lock(); defer { lock.unlock() }
        if tty && printed { FileHandle.standardError.write(Data("\n".utf8)) }
        printed = false
    }
}
