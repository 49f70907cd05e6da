import LatentWatchNumerics

extension GaussianComponent {
    /// Batches at least this large go through BLAS (strmm); smaller ones stream the packed factor once
    /// per vector.
    static let blasBatchThreshold = 16

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
        let b = workspace.floats(atLeast: count * d)
        let w = workspace.dense(atLeast: d * d)
        factor.writeDense(into: w)
        mean.withUnsafeBufferPointer { mu in
            for i in 0..<count {
                let row = z + i * d
                let dst = b + i * d
                for j in 0..<d { dst[j] = row[j] - mu[j] }
            }
        }
        BLAS.strmmRightLowerTransposed(m: count, n: d, l: w, ldl: d, b: b, ldb: d)
        for i in 0..<count {
            let row = b + i * d
            var s = 0.0
            for j in 0..<d { s += Double(row[j]) * Double(row[j]) }
            out[i * stride] = s
        }
    }
}
