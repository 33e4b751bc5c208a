#!/usr/bin/env bash
# Encoding throughput of SquintTokenizer (release build) on a text file, best of 8 runs.
# Builds a throw-away package in a temp dir that links Sources/SquintTokenizer, so the main package
# is not rebuilt in release mode. Not a test: timings depend on the machine and its load.
# Usage: scripts/bench/tokenizer_throughput.sh TEXT_FILE [VOCAB]   (VOCAB default: fixtures/tokenizer/qwen.tiktoken)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
text="$(realpath "$1")"
vocab="$(realpath "${2:-$root/fixtures/tokenizer/qwen.tiktoken}")"
work="${TMPDIR:-/tmp}/squint-tokbench"
mkdir -p "$work/Sources/bench"
ln -sfn "$root/Sources/SquintTokenizer" "$work/Sources/SquintTokenizer"
cat > "$work/Package.swift" <<'SWIFT'
// swift-tools-version:5.10
import PackageDescription
let package = Package(name: "tokbench", targets: [
    .target(name: "SquintTokenizer"),
    .executableTarget(name: "bench", dependencies: ["SquintTokenizer"]),
])
SWIFT
cat > "$work/Sources/bench/main.swift" <<'SWIFT'
import Foundation
import SquintTokenizer
let a = CommandLine.arguments
let tok = try QwenTokenizer(vocabularyFile: a[1])
let text = try String(contentsOfFile: a[2], encoding: .utf8)
let mb = Double(text.utf8.count) / 1e6
var best = Double.infinity
var n = 0
for _ in 0 ..< 8 {
    let t0 = Date()
    n = try tok.encode(text, allowedSpecial: .noSpecial).count
    best = min(best, Date().timeIntervalSince(t0))
}
print(String(format: "%.2f MB -> %d ids, best of 8: %.3f s = %.1f MB/s", mb, n, best, mb / best))
SWIFT
(cd "$work" && swift build -c release >/dev/null)
"$work/.build/release/bench" "$vocab" "$text"
