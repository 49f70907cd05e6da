import LatentWatchNumerics

/// Class-conditional Gaussians sharing one covariance (the Mahalanobis detector of Lee et al. 2018).
///
/// Scoring costs one triangular matrix-vector product whatever the number of classes: y = W (z - c) with
/// c the mean of the class means, then d2_k = ||y - W (mu_k - c)||^2 with the transformed means precomputed.
public struct TiedGaussian: LatentDensity {
    public static let familyName = "tied"

    /// Class means, row-major [K, D].
    public let means: [Float]
    /// The shared Gaussian's factor W = L^-1 (its mean is the centre c) and log normaliser.
    public let shared: GaussianComponent
    /// log pi_k.
    public let logPriors: [Double]
    /// Label of each class.
    public let labels: [Int]
    /// W (mu_k - c), row-major [K, paddedD].
    let transformedMeans: [Float]

    /// Creates a density; `shared.mean` is ignored and replaced by the mean of the class means.
    public init(means: [Float], shared: GaussianComponent, logPriors: [Double], labels: [Int]) {
        let k = labels.count
        let d = shared.factor.dimension
        precondition(means.count == k * d && logPriors.count == k && k > 0)
        var center = [Float](repeating: 0, count: d)
        for c in 0..<k { for j in 0..<d { center[j] += means[c * d + j] / Float(k) } }
        let comp = GaussianComponent(
            mean: center,
            factor: shared.factor,
            logNormalizer: shared.logNormalizer,
            regularization: shared.regularization
        )
        let dp = PackedTriangular.paddedDimension(d)
        var transformed = [Float](repeating: 0, count: k * dp)
        var xc = [Float](repeating: 0, count: dp)
        for c in 0..<k {
            for j in 0..<d { xc[j] = means[c * d + j] - center[j] }
            xc.withUnsafeBufferPointer { x in
                transformed.withUnsafeMutableBufferPointer { t in
                    comp.factor.multiply(centered: x.baseAddress!, into: t.baseAddress! + c * dp)
                }
            }
        }
        self.means = means
        self.shared = comp
        self.logPriors = logPriors
        self.labels = labels
        self.transformedMeans = transformed
    }

    public var dimension: Int { shared.factor.dimension }
    public var componentCount: Int { labels.count }
    public var classLabels: [Int]? { labels }
    public var precision: Precision { shared.factor.precision }
    public var regularization: [AppliedRegularization] { [shared.regularization] }

    public func evaluate(
        _ z: UnsafePointer<Float>,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let d = dimension
        let dp = PackedTriangular.paddedDimension(d)
        let xc = scratch
        let y = scratch + dp
        shared.mean.withUnsafeBufferPointer { c in
            for j in 0..<d { xc[j] = z[j] - c[j] }
        }
        for j in d..<dp { xc[j] = 0 }
        shared.factor.multiply(centered: xc, into: y)
        transformedMeans.withUnsafeBufferPointer { tm in
            for k in 0..<labels.count {
                let row = tm.baseAddress! + k * dp
                var s = 0.0
                for j in 0..<dp {
                    let diff = Double(y[j]) - Double(row[j])
                    s += diff * diff
                }
                distances[k] = s
                logJoint[k] = logPriors[k] + shared.logNormalizer - 0.5 * s
            }
        }
    }

    public func converted(to precision: Precision) -> TiedGaussian {
        TiedGaussian(means: means, shared: shared.converted(to: precision), logPriors: logPriors, labels: labels)
    }

    public func encode(into sections: inout ModelSectionWriter) {
        let d = dimension
        sections.density = DensityDescriptor(
            family: family,
            dimension: d,
            components: componentCount,
            precision: precision,
            classLabels: labels,
            logWeights: logPriors,
            logNormalizers: [shared.logNormalizer],
            regularization: regularization
        )
        sections.addFloats("density.means", means, shape: [componentCount, d], precision: precision)
        sections.addFactors("density.factors", [shared.factor], dimension: d)
    }

    public static func decode(from sections: ModelSectionReader) throws(ModelFileError) -> TiedGaussian {
        let m = sections.density
        try DensityDecoding.checkCounts(m, needsLabels: true, normalizers: 1)
        let means = try sections.floats("density.means", shape: [m.components, m.dimension])
        let factor = try sections.factors("density.factors", count: 1, dimension: m.dimension)[0]
        let shared = GaussianComponent(
            mean: [Float](repeating: 0, count: m.dimension),
            factor: factor,
            logNormalizer: m.logNormalizers[0],
            regularization: m.regularization[0]
        )
        return TiedGaussian(means: means, shared: shared, logPriors: m.logWeights, labels: m.classLabels!)
    }
}
