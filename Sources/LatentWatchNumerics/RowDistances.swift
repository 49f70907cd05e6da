import CLatentKernels

/// Squared Euclidean distances from one vector to many rows, in float32 (`lw_sqdists_f32`,
/// `lw_nearest_sqdist_f16`): the AVX2 and portable kernels agree bit for bit.
package enum RowDistances {
    /// Writes the squared distance from `z` to each of `count` float32 rows of `dimension` into `out`.
    package static func squaredDistances(
        from z: UnsafePointer<Float>,
        rows: UnsafePointer<Float>,
        count: Int,
        dimension: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        lw_sqdists_f32(rows, Int32(count), Int32(dimension), z, out)
    }

    /// The smallest squared distance from `z` to `count` float16 rows (binary16 bit patterns) of `dimension`;
    /// +infinity for no rows.
    package static func nearestSquaredDistance(
        from z: UnsafePointer<Float>,
        halfRows: UnsafePointer<UInt16>,
        count: Int,
        dimension: Int
    ) -> Float {
        lw_nearest_sqdist_f16(halfRows, Int32(count), Int32(dimension), z)
    }
}
