// libFuzzer entry points (built with -sanitize=fuzzer,address -parse-as-library; see scripts/fuzz.sh):
// libFuzzer's own `main` runs, calls LLVMFuzzerInitialize once and LLVMFuzzerTestOneInput per input.
// The harness is named by the environment variable SQUINT_FUZZ_HARNESS (FuzzHarness.allCases);
// SQUINT_FUZZ_FIXTURES is the repository's fixtures/ folder (the calibration harness loads
// fixtures/tokenizer/qwen.tiktoken from it once).
import Foundation
import SquintFormats

nonisolated(unsafe) private var fuzzContext: FuzzContext?

// MARK: - Allocation bound

/// Largest single allocation allowed while the current input is being read: `allocationSlack` plus
/// `FuzzHarness.allocationFactor` times the input's size (Int.max outside the harness call).
nonisolated(unsafe) private var allocationLimit = Int.max
/// 1 MiB; SQUINT_FUZZ_ALLOCATION_SLACK=0 shows the hook at work (any input then trips it).
private let allocationSlack = ProcessInfo.processInfo.environment["SQUINT_FUZZ_ALLOCATION_SLACK"].flatMap { Int($0) } ?? 1 << 20

@_silgen_name("__sanitizer_install_malloc_and_free_hooks")
private func installMallocHooks(_ malloc: @convention(c) (UnsafeRawPointer?, Int) -> Void,
                                _ free: @convention(c) (UnsafeRawPointer?) -> Void) -> CInt

/// The largest allocation above the limit during the current input (0: none).
nonisolated(unsafe) private var allocationViolation = 0

/// ASan's malloc hook. It runs inside malloc, where aborting deadlocks (the crash report allocates),
/// so it only records the size; TestOneInput aborts after the reader returns, libFuzzer saves the
/// input, and replaying it under a debugger (or with a breakpoint here) shows the allocating stack.
private func checkAllocation(_ pointer: UnsafeRawPointer?, _ size: Int) {
    if size > allocationLimit && size > allocationViolation { allocationViolation = size }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    let environment = ProcessInfo.processInfo.environment
    if let seeds = environment["SQUINT_FUZZ_WRITE_SEEDS"] {
        do { try writeGeneratedSeeds(to: seeds, fixtures: environment["SQUINT_FUZZ_FIXTURES"] ?? "fixtures") } catch {
            fputs("cannot write the generated seeds: \(error)\n", stderr); exit(1)
        }
        exit(0)
    }
    guard let name = environment["SQUINT_FUZZ_HARNESS"], let harness = FuzzHarness(rawValue: name) else {
        fputs("set SQUINT_FUZZ_HARNESS to one of: \(FuzzHarness.allCases.map(\.rawValue).joined(separator: ", "))\n", stderr)
        exit(2)
    }
    do {
        fuzzContext = try FuzzContext(harness: harness, fixtures: environment["SQUINT_FUZZ_FIXTURES"] ?? "fixtures")
    } catch {
        fputs("cannot set up harness \(name): \(error)\n", stderr)
        exit(2)
    }
    _ = installMallocHooks({ checkAllocation($0, $1) }, { _ in })
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let context = fuzzContext else { return 0 }
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let limit = context.harness.allocationFactor.map { allocationSlack + $0 * size } ?? Int.max
    allocationViolation = 0
    allocationLimit = limit
    defer {
        allocationLimit = Int.max
        if allocationViolation > 0 {
            fputs("ALLOCATION BOUND: \(context.harness.rawValue) allocated \(allocationViolation) bytes at once for a \(size)-byte input (limit \(limit))\n", stderr)
            abort()
        }
    }
    do {
        try context.run(bytes)
    } catch {
        // A reader may refuse any input, but only with its own typed error; anything else is a finding.
        if !context.harness.isExpected(error) {
            fputs("UNTYPED ERROR from \(context.harness.rawValue): \(type(of: error)): \(error)\n", stderr)
            abort()
        }
    }
    return 0
}

// MARK: - Generated seeds

/// `SQUINT_FUZZ_WRITE_SEEDS=<fixtures/fuzz> squint-fuzz` writes the two seeds no fixture provides in
/// a small enough size, then exits: `autogptq/tiny_module` (quantize_config.json, the part separator,
/// a model.safetensors with one 4-bit module [out 8, in 128, group 64, asymmetric, F16 bias] packed by
/// AutoGPTQLayout.toAutoGPTQ and one dense F16 tensor) and `sq4/tiny.sq4` (the same checkpoint through
/// AutoGPTQLayout.convertCheckpoint with fixtures/qwen-vl-tiny/config.json in its header).
func writeGeneratedSeeds(to root: String, fixtures: String) throws {
    let spec = QuantizedLinearSpec(name: "transformer.h.0.mlp.c_proj", outFeatures: 8, inFeatures: 128, groupSize: 64,
                                   symmetric: false, actOrder: false, hasBias: true)
    var state: UInt32 = 12345
    func next() -> UInt8 { state = state &* 1_103_515_245 &+ 12345; return UInt8(truncatingIfNeeded: state >> 16) }
    let codes = (0 ..< 8 * 64).map { _ in next() }
    let scales = (0 ..< 8 * 2).map { _ in UInt16(0x2C00) &+ UInt16(next() & 0x3F) }    // F16 around 0.06
    let zeros = (0 ..< 8 * 2).map { _ in 1 + next() % 14 }
    let bias = (0 ..< 8).map { _ in UInt16(0x3000) &+ UInt16(next()) }
    let record = try QuantizedLinearRecord(
        spec: spec, codes: OwnedBytes.view(name: spec.codesName, dtype: .u8, shape: [8, 64], codes),
        scales: OwnedBytes.view(name: spec.scalesName, dtype: .f16, shape: [8, 2], scales),
        zeros: OwnedBytes.view(name: spec.zerosName, dtype: .u8, shape: [8, 2], zeros), perm: nil,
        bias: OwnedBytes.view(name: spec.biasName, dtype: .f16, shape: [8], bias), path: "<seed>")
    let m = try AutoGPTQLayout.toAutoGPTQ(record, path: "<seed>")
    let dense = OwnedBytes.view(name: "transformer.ln_f.weight", dtype: .f16, shape: [8], [UInt16](repeating: 0x3C00, count: 8))
    let views = [m.qweight, m.qzeros, m.scales, m.gIdx] + [m.bias, dense].compactMap { $0 }
    let scratch = NSTemporaryDirectory() + "squint-fuzz-seeds-\(getpid())"
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let st = scratch + "/model.safetensors"
    let writer = try SafetensorsWriter(tensors: views.map { .init(name: $0.info.name, dtype: $0.info.dtype, shape: $0.info.shape) },
                                       metadata: ["format": "pt"], path: st)
    let byName = Dictionary(uniqueKeysWithValues: views.map { ($0.info.name, $0) })
    try writer.write(to: st, overwrite: true) { t, sink in try sink.write(byName[t.name]!.bytes) }
    let quantizeConfig = try Data(contentsOf: URL(fileURLWithPath: fixtures + "/qwen-vl/quantize_config.json"))
    let safetensors = try Data(contentsOf: URL(fileURLWithPath: st))
    try FileManager.default.createDirectory(atPath: root + "/autogptq", withIntermediateDirectories: true)
    try (quantizeConfig + Data(FuzzContext.partSeparator) + safetensors).write(to: URL(fileURLWithPath: root + "/autogptq/tiny_module"))

    let configPath = fixtures + "/qwen-vl-tiny/config.json"
    let cfgBytes = try Data(contentsOf: URL(fileURLWithPath: configPath))
    let config = try cfgBytes.withUnsafeBytes { try StrictJSON.parseObject($0, path: configPath, what: "config.json") }
    let header = SQ4Header(config: config, quantization: SQ4Quantization(groupSize: 64, sym: false), tokenizer: SQ4Tokenizer(),
                           provenance: SQ4Provenance(source: "fuzz seed", calibration: "none", tool: "squint-fuzz"))
    try FileManager.default.createDirectory(atPath: root + "/sq4", withIntermediateDirectories: true)
    try AutoGPTQLayout.convertCheckpoint(SafetensorsFile(path: st), header: header, to: root + "/sq4/tiny.sq4", overwrite: true)
}
