#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Covariance regularisation: Sigma = (1 - lambda) C + lambda (tr C / D) I + (floorRatio * tr C / D + ridge) I.
///
/// The shrinkage towards a scaled identity keeps rank-deficient and badly conditioned covariances (dead
/// ReLU units, fewer samples than dimensions) invertible; the floor makes every factorisation succeed.
public struct Regularization: Sendable, Equatable {
    /// How the shrinkage amount lambda is chosen.
    public enum Shrinkage: Sendable, Equatable {
        /// Pick lambda on a grid by the held-out Gaussian log-likelihood of a validation part of the
        /// fitting data (computed from sufficient statistics alone). The default.
        case heldOutLikelihood
        /// The oracle approximating shrinkage estimator of Chen et al. (2010), computed from the covariance
        /// alone (no validation data needed).
        case oracleApproximating
        /// A fixed lambda in [0, 1].
        case fixed(Double)
    }

    /// How lambda is chosen.
    public var shrinkage: Shrinkage
    /// Relative floor added to the diagonal, as a fraction of the average variance tr(C)/D.
    public var floorRatio: Double
    /// Absolute amount added to the diagonal (scikit-learn's reg_covar).
    public var ridge: Double
    /// Fraction of fitting samples held out to choose lambda (they are merged back for the final fit).
    public var validationFraction: Double

    /// Defaults: held-out likelihood, floor 1e-6 of the average variance, no absolute ridge, 20 % validation.
    public init(
        shrinkage: Shrinkage = .heldOutLikelihood,
        floorRatio: Double = 1e-6,
        ridge: Double = 0,
        validationFraction: Double = 0.2
    ) {
        self.shrinkage = shrinkage
        self.floorRatio = floorRatio
        self.ridge = ridge
        self.validationFraction = validationFraction
    }

    /// The lambda grid searched by ``Shrinkage/heldOutLikelihood``: 0 and 10^-6 ... 1 in steps of 0.1 decade.
    public static let searchGrid: [Double] = [0] + (0...60).map { pow10(Double($0 - 60) / 10) }

    private static func pow10(_ e: Double) -> Double { exp(e * log(10)) }
}

/// What regularisation a fitted covariance actually got, stored in the model.
package struct AppliedRegularization: Sendable, Equatable, Codable {
    /// Shrinkage lambda applied.
    package var shrinkage: Double
    /// Total amount added to the diagonal besides shrinkage (floor + ridge), in absolute units.
    package var diagonalLoad: Double
    /// How lambda was chosen: "held-out", "oas", "fixed", or "oas-fallback" when there was no validation data.
    package var method: String

    /// Creates a record.
    package init(shrinkage: Double, diagonalLoad: Double, method: String) {
        self.shrinkage = shrinkage
        self.diagonalLoad = diagonalLoad
        self.method = method
    }
}
