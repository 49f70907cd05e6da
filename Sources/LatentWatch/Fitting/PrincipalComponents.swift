import LatentWatchNumerics

/// PCA from sufficient statistics.
enum PrincipalComponents {
    /// Leading components of the covariance of `moments`: returns the projection matrix P (D x k, row-major,
    /// columns are components), the kept variances, and k. Sign convention: each component's largest-magnitude
    /// entry is positive.
    static func fit(
        _ moments: GaussianMoments,
        projection: PreparationOptions.Projection
    ) throws -> (p: [Double], variances: [Double], k: Int) {
        let d = moments.dimension
        let (values, vectors) = try LinearAlgebra.symmetricEigen(moments.covariance, n: d)
        let order = Array((0..<d).reversed())
        let k: Int
        switch projection {
        case .none: return ([], [], d)
        case .components(let n):
            guard n >= 1 else { throw LatentWatchError(.fitFailed, "PCA needs at least 1 component, got \(n)") }
            guard n <= d else {
                throw LatentWatchError(
                    .fitFailed,
                    "PCA asks for \(n) components but the pooled activation has only \(d) dimensions"
                )
            }
            k = n
        case .varianceFraction(let f):
            guard f > 0, f <= 1 else {
                throw LatentWatchError(.fitFailed, "PCA variance fraction must be in (0, 1], got \(f)")
            }
            let total = values.reduce(0) { $0 + max($1, 0) }
            var acc = 0.0
            var n = 0
            for i in order {
                acc += max(values[i], 0)
                n += 1
                if acc >= f * total { break }
            }
            k = max(1, n)
        }
        var p = [Double](repeating: 0, count: d * k)
        var variances: [Double] = []
        for c in 0..<k {
            let col = order[c]
            variances.append(values[col])
            var bigIndex = 0
            for j in 0..<d where abs(vectors[j * d + col]) > abs(vectors[bigIndex * d + col]) { bigIndex = j }
            let sign: Double = vectors[bigIndex * d + col] < 0 ? -1 : 1
            for j in 0..<d { p[j * k + c] = sign * vectors[j * d + col] }
        }
        return (p, variances, k)
    }
}
