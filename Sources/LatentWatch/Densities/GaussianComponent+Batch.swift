import LatentWatchNumerics

extension GaussianComponent {
    /// Batches at least this large go through BLAS (strmm); smaller ones stream the packed factor once
    /// per vector.
    static let blasBatchThreshold = 16
    /// Rows of W per block in the blocked batch product.
    static let blockSize = 128

    /// Squared distances of `count` row-major vectors, written with stride `stride` into `out`.
    func squaredDistances(
        _ z: UnsafePointer<Float>,
        count: Int,
        into out: UnsafeMutablePointer<Double>,
        stride: Int,
        workspace: inout BatchWorkspace
    ) {
        let d = mean.count
        if count < Self.blasBatchThreshold {
            let scratch = workspace.floats(atLeast: PackedTriangular.paddedDimension(d))
            for i in 0..<count { out[i * stride] = squaredDistance(z + i * d, scratch: scratch) }
            return
        }
        // Y = (Z - mu) W^T in place, blocked by rows of W: for the rows I = [i0, i1),
        // Y[:, I] = Xc[:, I] W[I, I]^T (triangular) + Xc[:, 0..<i0] W[I, 0..<i0]^T (general). Blocks go from
        // the last to the first, so the columns left of I still hold the centred input when block I reads
        // them. Three quarters of the work then runs in SGEMM, which OpenBLAS drives closer to peak than STRMM.
        let y = workspace.floats(atLeast: count * d + d * d)
        let wp = y + count * d
        factor.writeDense(into: wp)
        mean.withUnsafeBufferPointer { mu in
            for i in 0..<count {
                let row = z + i * d
                let dst = y + i * d
                for j in 0..<d { dst[j] = row[j] - mu[j] }
            }
        }
        var i0 = (d - 1) / Self.blockSize * Self.blockSize
        while i0 >= 0 {
            let bs = min(Self.blockSize, d - i0)
            BLAS.strmmRightLowerTransposed(m: count, n: bs, a: wp + i0 * d + i0, lda: d, b: y + i0, ldb: d)
            if i0 > 0 {
                BLAS.sgemm(
                    transA: false,
                    transB: true,
                    m: count,
                    n: bs,
                    k: i0,
                    alpha: 1,
                    a: y,
                    lda: d,
                    b: wp + i0 * d,
                    ldb: d,
                    beta: 1,
                    c: y + i0,
                    ldc: d
                )
            }
            i0 -= Self.blockSize
        }
        for i in 0..<count {
            let row = y + i * d
            var s = 0.0
            for j in 0..<d { s += Double(row[j]) * Double(row[j]) }
            out[i * stride] = s
        }
    }
}
