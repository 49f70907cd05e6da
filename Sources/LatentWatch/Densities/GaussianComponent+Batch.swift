import LatentWatchNumerics

extension GaussianComponent {
    /// With the AVX2 kernels, batches run on the multi-input tri8 kernel, this many centred rows per pass
    /// (the workspace holds them: 2 MB at D = 512). Without them, batches at least `blasBatchThreshold` large go
    /// through BLAS (strmm and sgemm); smaller ones stream the packed factor once per vector.
    static let kernelRowsPerPass = 1024
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
        if HalfConversion.usesSIMDKernels {
            // Our multi-input kernel: centred rows, zero padded, in the workspace; W read once per three rows.
            let dp = PackedTriangular.paddedDimension(d)
            let rows = min(count, Self.kernelRowsPerPass)
            let xc = workspace.floats(atLeast: rows * dp + 8 * rows)
            let totals = UnsafeMutableRawPointer(xc + rows * dp).bindMemory(to: Double.self, capacity: 4 * rows)
            var start = 0
            mean.withUnsafeBufferPointer { mu in
                while start < count {
                    let n = min(rows, count - start)
                    for i in 0..<n {
                        let row = z + (start + i) * d
                        let dst = xc + i * dp
                        for j in 0..<d { dst[j] = row[j] - mu[j] }
                        for j in d..<dp { dst[j] = 0 }
                    }
                    factor.squaredNorms(
                        centered: xc,
                        stride: dp,
                        count: n,
                        into: out + start * stride,
                        outStride: stride,
                        totals: totals
                    )
                    start += n
                }
            }
            return
        }
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
