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

/// Squared distances between integer codes in [-127, 127] (`lw_codes_*`): rows packed in blocks of 16 for the
/// AVX-512 VNNI, AVX2 and portable kernels, which give the same integers (exact below 2^31).
package enum CodeDistances {
    /// Query and row codes are padded with zeros to this many.
    package static func paddedDimension(_ d: Int) -> Int { Int(lw_codes_padded_dimension(Int32(d))) }

    /// Rows rounded up to whole blocks of 16.
    package static func paddedRows(_ count: Int) -> Int { (count + 15) / 16 * 16 }

    /// `count` rows of `dimension` codes (row-major) packed for the kernels: bytes and squared norms, each padded to
    /// whole blocks.
    package static func pack(
        _ codes: UnsafePointer<Int8>,
        count: Int,
        dimension: Int
    ) -> (bytes: [UInt8], norms: [Int32]) {
        var packed = [UInt8](repeating: 128, count: max(paddedRows(count) * paddedDimension(dimension), 1))
        var norms = [Int32](repeating: 0, count: max(paddedRows(count), 1))
        packed.withUnsafeMutableBufferPointer { p in
            norms.withUnsafeMutableBufferPointer { nb in
                lw_codes_pack(codes, Int32(count), Int32(dimension), p.baseAddress!, nb.baseAddress!)
            }
        }
        return (packed, norms)
    }

    /// Writes the codes of `z` (`dimension` floats) to `q` (``paddedDimension(_:)`` codes): z x `inverseScale`
    /// rounded to nearest (ties to even), clamped at ±127. Returns the sum of (|u| - 127)^2 over the clamped
    /// coordinates (+infinity when one is NaN).
    package static func quantise(
        _ z: UnsafePointer<Float>,
        dimension: Int,
        inverseScale: Float,
        into q: UnsafeMutablePointer<Int8>
    ) -> Double {
        lw_codes_quantise(z, Int32(dimension), inverseScale, q)
    }

    /// Writes the squared distance from `q` (``paddedDimension(_:)`` codes) to each of `count` packed rows into `out`.
    package static func squaredDistances(
        from q: UnsafePointer<Int8>,
        packed: UnsafePointer<UInt8>,
        norms: UnsafePointer<Int32>,
        count: Int,
        dimension: Int,
        into out: UnsafeMutablePointer<Int32>
    ) {
        lw_codes_sqdists(packed, norms, Int32(count), Int32(dimension), q, out)
    }

    /// The smallest squared distance from `q` to `count` packed rows; Int32.max for no rows.
    package static func nearestSquaredDistance(
        from q: UnsafePointer<Int8>,
        packed: UnsafePointer<UInt8>,
        norms: UnsafePointer<Int32>,
        count: Int,
        dimension: Int
    ) -> Int32 {
        lw_codes_nearest_sqdist(packed, norms, Int32(count), Int32(dimension), q)
    }
}
