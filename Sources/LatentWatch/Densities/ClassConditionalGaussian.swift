import LatentWatchNumerics

/// Class-conditional Gaussians with a full covariance per class (Gaussian discriminant analysis, as in
/// DDU, Mukhoti et al. 2021). Priors are the class frequencies of the fitting data.
public struct ClassConditionalGaussian: LatentDensity {
    public static let familyName = "gda"

    /// One Gaussian per class, in ``classLabels`` order.
    public let components: [GaussianComponent]
    /// log pi_k.
    public let logPriors: [Double]
    /// Label of each class.
    public let labels: [Int]

    /// Creates a density from fitted parts.
    public init(components: [GaussianComponent], logPriors: [Double], labels: [Int]) {
        precondition(components.count == logPriors.count && components.count == labels.count && !components.isEmpty)
        self.components = components
        self.logPriors = logPriors
        self.labels = labels
    }

    public var dimension: Int { components[0].mean.count }
    public var componentCount: Int { components.count }
    public var classLabels: [Int]? { labels }
    public var precision: Precision { components[0].factor.precision }
    public var regularization: [AppliedRegularization] { components.map(\.regularization) }

    public func evaluate(
        _ z: UnsafePointer<Float>,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        components.evaluate(z, logWeights: logPriors, logJoint: logJoint, distances: distances, scratch: scratch)
    }

    public func evaluateBatch(
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

    public func converted(to precision: Precision) -> ClassConditionalGaussian {
        ClassConditionalGaussian(
            components: components.map { $0.converted(to: precision) },
            logPriors: logPriors,
            labels: labels
        )
    }

    public func encode(into sections: inout ModelSectionWriter) {
        sections.addFullGaussians(components, family: family, classLabels: labels, logWeights: logPriors)
    }

    public static func decode(from sections: ModelSectionReader) throws(ModelFileError) -> ClassConditionalGaussian {
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
    static func checkCounts(_ m: DensityDescriptor, needsLabels: Bool, normalizers: Int? = nil) throws(ModelFileError) {
        let k = m.components
        guard k >= 1, k <= 100_000, m.dimension >= 1, m.dimension <= 65_536 else {
            throw ModelFileError(
                .implausibleSize,
                "density declares \(k) components of dimension \(m.dimension)",
                remedy: "the file is corrupt; refit the model"
            )
        }
        guard m.logWeights.count == k, m.logNormalizers.count == (normalizers ?? k),
            m.regularization.count == (normalizers ?? k)
        else {
            throw ModelFileError(
                .inconsistentModel,
                "density metadata lists \(m.logWeights.count) weights, \(m.logNormalizers.count) normalisers and \(m.regularization.count) regularisation records for \(k) components",
                remedy: "refit or re-export the model"
            )
        }
        if needsLabels {
            guard let labels = m.classLabels, labels.count == k, Set(labels).count == k else {
                throw ModelFileError(
                    .inconsistentModel,
                    "a \(m.family) density needs \(k) distinct class labels",
                    remedy: "refit or re-export the model"
                )
            }
        }
        guard (m.logWeights + m.logNormalizers).allSatisfy({ $0.isFinite }) else {
            throw ModelFileError(
                .inconsistentModel,
                "density metadata holds non-finite weights or normalisers",
                remedy: "refit the model"
            )
        }
    }
}
