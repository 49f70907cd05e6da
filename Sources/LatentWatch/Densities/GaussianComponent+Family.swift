import LatentWatchNumerics

/// What families made of full-covariance components (GDA, full mixtures) share: scoring against a set of
/// log weights, and their tensors in model files.
extension Array where Element == GaussianComponent {
    /// log w_k + log N(z; k) and d2_k for every component.
    func evaluate(
        _ z: UnsafePointer<Float>,
        logWeights: [Double],
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        for k in 0..<count {
            let d2 = self[k].squaredDistance(z, scratch: scratch)
            distances[k] = d2
            logJoint[k] = logWeights[k] + self[k].logNormalizer - 0.5 * d2
        }
    }

    /// The same for `n` vectors, outputs [n, count].
    func evaluateBatch(
        _ z: UnsafePointer<Float>,
        count n: Int,
        logWeights: [Double],
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        workspace: inout BatchWorkspace
    ) {
        let kk = count
        for k in 0..<kk {
            self[k].squaredDistances(z, count: n, into: distances + k, stride: kk, workspace: &workspace)
            let base = logWeights[k] + self[k].logNormalizer
            for i in 0..<n { logJoint[i * kk + k] = base - 0.5 * distances[i * kk + k] }
        }
    }
}

extension ModelSectionWriter {
    /// Writes full-covariance components: the descriptor, `density.means` and `density.factors`.
    mutating func addFullGaussians(
        _ comps: [GaussianComponent],
        family: String,
        classLabels: [Int]?,
        logWeights: [Double]
    ) {
        let d = comps[0].mean.count
        let precision = comps[0].factor.precision
        density = DensityDescriptor(
            family: family,
            dimension: d,
            components: comps.count,
            precision: precision,
            classLabels: classLabels,
            logWeights: logWeights,
            logNormalizers: comps.map(\.logNormalizer),
            regularization: comps.map(\.regularization)
        )
        addFloats("density.means", comps.flatMap(\.mean), shape: [comps.count, d], precision: precision)
        addFactors("density.factors", comps.map(\.factor), dimension: d)
    }
}

extension ModelSectionReader {
    /// Reads the components written by ``ModelSectionWriter/addFullGaussians(_:family:classLabels:logWeights:)``.
    func fullGaussians() throws(LatentWatchError) -> [GaussianComponent] {
        let m = density
        let d = m.dimension
        let means = try floats("density.means", shape: [m.components, d])
        let factors = try factors("density.factors", count: m.components, dimension: d)
        return (0..<m.components).map {
            GaussianComponent(
                mean: Array(means[($0 * d)..<(($0 + 1) * d)]),
                factor: factors[$0],
                logNormalizer: m.logNormalizers[$0],
                regularization: m.regularization[$0]
            )
        }
    }
}
