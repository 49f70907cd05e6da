import LatentWatchNumerics

/// Buffers for scoring one input at a time without allocation. Make one per thread with
/// ``LatentModel/makeWorkspace()``; it is not safe to share between threads.
public final class ScoringWorkspace {
    let prepared: UnsafeMutableBufferPointer<Float>
    let pooled: UnsafeMutableBufferPointer<Float>
    let scratch: UnsafeMutableBufferPointer<Float>
    let logJoint: UnsafeMutableBufferPointer<Double>
    let distances: UnsafeMutableBufferPointer<Double>
    var batch = BatchWorkspace()
    /// The neighbour index's per-cell distances (empty without an index).
    let neighbourScratch: UnsafeMutableBufferPointer<Float>

    /// The posterior p(k | z) of the last scored input, one value per component.
    public var posterior: UnsafeBufferPointer<Double> { UnsafeBufferPointer(logJoint) }
    /// Squared Mahalanobis distances of the last scored input, one per component.
    package var squaredDistances: UnsafeBufferPointer<Double> { UnsafeBufferPointer(distances) }
    /// The prepared latent vector z of the last scored input.
    package var latent: UnsafeBufferPointer<Float> { UnsafeBufferPointer(prepared) }

    init(pooledDimension: Int, outputDimension: Int, components: Int, neighbourCells: Int = 0) {
        neighbourScratch = .allocate(capacity: max(neighbourCells, 1))
        neighbourScratch.initialize(repeating: 0)
        prepared = .allocate(capacity: PackedTriangular.paddedDimension(outputDimension))
        prepared.initialize(repeating: 0)
        pooled = .allocate(capacity: max(pooledDimension, 1))
        pooled.initialize(repeating: 0)
        scratch = .allocate(capacity: DensityScratch.floatCount(dimension: max(pooledDimension, outputDimension)))
        scratch.initialize(repeating: 0)
        logJoint = .allocate(capacity: components)
        logJoint.initialize(repeating: 0)
        distances = .allocate(capacity: components)
        distances.initialize(repeating: 0)
    }

    deinit {
        prepared.deallocate()
        pooled.deallocate()
        scratch.deallocate()
        logJoint.deallocate()
        distances.deallocate()
        neighbourScratch.deallocate()
    }
}
