import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Class-conditional Gaussians with a full covariance per class (Gaussian discriminant analysis, as in
/// DDU, Mukhoti et al. 2021). Priors are the class frequencies of the fitting data.
package struct ClassConditionalGaussian: LatentDensity {
    package static let familyName = "gda"

    /// One Gaussian per class, in ``classLabels`` order.
    package let components: [GaussianComponent]
    /// log pi_k.
    package let logPriors: [Double]
    /// Label of each class.
    package let labels: [Int]

    /// Creates a density from fitted parts.
    package init(components: [GaussianComponent], logPriors: [Double], labels: [Int]) {
        precondition(components.count == logPriors.count && components.count == labels.count && !components.isEmpty)
        self.components = components
        self.logPriors = logPriors
        self.labels = labels
    }

    package var dimension: Int { components[0].mean.count }
    package var componentCount: Int { components.count }
    package var classLabels: [Int]? { labels }
    package var precision: ElementType { components[0].factor.precision }
    package var regularization: [AppliedRegularization] { components.map(\.regularization) }

    package func evaluate(
        _ z: UnsafePointer<Float>,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        components.evaluate(z, logWeights: logPriors, logJoint: logJoint, distances: distances, scratch: scratch)
    }

    package func evaluateBatch(
        _ z: UnsafePointer<Float>,
        count: Int,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        workspace: inout BatchWorkspace
    ) {
        components.evaluateBatch(
            z,
            count: count,
            logWeights: logPriors,
            logJoint: logJoint,
            distances: distances,
            workspace: &workspace
        )
    }

    package func converted(to precision: ElementType) -> ClassConditionalGaussian {
        ClassConditionalGaussian(
            components: components.map { $0.converted(to: precision) },
            logPriors: logPriors,
            labels: labels
        )
    }

    package func encode(into sections: inout ModelSectionWriter) {
        sections.addFullGaussians(components, family: family, classLabels: labels, logWeights: logPriors)
    }

    package static func decode(from sections: ModelSectionReader) throws(LatentWatchError) -> ClassConditionalGaussian {
        let m = sections.density
        try DensityDecoding.checkCounts(m, needsLabels: true)
        return ClassConditionalGaussian(
            components: try sections.fullGaussians(),
            logPriors: m.logWeights,
            labels: m.classLabels!
        )
    }
}

/// Shared checks of density descriptors.
enum DensityDecoding {
    static func checkCounts(_ m: DensityDescriptor, needsLabels: Bool, normalizers: Int? = nil) throws(LatentWatchError)
    {
        let k = m.components
        guard k >= 1, k <= 100_000, m.dimension >= 1, m.dimension <= 65_536 else {
            throw LatentWatchError(
                .implausibleSize,
                "density declares \(k) components of dimension \(m.dimension)",
                remedy: "the file is corrupt; refit the model"
            )
        }
        guard m.logWeights.count == k, m.logNormalizers.count == (normalizers ?? k),
            m.regularization.count == (normalizers ?? k)
        else {
            throw LatentWatchError(
                .inconsistentModel,
                "density metadata lists \(m.logWeights.count) weights, \(m.logNormalizers.count) normalisers and \(m.regularization.count) regularisation records for \(k) components",
                remedy: "refit or re-export the model"
            )
        }
        if needsLabels {
            guard let labels = m.classLabels, labels.count == k, Set(labels).count == k else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "a \(m.family) density needs \(k) distinct class labels",
                    remedy: "refit or re-export the model"
                )
            }
        }
        guard (m.logWeights + m.logNormalizers).allSatisfy({ $0.isFinite }) else {
            throw LatentWatchError(
                .inconsistentModel,
                "density metadata holds non-finite weights or normalisers",
                remedy: "refit the model"
            )
        }
    }
}

extension DensityFamily {
    /// `gda`: one Gaussian per class with its own covariance, shrinkage chosen per class.
    package static let classGaussians = DensityFamily(
        name: DensityFamilyName(ClassConditionalGaussian.familyName),
        summary: "class-conditional Gaussians, a full covariance per class (needs labels)",
        needsLabels: true,
        fit: { (ctx) throws(LatentWatchError) -> any LatentDensity in
            let stats = ctx.statistics
            let cfg = ctx.configuration
            var comps: [GaussianComponent] = []
            var logPriors: [Double] = []
            let labels = stats.classes.keys.sorted()
            let total = Double(stats.fitSamples)
            for label in labels {
                let (train, val, merged) = stats.moments(ofClass: label)
                guard merged.weight >= 2 else {
                    throw LatentWatchError(
                        .fitFailed,
                        "class \(label) has \(Int(merged.weight)) fitting sample(s); every class needs at least 2"
                    )
                }
                let (cov, reg) = try LatentModelFitter.regularizedCovariance(
                    train: train,
                    validation: val,
                    merged: merged,
                    d: ctx.dimension,
                    regularization: cfg.regularization
                )
                comps.append(
                    try LatentModelFitter.component(
                        mean: merged.mean,
                        covariance: cov,
                        regularization: reg,
                        precision: cfg.precision,
                        what: "class \(label)"
                    )
                )
                logPriors.append(log(merged.weight / total))
            }
            ctx.note(
                "gda shrinkage per class: "
                    + comps.map { LatentModelFitter.format3($0.regularization.shrinkage) }.joined(separator: ",")
            )
            return ClassConditionalGaussian(components: comps, logPriors: logPriors, labels: labels)
        },
        decode: { (r) throws(LatentWatchError) -> any LatentDensity in try ClassConditionalGaussian.decode(from: r) }
    )
}
