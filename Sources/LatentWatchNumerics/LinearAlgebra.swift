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
        let info = a.withUnsafeMutableBufferPointer {
            LAPACKE_dpotrf(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "L")), Int32(n), $0.baseAddress, Int32(n))
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
        let info = a.withUnsafeMutableBufferPointer {
            LAPACKE_dtrtri(
                LAPACK_ROW_MAJOR,
                Int8(UInt8(ascii: "L")),
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
        for i in 0..<n {
            for j in 0..<i { a[j * n + i] = a[i * n + j] }
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
