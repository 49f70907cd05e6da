import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Class-conditional Gaussians sharing one covariance (the Mahalanobis detector of Lee et al. 2018).
///
/// Scoring costs one triangular matrix-vector product whatever the number of classes: y = W (z - c) with
/// c the mean of the class means, then d2_k = ||y - W (mu_k - c)||^2 with the transformed means precomputed.
package struct TiedGaussian: LatentDensity {
    package static let familyName = "tied"

    /// Class means, row-major [K, D].
    package let means: [Float]
    /// The shared Gaussian's factor W = L^-1 (its mean is the centre c) and log normaliser.
    package let shared: GaussianComponent
    /// log pi_k.
    package let logPriors: [Double]
    /// Label of each class.
    package let labels: [Int]
    /// W (mu_k - c), row-major [K, paddedD].
    let transformedMeans: [Float]

    /// Creates a density; `shared.mean` is ignored and replaced by the mean of the class means.
    package init(means: [Float], shared: GaussianComponent, logPriors: [Double], labels: [Int]) {
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

    package var dimension: Int { shared.factor.dimension }
    package var componentCount: Int { labels.count }
    package var classLabels: [Int]? { labels }
    package var precision: ElementType { shared.factor.precision }
    package var regularization: [AppliedRegularization] { [shared.regularization] }

    package func evaluate(
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
                let s = PackedTriangular.squaredDistance(y, tm.baseAddress! + k * dp, count: dp)
                distances[k] = s
                logJoint[k] = logPriors[k] + shared.logNormalizer - 0.5 * s
            }
        }
    }

    package func converted(to precision: ElementType) -> TiedGaussian {
        TiedGaussian(means: means, shared: shared.converted(to: precision), logPriors: logPriors, labels: labels)
    }

    package func encode(into sections: inout ModelSectionWriter) {
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

    package static func decode(from sections: ModelSectionReader) throws(LatentWatchError) -> TiedGaussian {
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

extension DensityFamily {
    /// `tied`: class means with one shared covariance (Mahalanobis, Lee et al. 2018).
    package static let tiedGaussian = DensityFamily(
        name: DensityFamilyName(TiedGaussian.familyName),
        summary: "class means with one tied covariance: Mahalanobis (needs labels)",
        needsLabels: true,
        fit: { (ctx) throws(LatentWatchError) -> any LatentDensity in
            let stats = ctx.statistics
            let cfg = ctx.configuration
            let d = ctx.dimension
            let labels = stats.classes.keys.sorted()
            var pooledTrain = [Double](repeating: 0, count: d * d)
            var pooledAll = [Double](repeating: 0, count: d * d)
            var valMoment = [Double](repeating: 0, count: d * d)
            var nTrain = 0.0
            var nVal = 0.0
            var nAll = 0.0
            var means: [Float] = []
            var logPriors: [Double] = []
            for label in labels {
                let (train, val, merged) = stats.moments(ofClass: label)
                guard merged.weight >= 1 else {
                    throw LatentWatchError(.fitFailed, "class \(label) has no fitting samples")
                }
                let st = train.scatterSymmetric
                let sa = merged.scatterSymmetric
                for i in 0..<(d * d) {
                    pooledTrain[i] += st[i]
                    pooledAll[i] += sa[i]
                }
                if val.weight > 0 && train.weight > 0 {
                    let m = CovarianceEstimation.secondMoment(of: val, about: train.mean)
                    for i in 0..<(d * d) { valMoment[i] += m[i] }
                    nVal += val.weight
                }
                nTrain += train.weight
                nAll += merged.weight
                means += merged.mean.map { Float($0) }
                logPriors.append(merged.weight)
            }
            logPriors = logPriors.map { log($0 / nAll) }
            let cTrain = pooledTrain.map { $0 / max(nTrain, 1) }
            let cAll = pooledAll.map { $0 / nAll }
            let (lambda, method) = try LatentModelFitter.chooseShrinkage(
                cfg.regularization,
                train: cTrain,
                all: cAll,
                d: d,
                nAll: nAll,
                validationMoment: nVal > 0 ? valMoment : nil,
                nVal: nVal
            )
            let (cov, reg) = CovarianceEstimation.regularize(
                cAll,
                dimension: d,
                lambda: lambda,
                floorRatio: cfg.regularization.floorRatio,
                ridge: cfg.regularization.ridge,
                method: method
            )
            let shared = try LatentModelFitter.component(
                mean: [Double](repeating: 0, count: d),
                covariance: cov,
                regularization: reg,
                precision: cfg.precision,
                what: "the tied covariance"
            )
            ctx.note("tied shrinkage: \(LatentModelFitter.format3(lambda)) (\(method))")
            return TiedGaussian(means: means, shared: shared, logPriors: logPriors, labels: labels)
        },
        decode: { (r) throws(LatentWatchError) -> any LatentDensity in try TiedGaussian.decode(from: r) }
    )
}
