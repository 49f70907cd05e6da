/// Mergeable first and second moments of a (possibly weighted) sample: total weight, mean and centred
/// scatter matrix, all in double precision.
///
/// Batches are folded in with Chan et al.'s pairwise update, so that statistics computed on separate
/// shards and merged equal those of one pass over all the data (up to rounding), and no batch needs to stay
/// in memory. The scatter matrix keeps only its lower triangle up to date until ``scatterSymmetric`` is read.
package struct GaussianMoments: Sendable, Equatable {
    /// Dimension of the vectors.
    package let dimension: Int
    /// Sum of weights (the sample count when unweighted).
    package private(set) var weight: Double
    /// Number of vectors folded in, whatever their weights.
    package private(set) var count: Int
    /// Weighted mean.
    package private(set) var mean: [Double]
    /// Lower triangle of the weighted centred scatter sum_i w_i (x_i - mean)(x_i - mean)^T, row-major.
    package private(set) var scatterLower: [Double]

    /// Empty moments of the given dimension.
    package init(dimension: Int) {
        self.dimension = dimension
        self.weight = 0
        self.count = 0
        self.mean = [Double](repeating: 0, count: dimension)
        self.scatterLower = [Double](repeating: 0, count: dimension * dimension)
    }

    /// Restores moments from stored values (for example from a checkpoint); `scatter` may be full or lower.
    package init(dimension: Int, weight: Double, count: Int, mean: [Double], scatter: [Double]) {
        precondition(mean.count == dimension && scatter.count == dimension * dimension)
        self.dimension = dimension
        self.weight = weight
        self.count = count
        self.mean = mean
        self.scatterLower = scatter
    }

    /// The full symmetric scatter matrix.
    package var scatterSymmetric: [Double] {
        var s = scatterLower
        LinearAlgebra.symmetrizeFromLower(&s, n: dimension)
        return s
    }

    /// Maximum-likelihood covariance (scatter / weight), full symmetric.
    package var covariance: [Double] {
        var s = scatterSymmetric
        let inv = weight > 0 ? 1 / weight : 0
        for i in s.indices { s[i] *= inv }
        return s
    }

    /// Folds in `rows` vectors stored row-major in `data` (stride `dimension`), with optional weights.
    /// `workspace` is reused between calls to avoid allocation; pass the same array every time.
    ///
    /// The batch is centred on its own mean and its scatter is added to this one's in place by one SYRK,
    /// followed by Chan et al.'s rank-one correction for the difference of the means: no batch-sized
    /// moments are allocated or merged.
    package mutating func add(
        _ data: UnsafeBufferPointer<Float>,
        rows: Int,
        weights: UnsafeBufferPointer<Double>? = nil,
        workspace: inout [Double]
    ) {
        let d = dimension
        precondition(data.count >= rows * d, "GaussianMoments.add: buffer too small")
        guard rows > 0 else { return }
        if workspace.count < rows * d + d { workspace = [Double](repeating: 0, count: rows * d + d) }
        count += rows
        workspace.withUnsafeMutableBufferPointer { ws in
            // Batch weight and mean (in the workspace's last d slots).
            let mu = UnsafeMutableBufferPointer(rebasing: ws[(rows * d)..<(rows * d + d)])
            mu.update(repeating: 0)
            var w = 0.0
            for r in 0..<rows {
                let wr = weights?[r] ?? 1
                if wr == 0 { continue }
                w += wr
                let base = r * d
                for j in 0..<d { mu[j] += wr * Double(data[base + j]) }
            }
            guard w > 0 else { return }
            for j in 0..<d { mu[j] /= w }
            // Centred, sqrt-weighted rows.
            for r in 0..<rows {
                let s = (weights?[r] ?? 1).squareRoot()
                let base = r * d
                for j in 0..<d { ws[base + j] = s * (Double(data[base + j]) - mu[j]) }
            }
            let total = weight + w
            let factor = weight * w / total
            let ratio = w / total
            scatterLower.withUnsafeMutableBufferPointer { c in
                BLAS.dsyrkTransposed(
                    n: d,
                    k: rows,
                    alpha: 1,
                    a: ws.baseAddress!,
                    lda: d,
                    beta: 1,
                    c: c.baseAddress!,
                    ldc: d
                )
                if factor > 0 {
                    mean.withUnsafeMutableBufferPointer { m in
                        for i in 0..<d {
                            let di = (mu[i] - m[i]) * factor
                            let row = i * d
                            for j in 0...i { c[row + j] += di * (mu[j] - m[j]) }
                        }
                    }
                }
            }
            mean.withUnsafeMutableBufferPointer { m in
                for j in 0..<d { m[j] += (mu[j] - m[j]) * ratio }
            }
            weight = total
        }
    }

    /// Convenience for arrays.
    package mutating func add(_ data: [Float], rows: Int, weights: [Double]? = nil) {
        var ws: [Double] = []
        data.withUnsafeBufferPointer { d in
            if let weights {
                weights.withUnsafeBufferPointer { add(d, rows: rows, weights: $0, workspace: &ws) }
            } else {
                add(d, rows: rows, workspace: &ws)
            }
        }
    }

    /// Merges another set of moments of the same dimension into this one (Chan et al.).
    package mutating func merge(_ other: GaussianMoments) {
        precondition(other.dimension == dimension, "GaussianMoments.merge: dimensions differ")
        count += other.count
        guard other.weight > 0 else { return }
        guard weight > 0 else {
            weight = other.weight
            mean = other.mean
            scatterLower = other.scatterLower
            return
        }
        let d = dimension
        let total = weight + other.weight
        let factor = weight * other.weight / total
        var delta = [Double](repeating: 0, count: d)
        for j in 0..<d { delta[j] = other.mean[j] - mean[j] }
        for i in 0..<d {
            let di = delta[i] * factor
            let row = i * d
            for j in 0...i {
                scatterLower[row + j] += other.scatterLower[row + j] + di * delta[j]
            }
        }
        let ratio = other.weight / total
        for j in 0..<d { mean[j] += delta[j] * ratio }
        weight = total
    }

    /// Moments of the affine projection z = P^T (x - center) where P is dimension x k (row-major):
    /// mean' = P^T (mean - center), scatter' = P^T S P. Exact for every quantity a Gaussian fit needs.
    package func projected(onto p: [Double], k: Int, center: [Double]) -> GaussianMoments {
        let d = dimension
        precondition(p.count == d * k && center.count == d)
        var out = GaussianMoments(dimension: k)
        out.weight = weight
        out.count = count
        var shifted = [Double](repeating: 0, count: d)
        for j in 0..<d { shifted[j] = mean[j] - center[j] }
        for c in 0..<k {
            var s = 0.0
            for j in 0..<d { s += p[j * k + c] * shifted[j] }
            out.mean[c] = s
        }
        let full = scatterSymmetric
        var sp = [Double](repeating: 0, count: d * k)
        full.withUnsafeBufferPointer { a in
            p.withUnsafeBufferPointer { pb in
                sp.withUnsafeMutableBufferPointer { c in
                    BLAS.dgemm(
                        transA: false,
                        transB: false,
                        m: d,
                        n: k,
                        k: d,
                        alpha: 1,
                        a: a.baseAddress!,
                        lda: d,
                        b: pb.baseAddress!,
                        ldb: k,
                        beta: 0,
                        c: c.baseAddress!,
                        ldc: k
                    )
                }
            }
        }
        sp.withUnsafeBufferPointer { spb in
            p.withUnsafeBufferPointer { pb in
                out.scatterLower.withUnsafeMutableBufferPointer { c in
                    BLAS.dgemm(
                        transA: true,
                        transB: false,
                        m: k,
                        n: k,
                        k: d,
                        alpha: 1,
                        a: pb.baseAddress!,
                        lda: k,
                        b: spb.baseAddress!,
                        ldb: k,
                        beta: 0,
                        c: c.baseAddress!,
                        ldc: k
                    )
                }
            }
        }
        return out
    }
}
