import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// One Gaussian N(mean, Sigma) stored for scoring: the mean and the inverse Cholesky factor
/// W = L^-1 (Sigma = L L^T), so that (x - mean)^T Sigma^-1 (x - mean) = ||W (x - mean)||^2, and the
/// log normaliser -1/2 (D log 2 pi + log det Sigma).
package struct GaussianComponent: Sendable {
    /// Mean, D floats.
    package let mean: [Float]
    /// W = L^-1, lower triangular.
    package let factor: PackedTriangular
    /// -1/2 (D log 2 pi + log det Sigma).
    package let logNormalizer: Double
    /// log det Sigma.
    package var logDeterminant: Double { -2 * logNormalizer - Double(mean.count) * log(2 * Double.pi) }
    /// The regularisation it was fitted with.
    package let regularization: AppliedRegularization

    /// Creates a component from stored parts.
    package init(mean: [Float], factor: PackedTriangular, logNormalizer: Double, regularization: AppliedRegularization)
    {
        self.mean = mean
        self.factor = factor
        self.logNormalizer = logNormalizer
        self.regularization = regularization
    }

    /// Fits from a covariance (full, row-major, double) and a mean.
    package init(
        mean: [Double],
        covariance: [Double],
        regularization: AppliedRegularization,
        precision: ElementType
    ) throws(NumericsError) {
        let d = mean.count
        let f = try GaussianFactorization(covariance: covariance, dimension: d)
        self.mean = mean.map { Float($0) }
        self.factor = PackedTriangular(lowerRowMajor: f.inverseFactor, dimension: d, precision: precision)
        self.logNormalizer = f.logNormalizer
        self.regularization = regularization
    }

    /// The same component with its factor stored at another precision.
    package func converted(to precision: ElementType) -> GaussianComponent {
        guard precision != factor.precision else { return self }
        return GaussianComponent(
            mean: mean,
            factor: PackedTriangular(rowPacked: factor.rowPacked(), dimension: mean.count, precision: precision),
            logNormalizer: logNormalizer,
            regularization: regularization
        )
    }

    /// Squared Mahalanobis distance of x; `scratch` holds ``PackedTriangular/paddedDimension(_:)`` floats.
    @inline(__always)
    package func squaredDistance(_ x: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>) -> Double {
        mean.withUnsafeBufferPointer { factor.squaredNorm(x: x, mu: $0.baseAddress!, scratch: scratch) }
    }
}

/// Double-precision factorisation of a covariance: W = L^-1 (dense, row-major) and the log normaliser.
package struct GaussianFactorization: Sendable {
    /// Dimension.
    package let dimension: Int
    /// L^-1, lower triangular, dense row-major.
    package let inverseFactor: [Double]
    /// -1/2 (D log 2 pi + log det Sigma).
    package let logNormalizer: Double

    /// Factorises a symmetric positive-definite covariance.
    package init(covariance: [Double], dimension d: Int) throws(NumericsError) {
        var l = covariance
        try LinearAlgebra.choleskyLower(&l, n: d)
        let logDet = 2 * LinearAlgebra.logDeterminantOfTriangular(l, n: d)
        try LinearAlgebra.invertLowerTriangular(&l, n: d)
        dimension = d
        inverseFactor = l
        logNormalizer = -0.5 * (Double(d) * log(2 * Double.pi) + logDet)
    }
}
