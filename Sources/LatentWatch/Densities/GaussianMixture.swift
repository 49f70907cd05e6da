import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// An unsupervised Gaussian mixture fitted by EM, with full or diagonal covariances. Its components are
/// not classes: the "posterior" is over components, and there is no predicted class.
public struct GaussianMixture: LatentDensity {
    public static let familyName = "gmm-full"
    /// Family name of the diagonal-covariance variant.
    public static let fullFamilyName = "gmm-full"
    /// Family name of the diagonal-covariance variant.
    public static let diagonalFamilyName = "gmm-diag"

    /// Covariance structure.
    public enum Covariance: String, Sendable, Codable, CaseIterable {
        case full
        case diagonal
    }

    /// Parameters of one covariance structure.
    public enum Components: Sendable {
        /// Full covariance components.
        case full([GaussianComponent])
        /// Diagonal covariance: means and inverse standard deviations, row-major [K, D], and log normalisers.
        case diagonal(
            means: [Float],
            inverseStd: [Float],
            logNormalizers: [Double],
            regularization: [AppliedRegularization]
        )
    }

    /// The components.
    public let components: Components
    /// log mixture weights.
    public let logWeights: [Double]
    public let dimension: Int

    /// Creates a mixture from fitted parts.
    public init(components: Components, logWeights: [Double], dimension: Int) {
        self.components = components
        self.logWeights = logWeights
        self.dimension = dimension
    }

    public var family: String {
        if case .diagonal = components { return Self.diagonalFamilyName }
        return Self.fullFamilyName
    }
    public var covariance: Covariance {
        if case .diagonal = components { return .diagonal }
        return .full
    }
    public var componentCount: Int { logWeights.count }
    public var classLabels: [Int]? { nil }
    public var precision: Precision {
        if case .full(let c) = components { return c[0].factor.precision }
        return .float32
    }
    public var regularization: [AppliedRegularization] {
        switch components {
        case .full(let c): return c.map(\.regularization)
        case .diagonal(_, _, _, let r): return r
        }
    }

    public func evaluate(
        _ z: UnsafePointer<Float>,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        switch components {
        case .full(let comps):
            comps.evaluate(z, logWeights: logWeights, logJoint: logJoint, distances: distances, scratch: scratch)
        case .diagonal(let means, let inv, let norms, _):
            let d = dimension
            means.withUnsafeBufferPointer { mb in
                inv.withUnsafeBufferPointer { ib in
                    for k in 0..<logWeights.count {
                        var s = 0.0
                        let m = mb.baseAddress! + k * d
                        let w = ib.baseAddress! + k * d
                        for j in 0..<d {
                            let y = Double((z[j] - m[j]) * w[j])
                            s += y * y
                        }
                        distances[k] = s
                        logJoint[k] = logWeights[k] + norms[k] - 0.5 * s
                    }
                }
            }
        }
    }

    public func evaluateBatch(
        _ z: UnsafePointer<Float>,
        count: Int,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        workspace: inout BatchWorkspace
    ) {
        guard case .full(let comps) = components else {
            evaluateRowByRow(z, count: count, logJoint: logJoint, distances: distances, workspace: &workspace)
            return
        }
        comps.evaluateBatch(
            z,
            count: count,
            logWeights: logWeights,
            logJoint: logJoint,
            distances: distances,
            workspace: &workspace
        )
    }

    public func converted(to precision: Precision) -> GaussianMixture {
        guard case .full(let comps) = components else { return self }
        return GaussianMixture(
            components: .full(comps.map { $0.converted(to: precision) }),
            logWeights: logWeights,
            dimension: dimension
        )
    }

    public func encode(into sections: inout ModelSectionWriter) {
        let d = dimension
        switch components {
        case .full(let comps):
            sections.addFullGaussians(comps, family: family, classLabels: nil, logWeights: logWeights)
        case .diagonal(let means, let inv, let norms, let reg):
            sections.density = DensityDescriptor(
                family: family,
                dimension: d,
                components: componentCount,
                precision: .float32,
                classLabels: nil,
                logWeights: logWeights,
                logNormalizers: norms,
                regularization: reg
            )
            sections.addFloats("density.means", means, shape: [componentCount, d])
            sections.addFloats("density.inverse_std", inv, shape: [componentCount, d])
        }
    }

    public static func decode(from sections: ModelSectionReader) throws(ModelFileError) -> GaussianMixture {
        let m = sections.density
        try DensityDecoding.checkCounts(m, needsLabels: false)
        let d = m.dimension
        if m.family == diagonalFamilyName {
            let means = try sections.floats("density.means", shape: [m.components, d])
            let inv = try sections.floats("density.inverse_std", shape: [m.components, d])
            return GaussianMixture(
                components: .diagonal(
                    means: means,
                    inverseStd: inv,
                    logNormalizers: m.logNormalizers,
                    regularization: m.regularization
                ),
                logWeights: m.logWeights,
                dimension: d
            )
        }
        let comps = try sections.fullGaussians()
        return GaussianMixture(components: .full(comps), logWeights: m.logWeights, dimension: d)
    }
}
