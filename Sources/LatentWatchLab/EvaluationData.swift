import Foundation
import LatentWatch

/// A directory of evaluation arrays (Tests/Evaluation/README.md): `<layer>_<split>.npy`, `labels_<split>.npy` and
/// `logits_<split>.npy` for the splits train, cal, test and ood_<name>.
package struct EvaluationData: Sendable {
    /// The directory.
    package let directory: String
    /// The file names in it.
    package let files: [String]

    /// Opens the directory; a missing one is bad input (exit status 2).
    package init(_ directory: String) throws {
        self.directory = directory
        do { files = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw LabError("\(directory): not a readable directory (\(error.localizedDescription))", status: 2)
        }
    }

    /// The path of array `name` (without .npy).
    package func file(_ name: String) -> String { "\(directory)/\(name).npy" }

    /// The path of a layer's split.
    package func path(_ layer: String, _ split: String) -> String { file("\(layer)_\(split)") }

    /// Layers with a training split, sorted.
    package func layers() -> [String] {
        files.filter { $0.hasSuffix("_train.npy") && !$0.hasPrefix("labels") && !$0.hasPrefix("logits") }
            .map { String($0.dropLast("_train.npy".count)) }.sorted()
    }

    /// OOD set names with labels (`labels_ood_<name>.npy`), sorted.
    package func oodSetsWithLabels() -> [String] {
        files.filter { $0.hasPrefix("labels_ood_") && $0.hasSuffix(".npy") }
            .map { String($0.dropFirst("labels_ood_".count).dropLast(4)) }.sorted()
    }

    /// OOD set names a layer has activations for (`<layer>_ood_<name>.npy`), sorted.
    package func oodSets(ofLayer layer: String) -> [String] {
        files.filter { $0.hasPrefix("\(layer)_ood_") && $0.hasSuffix(".npy") }
            .map { String($0.dropFirst(layer.count + 5).dropLast(4)) }.sorted()
    }

    /// Opens every named array (header and size checks) before anything is fitted, so a missing or damaged
    /// file is named (exit status 2) instead of failing part-way.
    package func requireReadable(_ names: [String]) throws {
        for name in names {
            do { _ = try TensorFile(path: file(name)).tensor(nil) } catch {
                throw LabError("\(error)", status: 2)
            }
        }
    }

    /// Integer labels of array `name`.
    package func labels(_ name: String) throws -> [Int] {
        do { return try TensorFile(path: file(name)).ints() } catch {
            throw LabError("\(file(name)): \(error)", status: 2)
        }
    }
}

/// One split's activations in stable memory, so row views stay valid while a monitor reads them.
package final class ActivationMatrix {
    /// Row-major values.
    package let values: UnsafeMutableBufferPointer<Float>
    /// Rows (inputs).
    package let rows: Int
    /// Elements per row.
    package let dim: Int

    /// Reads the only (or first) array of a file.
    package init(path: String) throws {
        let f = try TensorFile(path: path)
        let t = try f.tensor(nil)
        let v = try f.floats(t.name)
        values = .allocate(capacity: v.count)
        _ = values.initialize(from: v)
        rows = t.rows
        dim = t.rowElements
    }

    deinit { values.deallocate() }

    /// Row `r`.
    package func row(_ r: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: values[(r * dim)..<((r + 1) * dim)])
    }

    /// A copy of all values.
    package var array: [Float] { Array(values) }
}
