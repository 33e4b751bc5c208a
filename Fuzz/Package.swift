// swift-tools-version:5.4
// libFuzzer harnesses for every Squint reader (issue 12.2). A separate package so the main build never
// sees sanitizer flags; build and run with ../scripts/fuzz.sh. The harness code is
// Sources/SquintFuzz/FuzzHarnesses.swift, which the main package's test suite also compiles and replays
// (Tests/SquintPipelineTests/FuzzHarnesses.swift is a symlink to it).
//
// Tools version 5.4 on purpose: from 5.5 SwiftPM renames an executable's entry point and links
// `main` to it (`--defsym main=squint_fuzz_main`), which collides with libFuzzer's own `main`
// (ld.gold then fails). With 5.4 and `-parse-as-library`, libFuzzer's `main` is the program's.
import PackageDescription

let package = Package(
    name: "SquintFuzz",
    dependencies: [.package(name: "Squint", path: "..")],
    targets: [
        // One executable; the harness is chosen by SQUINT_FUZZ_HARNESS (see FuzzHarness).
        .executableTarget(name: "squint-fuzz", dependencies: [.product(name: "SquintPipeline", package: "Squint")],
                          path: "Sources/SquintFuzz"),
    ]
)
