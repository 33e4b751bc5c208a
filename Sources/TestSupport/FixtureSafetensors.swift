import Foundation
import SquintFormats

/// Typed access to the F32 / I32 tensors of a reference fixture, read through the project's own
/// strict `SafetensorsFile` reader.
public struct FixtureSafetensors {
    public let file: SafetensorsFile

    public init(path: String) throws { file = try SafetensorsFile(path: path) }

    func values<T>(_ name: String, _ dtype: DType, as: T.Type) throws -> (shape: [Int], values: [T]) {
        guard let info = file.info(name), info.dtype == dtype else {
            throw FormatError.missingTensor(path: file.path, name: "\(name) (\(dtype.rawValue))")
        }
        let v = try file.view(name)
        return (info.shape, Array(v.bytes.bindMemory(to: T.self)))
    }

    /// Float32 values of an F32 tensor.
    public func floats(_ name: String) throws -> (shape: [Int], values: [Float]) { try values(name, .f32, as: Float.self) }

    /// Int32 values of an I32 tensor.
    public func ints(_ name: String) throws -> (shape: [Int], values: [Int32]) { try values(name, .i32, as: Int32.self) }
}

/// The package root (the folder holding Package.swift).
public func packageRoot(from filePath: String = #filePath) -> String { Fixtures.packageRoot(filePath) }

/// Absolute path of a file under `fixtures/`.
public func fixturePath(_ relative: String, filePath: String = #filePath) -> String {
    Fixtures.path(relative, file: filePath)
}
