/// Activations read from a file in batches of rows (any format ``TensorFile`` reads), so a fit never holds
/// the whole file in memory. Labels, when given, are held in memory (one integer per row).
public struct FileActivations: ActivationSource, @unchecked Sendable {
    /// The file.
    package let file: TensorFile
    /// The array read.
    package let tensor: TensorInfo
    /// Labels, one per row.
    package let labels: [Int]?
    /// Rows per batch.
    package let batchSize: Int

    /// Reads array `key` (nil: the only activation array) of `path`; labels must match its row count.
    public init(path: String, key: String? = nil, labels: [Int]? = nil, batchSize: Int = 4096) throws {
        let file = try TensorFile(path: path)
        try self.init(file: file, key: key, labels: labels, batchSize: batchSize)
    }

    /// Reads array `key` of an open file.
    public init(file: TensorFile, key: String? = nil, labels: [Int]? = nil, batchSize: Int = 4096) throws {
        let t = try file.tensor(key)
        guard t.shape.count >= 2 else {
            throw LatentWatchError.malformed(
                file.path,
                "array '\(t.name)' has shape \(t.shape); activations need [inputs, features...]"
            )
        }
        guard t.dtype.isFloatingPoint else {
            throw LatentWatchError.malformed(
                file.path,
                "array '\(t.name)' holds \(t.dtype.rawValue); activations must be floating point"
            )
        }
        if let labels, labels.count != t.rows {
            throw LatentWatchError.malformed(file.path, "\(labels.count) labels for \(t.rows) activations")
        }
        self.file = file
        self.tensor = t
        self.labels = labels
        self.batchSize = max(1, batchSize)
    }

    /// Number of rows.
    package var count: Int { tensor.rows }
    public var sampleShape: [Int] { tensor.rowShape }
    public var hasLabels: Bool { labels != nil }

    public func forEachBatch(_ body: (ActivationBatch) throws -> Void) throws {
        try file.forEachChunk(tensor.name, rowsPerChunk: batchSize) { values, rows in
            if let labels {
                try labels.withUnsafeBufferPointer { l in
                    try body(
                        ActivationBatch(
                            values: values,
                            count: rows.count,
                            labels: UnsafeBufferPointer(rebasing: l[rows])
                        )
                    )
                }
            } else {
                try body(ActivationBatch(values: values, count: rows.count, labels: nil))
            }
        }
    }
}
