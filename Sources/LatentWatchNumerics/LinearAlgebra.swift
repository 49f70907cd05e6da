import COpenBLAS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Dense symmetric and triangular factorisations in double precision (row-major, n x n).
package enum LinearAlgebra {
    /// Overwrites the lower triangle of `a` with its Cholesky factor L (a = L L^T) and zeroes the upper
    /// triangle. Throws ``NumericsError/notPositiveDefinite(order:)`` when `a` is not positive definite.
    package static func choleskyLower(_ a: inout [Double], n: Int) throws(NumericsError) {
        precondition(a.count == n * n, "choleskyLower: matrix has \(a.count) entries, expected \(n * n)")
        BLAS.ensureConfigured()
        // LAPACKE_dpotrf_work skips the NaN check LAPACKE_dpotrf makes, and dpotrf itself lets a NaN pivot through.
        for v in a where !v.isFinite { throw .lapack(routine: "dpotrf", info: -4) }
        // A row-major lower triangle is a column-major upper one: LAPACK's native layout, so no transposed
        // copies (LAPACKE's row-major entry points copy the matrix twice with a strided loop).
        let info = a.withUnsafeMutableBufferPointer {
            LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, Int8(UInt8(ascii: "U")), Int32(n), $0.baseAddress, Int32(n))
        }
        if info > 0 { throw .notPositiveDefinite(order: Int(info)) }
        if info < 0 { throw .lapack(routine: "dpotrf", info: Int(info)) }
        for i in 0..<n {
            for j in (i + 1)..<max(i + 1, n) { a[i * n + j] = 0 }
        }
    }

    /// Overwrites a lower-triangular matrix with its inverse (also lower triangular).
    package static func invertLowerTriangular(_ a: inout [Double], n: Int) throws(NumericsError) {
        precondition(a.count == n * n)
        BLAS.ensureConfigured()
        // Column-major upper, as in `choleskyLower`.
        let info = a.withUnsafeMutableBufferPointer {
            LAPACKE_dtrtri_work(
                LAPACK_COL_MAJOR,
                Int8(UInt8(ascii: "U")),
                Int8(UInt8(ascii: "N")),
                Int32(n),
                $0.baseAddress,
                Int32(n)
            )
        }
        if info != 0 { throw .lapack(routine: "dtrtri", info: Int(info)) }
    }

    /// Eigen-decomposition of a symmetric matrix (lower triangle read). Returns eigenvalues in ascending
    /// order and the eigenvectors as the columns of a row-major n x n matrix.
    package static func symmetricEigen(
        _ a: [Double],
        n: Int
    ) throws(NumericsError) -> (
        values: [Double], vectors: [Double]
    ) {
        precondition(a.count == n * n)
        BLAS.ensureConfigured()
        var vectors = a
        var values = [Double](repeating: 0, count: n)
        let info = vectors.withUnsafeMutableBufferPointer { v in
            values.withUnsafeMutableBufferPointer { w in
                LAPACKE_dsyevd(
                    LAPACK_ROW_MAJOR,
                    Int8(UInt8(ascii: "V")),
                    Int8(UInt8(ascii: "L")),
                    Int32(n),
                    v.baseAddress,
                    Int32(n),
                    w.baseAddress
                )
            }
        }
        if info != 0 { throw .lapack(routine: "dsyevd", info: Int(info)) }
        return (values, vectors)
    }

    /// Copies the lower triangle into the upper one.
    package static func symmetrizeFromLower(_ a: inout [Double], n: Int) {
        precondition(a.count >= n * n)
        // In tiles, so that the strided writes stay within a few pages.
        let tile = 32
        a.withUnsafeMutableBufferPointer { m in
            var i0 = 0
            while i0 < n {
                let i1 = min(n, i0 + tile)
                var j0 = 0
                while j0 <= i0 {
                    let j1 = min(n, j0 + tile)
                    for i in i0..<i1 {
                        for j in j0..<min(j1, i) { m[j * n + i] = m[i * n + j] }
                    }
                    j0 += tile
                }
                i0 += tile
            }
        }
    }

    /// log det of a lower-triangular matrix with positive diagonal.
    package static func logDeterminantOfTriangular(_ l: [Double], n: Int) -> Double {
        var s = 0.0
        for i in 0..<n { s += log(l[i * n + i]) }
        return s
    }

    /// Trace of a square row-major matrix.
    package static func trace(_ a: [Double], n: Int) -> Double {
        var s = 0.0
        for i in 0..<n { s += a[i * n + i] }
        return s
    }
}
