// swift-tools-version:5.10
// Squint: BF16 -> GPTQ Int4 for Qwen-VL-Chat on a CPU, checkpoint inspection, drift validation.
//
// Modules follow the data flow and depend one way (the compiler enforces it):
//   C system libraries -> SquintFormats -> SquintTensor -> SquintImage / SquintTokenizer
//   -> SquintModels -> SquintQuant -> SquintPipeline -> squint (CLI)
import PackageDescription

/// Hot C kernels are compiled for AVX2/FMA per function (`__attribute__((target))`) with a scalar
/// fallback, so the package itself builds for baseline x86-64 and never needs -march flags.
let cOptimize: [CSetting] = [.unsafeFlags(["-O3", "-fno-math-errno"])]

let package = Package(
    name: "Squint",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "squint", targets: ["squint"]),
        .library(name: "SquintPipeline", targets: ["SquintPipeline"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Debian system libraries (installed by scripts/setup-debian.sh).
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS"),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd"),
        .systemLibrary(name: "CJSONC", path: "Sources/CJSONC"),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        .systemLibrary(name: "CEditLine", path: "Sources/CEditLine"),   // chat's line editing (libedit)

        // Small C targets: SIMD kernels, and the setjmp-based error handling libjpeg/libpng need.
        .target(name: "CSquintKernels", cSettings: cOptimize,
                linkerSettings: [.linkedLibrary("z"), .linkedLibrary("openblas"), .linkedLibrary("pthread")]),
        .target(name: "CSquintImageIO", dependencies: ["CJPEG", "CPNG"], cSettings: cOptimize),

        // Bytes in, bytes out: safetensors, torch zip/pickle, indexes, our Int4 file. No model code.
        .target(name: "SquintFormats", dependencies: ["CJSONC", "CZstd", "CSquintKernels"]),
        // Float32 tensors, BLAS products, SIMD element-wise kernels, dtype conversion.
        .target(name: "SquintTensor", dependencies: ["SquintFormats", "COpenBLAS", "CSquintKernels"]),
        // JPEG/PNG decode, PIL-compatible resize, CLIP normalisation.
        .target(name: "SquintImage", dependencies: ["CSquintImageIO", "SquintFormats", "SquintTensor"]),
        // qwen.tiktoken BPE, pre-tokenisation, special tokens, ChatML.
        .target(name: "SquintTokenizer", dependencies: ["SquintFormats"]),
        // Qwen-VL-Chat: config, weight binding, ViT, resampler, LLM, generation.
        .target(name: "SquintModels",
                dependencies: ["SquintFormats", "SquintTensor", "SquintImage", "SquintTokenizer"]),
        // GPTQ / RTN, quantizer, packing.
        .target(name: "SquintQuant", dependencies: ["SquintFormats", "SquintTensor", "COpenBLAS", "CSquintKernels"]),
        // synth, inspect, convert, validate: the jobs the CLI runs.
        .target(name: "SquintPipeline",
                dependencies: ["SquintFormats", "SquintTensor", "SquintImage", "SquintTokenizer", "SquintModels",
                               "SquintQuant", "CZstd"]),
        .executableTarget(name: "squint", dependencies: [
            "SquintPipeline", "SquintModels", "SquintQuant", "SquintTokenizer", "SquintFormats", "SquintTensor", "CSquintKernels", "CEditLine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "TestSupport", dependencies: ["SquintFormats", "SquintTensor"]),

        .testTarget(name: "SquintFormatsTests", dependencies: ["SquintFormats", "TestSupport"]),
        .testTarget(name: "SquintTokenizerTests", dependencies: ["SquintTokenizer", "TestSupport"]),
        .testTarget(name: "SquintModelsTests",
                    dependencies: ["SquintModels", "SquintPipeline", "TestSupport"]),
        .testTarget(name: "SquintPipelineTests", dependencies: ["SquintPipeline", "SquintQuant", "TestSupport"]),
        .testTarget(name: "SquintCLITests", dependencies: ["SquintPipeline", "SquintFormats", "TestSupport"]),
        .testTarget(name: "SquintQuantTests", dependencies: ["SquintQuant", "SquintFormats", "TestSupport", "CSquintKernels", "COpenBLAS"]),
    ]
)
