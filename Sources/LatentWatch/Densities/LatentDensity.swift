import LatentWatchNumerics

/// A fitted density over latent vectors: the seam every density family implements. A family is one file with
/// a type conforming to this protocol and its ``DensityFamily`` (how to fit and decode it), plus one line in
/// ``DensityFamilyRegistry/standard``.
///
/// `evaluate` writes, for each component k (a class, or a mixture component), the log joint
/// log pi_k + log p(z | k) and the squared Mahalanobis distance d2_k; everything users see (log p(z),
/// the posterior, its entropy, the nearest-class distance) is derived from those two arrays.
package protocol LatentDensity: Sendable {
    /// The family name written into model files ("gda", "tied", "gmm-full", "gmm-diag", "regression", ...).
    static var familyName: String { get }
    /// The family name of this instance (a type may implement several, like full and diagonal mixtures).
    var family: String { get }
    /// Dimension of the latent vectors.
    var dimension: Int { get }
    /// Number of components (classes or mixture components).
    var componentCount: Int { get }
    /// Class label of each component, when the components are classes; nil for unsupervised mixtures.
    var classLabels: [Int]? { get }
    /// The target bins, when the components are bins of a regression model's real-valued target (component b is
    /// bin b); nil otherwise.
    var targetBins: TargetBins? { get }
    /// Storage precision of the parameters.
    var precision: ElementType { get }
    /// Per-component regularisation as fitted.
    var regularization: [AppliedRegularization] { get }

    /// Scores one latent vector: writes `componentCount` values to `logJoint` and `distances`.
    /// `scratch` holds at least ``DensityScratch/floatCount(dimension:)`` floats. Must not allocate.
    func evaluate(
        _ z: UnsafePointer<Float>,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        scratch: UnsafeMutablePointer<Float>
    )

    /// Scores `count` latent vectors (row-major); outputs are [count, componentCount]. A family may use
    /// BLAS for large batches; the default loops over ``evaluate(_:logJoint:distances:scratch:)``.
    func evaluateBatch(
        _ z: UnsafePointer<Float>,
        count: Int,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        workspace: inout BatchWorkspace
    )

    /// The same density with parameters stored at another precision.
    func converted(to precision: ElementType) -> Self

    /// Writes the family's parameters: JSON fields into `metadata`, arrays as tensors.
    func encode(into sections: inout ModelSectionWriter)

    /// Reads the family's parameters back; throws ``LatentWatchError`` with code `inconsistentModel` when a
    /// tensor is missing or its shape disagrees.
    static func decode(from sections: ModelSectionReader) throws(LatentWatchError) -> Self
}

/// Scratch space sizes for density evaluation.
package enum DensityScratch {
    /// Floats a single-vector scratch buffer needs for a dimension.
    package static func floatCount(dimension: Int) -> Int { 2 * PackedTriangular.paddedDimension(dimension) + 8 }
}

/// Reusable buffers for batch evaluation; grows on first use, then allocates nothing for batches of the
/// same or smaller size.
package struct BatchWorkspace: ~Copyable {
    var floats: UnsafeMutableBufferPointer<Float>

    /// An empty workspace.
    package init() {
        floats = .allocate(capacity: 0)
    }

    deinit {
        floats.deallocate()
    }

    mutating func floats(atLeast n: Int) -> UnsafeMutablePointer<Float> {
        if floats.count < n {
            floats.deallocate()
            floats = .allocate(capacity: n)
        }
        return floats.baseAddress!
    }
}

extension LatentDensity {
    package var family: String { Self.familyName }
    package var targetBins: TargetBins? { nil }

    package func evaluateBatch(
        _ z: UnsafePointer<Float>,
        count: Int,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        workspace: inout BatchWorkspace
    ) {
        evaluateRowByRow(z, count: count, logJoint: logJoint, distances: distances, workspace: &workspace)
    }

    /// Batch evaluation as `count` single evaluations: the default, and the fallback of families whose
    /// batched kernel covers only some of their forms.
    func evaluateRowByRow(
        _ z: UnsafePointer<Float>,
        count: Int,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        workspace: inout BatchWorkspace
    ) {
        let k = componentCount
        let scratch = workspace.floats(atLeast: DensityScratch.floatCount(dimension: dimension))
        for i in 0..<count {
            evaluate(z + i * dimension, logJoint: logJoint + i * k, distances: distances + i * k, scratch: scratch)
        }
    }
}
