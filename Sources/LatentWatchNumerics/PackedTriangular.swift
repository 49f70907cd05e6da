import CLatentKernels

/// A lower-triangular d x d matrix held in the blocked "tri8" layout the scoring kernel streams through
/// (see `CLatentKernels.h`), in float32 or float16. About half the bytes of a dense matrix, one
/// sequential pass per matrix-vector product.
package struct PackedTriangular: Sendable {
    /// Order of the matrix.
    package let dimension: Int
    /// Precision of the stored values (float32 or float16).
    package let precision: ElementType
    /// The values in tri8 order (``count`` elements of ``precision``), in memory the kernels stream through
    /// (``ParameterBuffer``: huge pages where the system has them).
    private let values: ParameterBuffer

    /// Number of floats a centred-vector scratch buffer needs (dimension rounded up to 8).
    package static func paddedDimension(_ d: Int) -> Int { (d + 7) / 8 * 8 }

    /// Number of stored elements (the tri8 layout's, padding included).
    package var count: Int { Int(lw_tri8_count(Int32(dimension))) }

    /// Packs the lower triangle of a row-major dense matrix.
    package init(lowerRowMajor a: [Double], dimension d: Int, precision: ElementType) {
        precondition(a.count == d * d)
        self.init(dimension: d, precision: precision) { i, j in Float(a[i * d + j]) }
    }

    /// Packs from the row-packed lower triangle (row i holds entries 0...i, offset i(i+1)/2), the layout
    /// of model files.
    package init(rowPacked p: [Float], dimension d: Int, precision: ElementType) {
        precondition(p.count == d * (d + 1) / 2)
        self.init(dimension: d, precision: precision) { i, j in p[i * (i + 1) / 2 + j] }
    }

    /// Builds directly from binary16 values in row-packed order (no rounding twice).
    package init(rowPackedHalf p: [UInt16], dimension d: Int) {
        precondition(p.count == d * (d + 1) / 2)
        let n = Int(lw_tri8_count(Int32(d)))
        let buffer = ParameterBuffer(byteCount: 2 * n)
        let out = buffer.base.bindMemory(to: UInt16.self, capacity: n)
        Self.forEachSlot(d) { slot, i, j in out[slot] = p[i * (i + 1) / 2 + j] }
        dimension = d
        precision = .float16
        values = buffer
    }

    private init(dimension d: Int, precision: ElementType, value: (Int, Int) -> Float) {
        let n = Int(lw_tri8_count(Int32(d)))
        // Parameters are stored as float16 or float32; callers validate (ElementType.isParameterPrecision).
        let half = precision == .float16
        let buffer = ParameterBuffer(byteCount: (half ? 2 : 4) * n)
        if half {
            var out = [Float](repeating: 0, count: n)
            Self.forEachSlot(d) { slot, i, j in out[slot] = value(i, j) }
            out.withUnsafeBufferPointer {
                HalfConversion.convert(
                    $0.baseAddress!,
                    toHalf: buffer.base.bindMemory(to: UInt16.self, capacity: n),
                    count: n
                )
            }
        } else {
            let out = buffer.base.bindMemory(to: Float.self, capacity: n)
            Self.forEachSlot(d) { slot, i, j in out[slot] = value(i, j) }
        }
        dimension = d
        self.precision = half ? .float16 : .float32
        values = buffer
    }

    private var f32: UnsafePointer<Float> { UnsafePointer(values.base.assumingMemoryBound(to: Float.self)) }
    private var f16: UnsafePointer<UInt16> { UnsafePointer(values.base.assumingMemoryBound(to: UInt16.self)) }
    private var isHalf: Bool { precision == .float16 }

    /// The stored values as float32, in tri8 order.
    private func floatValues() -> [Float] {
        if isHalf {
            return HalfConversion.toFloat(Array(UnsafeBufferPointer(start: f16, count: count)))
        }
        return Array(UnsafeBufferPointer(start: f32, count: count))
    }

    /// Calls `body(slot, i, j)` for every stored entry with i < d, j <= i.
    private static func forEachSlot(_ d: Int, _ body: (Int, Int, Int) -> Void) {
        let blocks = (d + 7) / 8
        var slot = 0
        for m in 0..<blocks {
            for c in 0...m {
                for t in 0..<8 {
                    for l in 0..<8 {
                        let i = 8 * m + t
                        let j = 8 * c + l
                        if i < d && j <= i { body(slot, i, j) }
                        slot += 1
                    }
                }
            }
        }
    }

    /// Bytes held in memory.
    package var byteCount: Int { (isHalf ? 2 : 4) * count }

    /// Whether the values lie in memory advised for huge pages (see ``ParameterBuffer``).
    package var isInHugePageRegion: Bool { values.isInHugePageRegion }

    /// Address of the first stored value (tests read the mapping it lies in).
    package var baseAddress: UnsafeRawPointer { UnsafeRawPointer(values.base) }

    /// The lower triangle in row-packed order (row i holds entries 0...i), as float32.
    package func rowPacked() -> [Float] {
        let values = floatValues()
        var out = [Float](repeating: 0, count: dimension * (dimension + 1) / 2)
        Self.forEachSlot(dimension) { slot, i, j in out[i * (i + 1) / 2 + j] = values[slot] }
        return out
    }

    /// The lower triangle in row-packed order as binary16 bits (only for float16 storage).
    package func rowPackedHalf() -> [UInt16]? {
        guard isHalf else { return nil }
        let v = f16
        var out = [UInt16](repeating: 0, count: dimension * (dimension + 1) / 2)
        Self.forEachSlot(dimension) { slot, i, j in out[i * (i + 1) / 2 + j] = v[slot] }
        return out
    }

    /// Writes the dense row-major d x d float32 matrix (zeros above the diagonal) into `out`.
    package func writeDense(into out: UnsafeMutablePointer<Float>) {
        let d = dimension
        out.initialize(repeating: 0, count: d * d)
        func copyBlocks(_ src: UnsafePointer<Float>) {
            // Stored entries above the diagonal are zero, so whole 8-wide chunks can be copied.
            var p = src
            for m in 0..<((d + 7) / 8) {
                for c in 0...m {
                    let n = min(8, d - 8 * c)
                    for t in 0..<8 where 8 * m + t < d {
                        (out + (8 * m + t) * d + 8 * c).update(from: p + t * 8, count: n)
                    }
                    p += 64
                }
            }
        }
        if isHalf {
            floatValues().withUnsafeBufferPointer { copyBlocks($0.baseAddress!) }
        } else {
            copyBlocks(f32)
        }
    }

    /// ||W (x - mu)||^2. `x` and `mu` hold `dimension` floats; `scratch` holds at least
    /// ``paddedDimension(_:)`` floats. Allocates nothing.
    @inline(__always)
    package func squaredNorm(
        x: UnsafePointer<Float>,
        mu: UnsafePointer<Float>,
        scratch: UnsafeMutablePointer<Float>
    ) -> Double {
        isHalf
            ? lw_tri8_sqnorm_f16(f16, x, mu, Int32(dimension), scratch)
            : lw_tri8_sqnorm_f32(f32, x, mu, Int32(dimension), scratch)
    }
}

extension PackedTriangular {
    /// y = W xc for a centred vector already in `xc` (``paddedDimension(_:)`` floats, zero padded);
    /// writes ``paddedDimension(_:)`` floats to `y`. Allocates nothing.
    @inline(__always)
    package func multiply(centered xc: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        if isHalf {
            lw_tri8_matvec_f16(f16, xc, Int32(dimension), y)
        } else {
            lw_tri8_matvec_f32(f32, xc, Int32(dimension), y)
        }
    }

    /// ||W xc||^2 for a centred, zero-padded vector.
    @inline(__always)
    package func squaredNorm(centered xc: UnsafePointer<Float>) -> Double {
        isHalf
            ? lw_tri8_sqnorm_centered_f16(f16, xc, Int32(dimension))
            : lw_tri8_sqnorm_centered_f32(f32, xc, Int32(dimension))
    }
}
