import Foundation
import LatentWatch

/// Locates the repository's committed data and reference fixtures.
enum Fixtures {
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let data = root.appendingPathComponent("Samples/Data/digits-mlp")
    static let reference = root.appendingPathComponent("Tests/Fixtures/reference")
    static let golden = root.appendingPathComponent("Tests/Fixtures/golden")

    static func array(_ url: URL) throws -> NumpyArray { try NumpyArray(contentsOf: url.path) }
    static func activations(_ split: String, _ layer: String) throws -> (values: [Float], rows: Int, dim: Int) {
        let a = try array(data.appendingPathComponent("\(split)_\(layer).npy"))
        return (a.floats(), a.shape[0], a.shape[1])
    }
    static func labels(_ split: String) throws -> [Int] {
        try array(data.appendingPathComponent("\(split)_labels.npy")).ints()
    }
    static func ref(_ name: String) throws -> [Double] {
        try array(reference.appendingPathComponent("\(name).npy")).doubles()
    }
}
