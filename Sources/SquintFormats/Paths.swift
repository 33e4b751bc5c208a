import Foundation

/// Path arithmetic without Foundation's `NSString.deletingLastPathComponent`, which traps (SIGILL) on a
/// one-character relative path such as `m` in swift-corelibs-foundation (Swift 6.3, Linux), so
/// `squint convert MODEL -o m` crashed before it did anything.
public enum Paths {
    /// The folder holding `path`: "." for a bare name, "/" for a file at the root; trailing slashes and
    /// repeated separators are ignored ("a/b/" -> "a", "a//b" -> "a", "/a" -> "/").
    public static func parent(of path: String) -> String {
        var s = Substring(path)
        while s.count > 1, s.hasSuffix("/") { s = s.dropLast() }
        guard let slash = s.lastIndex(of: "/") else { return "." }
        var head = s[..<slash]
        while head.hasSuffix("/") { head = head.dropLast() }
        return head.isEmpty ? "/" : String(head)
    }
}
