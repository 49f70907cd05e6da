import CLatentKernels

/// A lower-triangular d x d matrix held in the blocked "tri8" layout the scoring kernel streams through
/// (see `CLatentKernels.h`), in float32 or float16. About half the bytes of a dense matrix, one
/// sequential pass per matrix-vector product.
package struct PackedTriangular: Sendable {
    /// The values, in tri8 order.
    package enum Storage: Sendable {
        case float32([Float])
        case float16([UInt16])
    }

    /// Order of the matrix.
    package let dimension: Int
    /// Values in tri8 order.
    package let storage: Storage

    /// Number of floats a centred-vector scratch buffer needs (dimension rounded up to 8).
    package static func paddedDimension(_ d: Int) -> Int { (d + 7) / 8 * 8 }

    /// Number of values the tri8 layout stores for dimension d (8 x 8 chunks of the lower block triangle).
    package static func storedCount(_ d: Int) -> Int { Int(lw_tri8_count(Int32(d))) }

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
        let n = Self.storedCount(d)
        var out = [UInt16](repeating: 0, count: n)
        Self.forEachSlot(d) { slot, i, j in out[slot] = p[i * (i + 1) / 2 + j] }
        dimension = d
        storage = .float16(out)
    }

    private init(dimension d: Int, precision: ElementType, value: (Int, Int) -> Float) {
        let n = Self.storedCount(d)
        var out = [Float](repeating: 0, count: n)
        Self.forEachSlot(d) { slot, i, j in out[slot] = value(i, j) }
        dimension = d
        // Parameters are stored as float16 or float32; callers validate (ElementType.isParameterPrecision).
        storage = precision == .float16 ? .float16(HalfConversion.toHalf(out)) : .float32(out)
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

    /// Precision of the stored values.
    package var precision: ElementType {
        switch storage {
        case .float32: return .float32
        case .float16: return .float16
        }
    }

    /// Bytes held in memory.
    package var byteCount: Int {
        switch storage {
        case .float32(let v): return v.count * 4
        case .float16(let v): return v.count * 2
        }
    }

    /// The lower triangle in row-packed order (row i holds entries 0...i), as float32.
    package func rowPacked() -> [Float] {
        let values: [Float]
        switch storage {
        case .float32(let v): values = v
        case .float16(let v): values = HalfConversion.toFloat(v)
        }
        var out = [Float](repeating: 0, count: dimension * (dimension + 1) / 2)
        Self.forEachSlot(dimension) { slot, i, j in out[i * (i + 1) / 2 + j] = values[slot] }
        return out
    }

    /// The lower triangle in row-packed order as binary16 bits (only for float16 storage).
    package func rowPackedHalf() -> [UInt16]? {
        guard case .float16(let v) = storage else { return nil }
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
        switch storage {
        case .float32(let v):
            v.withUnsafeBufferPointer { copyBlocks($0.baseAddress!) }
        case .float16(let v):
            HalfConversion.toFloat(v).withUnsafeBufferPointer { copyBlocks($0.baseAddress!) }
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
        switch storage {
        case .float32(let w):
            return w.withUnsafeBufferPointer { lw_tri8_sqnorm_f32($0.baseAddress, x, mu, Int32(dimension), scratch) }
        case .float16(let w):
            return w.withUnsafeBufferPointer { lw_tri8_sqnorm_f16($0.baseAddress, x, mu, Int32(dimension), scratch) }
        }
    }
}

extension PackedTriangular {
    /// y = W xc for a centred vector already in `xc` (``paddedDimension(_:)`` floats, zero padded);
    /// writes ``paddedDimension(_:)`` floats to `y`. Allocates nothing.
    @inline(__always)
    package func multiply(centered xc: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        switch storage {
        case .float32(let w):
            w.withUnsafeBufferPointer { lw_tri8_matvec_f32($0.baseAddress, xc, Int32(dimension), y) }
        case .float16(let w):
            w.withUnsafeBufferPointer { lw_tri8_matvec_f16($0.baseAddress, xc, Int32(dimension), y) }
        }
    }

    /// Sum over i < count of (Double(a[i]) - Double(b[i]))^2, in double (`lw_sqdist_f32`: AVX2 when available; the
    /// portable loop gives the same result bit for bit). Allocates nothing.
    package static func squaredDistance(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Double {
        lw_sqdist_f32(a, b, Int32(count))
    }

    /// ||W xc_i||^2 for `count` centred, zero-padded vectors (row i at `xc + i * stride`, `stride` at least
    /// ``paddedDimension(_:)``), written to `out[i * outStride]`. Each equals ``squaredNorm(centered:)`` of the same
    /// row bit for bit; W is read once per three rows (`lw_tri8_sqnorm_batch_*`). `totals` holds `4 * count`
    /// doubles. Allocates nothing.
    package func squaredNorms(
        centered xc: UnsafePointer<Float>,
        stride: Int,
        count: Int,
        into out: UnsafeMutablePointer<Double>,
        outStride: Int,
        totals: UnsafeMutablePointer<Double>
    ) {
        switch storage {
        case .float32(let w):
            w.withUnsafeBufferPointer {
                lw_tri8_sqnorm_batch_f32(
                    $0.baseAddress,
                    xc,
                    stride,
                    Int32(count),
                    Int32(dimension),
                    out,
                    outStride,
                    totals
                )
            }
        case .float16(let w):
            w.withUnsafeBufferPointer {
                lw_tri8_sqnorm_batch_f16(
                    $0.baseAddress,
                    xc,
                    stride,
                    Int32(count),
                    Int32(dimension),
                    out,
                    outStride,
                    totals
                )
            }
        }
    }

    /// ||W xc||^2 for a centred, zero-padded vector.
    @inline(__always)
    package func squaredNorm(centered xc: UnsafePointer<Float>) -> Double {
        switch storage {
        case .float32(let w):
            return w.withUnsafeBufferPointer { lw_tri8_sqnorm_centered_f32($0.baseAddress, xc, Int32(dimension)) }
        case .float16(let w):
            return w.withUnsafeBufferPointer { lw_tri8_sqnorm_centered_f16($0.baseAddress, xc, Int32(dimension)) }
        }
    }
}
