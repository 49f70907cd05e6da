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
package struct GaussianMixture: LatentDensity {
    package static let familyName = "gmm-full"
    /// Family name of the full-covariance variant.
    package static let fullFamilyName = "gmm-full"
    /// Family name of the diagonal-covariance variant.
    package static let diagonalFamilyName = "gmm-diag"

    /// Covariance structure.
    package enum Covariance: String, Sendable, Codable, CaseIterable {
        case full
        case diagonal
    }

    /// Parameters of one covariance structure.
    package enum Components: Sendable {
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
    package let components: Components
    /// log mixture weights.
    package let logWeights: [Double]
    package let dimension: Int

    /// Creates a mixture from fitted parts.
    package init(components: Components, logWeights: [Double], dimension: Int) {
        self.components = components
        self.logWeights = logWeights
        self.dimension = dimension
    }

    package var family: String {
        if case .diagonal = components { return Self.diagonalFamilyName }
        return Self.fullFamilyName
    }
    package var covariance: Covariance {
        if case .diagonal = components { return .diagonal }
        return .full
    }
    package var componentCount: Int { logWeights.count }
    package var classLabels: [Int]? { nil }
    package var precision: ElementType {
        if case .full(let c) = components { return c[0].factor.precision }
        return .float32
    }
    package var regularization: [AppliedRegularization] {
        switch components {
        case .full(let c): return c.map(\.regularization)
        case .diagonal(_, _, _, let r): return r
        }
    }

    package func evaluate(
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

    package func evaluateBatch(
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

    package func converted(to precision: ElementType) -> GaussianMixture {
        guard case .full(let comps) = components else { return self }
        return GaussianMixture(
            components: .full(comps.map { $0.converted(to: precision) }),
            logWeights: logWeights,
            dimension: dimension
        )
    }

    package func encode(into sections: inout ModelSectionWriter) {
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

    package static func decode(from sections: ModelSectionReader) throws(LatentWatchError) -> GaussianMixture {
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

extension DensityFamily {
    /// `gmm-full`: an unsupervised mixture of full-covariance Gaussians fitted by EM.
    package static let gaussianMixtureFull = mixture(.full)
    /// `gmm-diag`: an unsupervised mixture of diagonal-covariance Gaussians fitted by EM.
    package static let gaussianMixtureDiagonal = mixture(.diagonal)

    static func mixture(_ covariance: GaussianMixture.Covariance) -> DensityFamily {
        DensityFamily(
            name: DensityFamilyName(
                covariance == .full ? GaussianMixture.fullFamilyName : GaussianMixture.diagonalFamilyName
            ),
            aliases: covariance == .full ? ["gmm"] : [],
            summary:
                "unsupervised Gaussian mixture, \(covariance == .full ? "full" : "diagonal") covariances, fitted by EM (no labels)",
            needsLabels: false,
            needsPasses: true,
            fit: { (ctx) throws(LatentWatchError) -> any LatentDensity in
                try LatentModelFitter.fitMixture(ctx, covariance: covariance)
            },
            decode: { (r) throws(LatentWatchError) -> any LatentDensity in try GaussianMixture.decode(from: r) }
        )
    }
}
