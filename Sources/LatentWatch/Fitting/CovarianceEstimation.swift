import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Regularised covariance estimation from sufficient statistics.
enum CovarianceEstimation {
    /// R(C) = (1 - lambda) C + lambda t I + (floorRatio t + ridge) I with t = tr(C) / D.
    static func regularize(
        _ c: [Double],
        dimension d: Int,
        lambda: Double,
        floorRatio: Double,
        ridge: Double,
        method: String
    ) -> ([Double], AppliedRegularization) {
        let t = max(LinearAlgebra.trace(c, n: d) / Double(d), 0)
        var out = c
        for i in out.indices { out[i] *= (1 - lambda) }
        let load = floorRatio * t + ridge
        // Guard against an all-zero covariance (a constant layer): a positive diagonal keeps the fit valid.
        let extra = (t == 0 && load == 0) ? 1e-12 : 0
        for i in 0..<d { out[i * d + i] += lambda * t + load + extra }
        return (out, AppliedRegularization(shrinkage: lambda, diagonalLoad: load + extra, method: method))
    }

    /// Oracle approximating shrinkage (Chen, Wiesel, Eldar, Hero 2010), as scikit-learn's `oas`.
    static func oasShrinkage(_ c: [Double], dimension d: Int, samples n: Double) -> Double {
        let mu = LinearAlgebra.trace(c, n: d) / Double(d)
        var sumSq = 0.0
        for v in c { sumSq += v * v }
        let alpha = sumSq / Double(d * d)
        let num = alpha + mu * mu
        let den = (n + 1) * (alpha - mu * mu / Double(d))
        if den <= 0 { return 1 }
        return min(max(num / den, 0), 1)
    }

    /// Chooses lambda on ``Regularization/searchGrid`` by the Gaussian log-likelihood of validation data
    /// whose second moment about the fitted mean(s) is `m` (D x D) and weight `nv`, with the covariance
    /// fitted on training data `c`. Uses one eigen-decomposition of `c`: every candidate shares its
    /// eigenvectors, so each costs O(D).
    static func selectShrinkage(
        train c: [Double],
        dimension d: Int,
        validationSecondMoment m: [Double],
        validationWeight nv: Double,
        floorRatio: Double,
        ridge: Double
    ) throws(NumericsError) -> (lambda: Double, logLikelihood: Double) {
        let (s, v) = try LinearAlgebra.symmetricEigen(c, n: d)
        var a = [Double](repeating: 0, count: d * d)
        m.withUnsafeBufferPointer { mb in
            v.withUnsafeBufferPointer { vb in
                a.withUnsafeMutableBufferPointer { ab in
                    BLAS.dgemm(
                        transA: false,
                        transB: false,
                        m: d,
                        n: d,
                        k: d,
                        alpha: 1,
                        a: mb.baseAddress!,
                        lda: d,
                        b: vb.baseAddress!,
                        ldb: d,
                        beta: 0,
                        c: ab.baseAddress!,
                        ldc: d
                    )
                }
            }
        }
        var q = [Double](repeating: 0, count: d)
        for j in 0..<d {
            for i in 0..<d { q[i] += v[j * d + i] * a[j * d + i] }
        }
        let t = max(s.reduce(0, +) / Double(d), 0)
        var best = (lambda: 0.0, logLikelihood: -Double.infinity)
        for lambda in Regularization.searchGrid {
            var logDet = 0.0
            var quad = 0.0
            var ok = true
            for i in 0..<d {
                let e = (1 - lambda) * max(s[i], 0) + lambda * t + floorRatio * t + ridge
                if !(e > 0) {
                    ok = false
                    break
                }
                logDet += log(e)
                quad += q[i] / e
            }
            guard ok else { continue }
            let ll = -0.5 * (Double(d) * log(2 * Double.pi) + logDet + quad / nv)
            if ll > best.logLikelihood { best = (lambda, ll) }
        }
        return best
    }

    /// Second moment of validation data about `center`: S_val + n_v (mean_val - center)(mean_val - center)^T.
    static func secondMoment(of val: GaussianMoments, about center: [Double]) -> [Double] {
        let d = val.dimension
        var m = val.scatterSymmetric
        for i in 0..<d {
            let di = val.mean[i] - center[i]
            for j in 0..<d { m[i * d + j] += val.weight * di * (val.mean[j] - center[j]) }
        }
        return m
    }
}
