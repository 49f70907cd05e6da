import Foundation

@testable import LatentWatch

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

/// A statistics file's metadata to change, and the file sealed again around the changed metadata (valid checksums):
/// for tests that readers refuse files whose metadata lies.
struct CraftedStatistics {
    let payloads: [Int: [UInt8]]
    /// The file's metadata as JSON objects.
    let meta: [String: Any]

    init(_ good: [UInt8]) throws {
        payloads = try ModelFile.sectionPayloads(good)
        meta = try JSONSerialization.jsonObject(with: Data(payloads[0]!)) as! [String: Any]
    }

    /// The file with its metadata changed by `change`.
    func bytes(_ change: (inout [String: Any]) -> Void) throws -> [UInt8] {
        var m = meta
        change(&m)
        let json = Array(try JSONSerialization.data(withJSONObject: m, options: [.sortedKeys]))
        let tensors = (1..<payloads.count).map { (kind: "TNSR", bytes: payloads[$0]!, width: 8) }
        return try ModelFile.container([(kind: "META", bytes: json, width: 1)] + tensors, level: 1)
    }
}
