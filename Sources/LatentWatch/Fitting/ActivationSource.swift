/// One batch of raw activations handed to a fit: `count` activations of the source's shape stored back
/// to back, with optional integer class labels.
public struct ActivationBatch {
    /// The activations, row-major [count, product(shape)].
    public let values: UnsafeBufferPointer<Float>
    /// Number of activations.
    public let count: Int
    /// One class label per activation, when the source has labels.
    public let labels: UnsafeBufferPointer<Int>?

    /// Creates a batch view.
    public init(values: UnsafeBufferPointer<Float>, count: Int, labels: UnsafeBufferPointer<Int>?) {
        self.values = values
        self.count = count
        self.labels = labels
    }
}

/// Activations a fit reads in batches, possibly several times (EM makes one pass per iteration), so a
/// fit never needs all activations in memory at once. Every pass must yield the same activations in the
/// same order.
public protocol ActivationSource {
    /// Shape of one activation (for example [512] or [256, 7, 7]).
    var sampleShape: [Int] { get }
    /// Whether batches carry labels.
    var hasLabels: Bool { get }
    /// Calls `body` for every batch, in order. Throws what `body` or the reading throws.
    func forEachBatch(_ body: (ActivationBatch) throws -> Void) throws
}

/// Activations held in memory.
public struct InMemoryActivations: ActivationSource, Sendable {
    /// All activations, row-major.
    package let values: [Float]
    /// Labels, one per activation.
    package let labels: [Int]?
    public let sampleShape: [Int]
    /// Activations per batch handed to the fit.
    package let batchSize: Int

    /// Wraps arrays; `values.count` must be a multiple of the product of `shape`.
    public init(values: [Float], shape: [Int], labels: [Int]? = nil, batchSize: Int = 4096) {
        self.values = values
        self.sampleShape = shape
        self.labels = labels
        self.batchSize = max(1, batchSize)
    }

    /// Number of activations.
    package var count: Int { values.count / max(1, sampleShape.reduce(1, *)) }
    public var hasLabels: Bool { labels != nil }

    public func forEachBatch(_ body: (ActivationBatch) throws -> Void) throws {
        let n = sampleShape.reduce(1, *)
        let total = count
        try values.withUnsafeBufferPointer { v in
            var start = 0
            while start < total {
                let end = min(total, start + batchSize)
                let vb = UnsafeBufferPointer(rebasing: v[(start * n)..<(end * n)])
                if let labels {
                    try labels.withUnsafeBufferPointer { l in
                        try body(
                            ActivationBatch(
                                values: vb,
                                count: end - start,
                                labels: UnsafeBufferPointer(rebasing: l[start..<end])
                            )
                        )
                    }
                } else {
                    try body(ActivationBatch(values: vb, count: end - start, labels: nil))
                }
                start = end
            }
        }
    }
}
