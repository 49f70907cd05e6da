import COpenBLAS

/// Thin, pointer-free entry points into CBLAS/LAPACKE (OpenBLAS). All matrices are row-major.
///
/// The first call pins OpenBLAS to one thread: on small machines a multi-threaded BLAS stalls for
/// milliseconds per call when its threads compete with the host's, which is worse than one thread for the
/// matrix sizes a monitor sees.
package enum BLAS {
    private static let configured: Bool = {
        openblas_set_num_threads(1)
        return true
    }()

    /// Makes sure OpenBLAS runs single-threaded. Cheap after the first call.
    @inlinable
    package static func ensureConfigured() {
        _ = isConfigured
    }

    @usableFromInline
    static var isConfigured: Bool { configured }

    /// C = alpha * op(A) * op(B) + beta * C in double precision.
    package static func dgemm(
        transA: Bool,
        transB: Bool,
        m: Int,
        n: Int,
        k: Int,
        alpha: Double,
        a: UnsafePointer<Double>,
        lda: Int,
        b: UnsafePointer<Double>,
        ldb: Int,
        beta: Double,
        c: UnsafeMutablePointer<Double>,
        ldc: Int
    ) {
        ensureConfigured()
        cblas_dgemm(
            CblasRowMajor,
            transA ? CblasTrans : CblasNoTrans,
            transB ? CblasTrans : CblasNoTrans,
            Int32(m),
            Int32(n),
            Int32(k),
            alpha,
            a,
            Int32(lda),
            b,
            Int32(ldb),
            beta,
            c,
            Int32(ldc)
        )
    }

    /// C = alpha * op(A) * op(B) + beta * C in single precision.
    package static func sgemm(
        transA: Bool,
        transB: Bool,
        m: Int,
        n: Int,
        k: Int,
        alpha: Float,
        a: UnsafePointer<Float>,
        lda: Int,
        b: UnsafePointer<Float>,
        ldb: Int,
        beta: Float,
        c: UnsafeMutablePointer<Float>,
        ldc: Int
    ) {
        ensureConfigured()
        cblas_sgemm(
            CblasRowMajor,
            transA ? CblasTrans : CblasNoTrans,
            transB ? CblasTrans : CblasNoTrans,
            Int32(m),
            Int32(n),
            Int32(k),
            alpha,
            a,
            Int32(lda),
            b,
            Int32(ldb),
            beta,
            c,
            Int32(ldc)
        )
    }

    /// Lower triangle of C += alpha * A^T A (A is k x n, row-major), double precision.
    package static func dsyrkTransposed(
        n: Int,
        k: Int,
        alpha: Double,
        a: UnsafePointer<Double>,
        lda: Int,
        beta: Double,
        c: UnsafeMutablePointer<Double>,
        ldc: Int
    ) {
        ensureConfigured()
        cblas_dsyrk(
            CblasRowMajor,
            CblasLower,
            CblasTrans,
            Int32(n),
            Int32(k),
            alpha,
            a,
            Int32(lda),
            beta,
            c,
            Int32(ldc)
        )
    }

    /// B = B * L^T for a lower-triangular L (n x n), B is m x n: row i of B becomes L * b_i.
    package static func strmmRightLowerTransposed(
        m: Int,
        n: Int,
        l: UnsafePointer<Float>,
        ldl: Int,
        b: UnsafeMutablePointer<Float>,
        ldb: Int
    ) {
        ensureConfigured()
        cblas_strmm(
            CblasRowMajor,
            CblasRight,
            CblasLower,
            CblasTrans,
            CblasNonUnit,
            Int32(m),
            Int32(n),
            1,
            l,
            Int32(ldl),
            b,
            Int32(ldb)
        )
    }

    /// B = B * A^T for a lower-triangular A (n x n, leading dimension lda), B is m x n with leading dimension ldb.
    package static func strmmRightLowerTransposed(
        m: Int,
        n: Int,
        a: UnsafePointer<Float>,
        lda: Int,
        b: UnsafeMutablePointer<Float>,
        ldb: Int
    ) {
        strmmRightLowerTransposed(m: m, n: n, l: a, ldl: lda, b: b, ldb: ldb)
    }

    /// Double-precision version of ``strmmRightLowerTransposed(m:n:l:ldl:b:ldb:)``.
    package static func dtrmmRightLowerTransposed(
        m: Int,
        n: Int,
        l: UnsafePointer<Double>,
        ldl: Int,
        b: UnsafeMutablePointer<Double>,
        ldb: Int
    ) {
        ensureConfigured()
        cblas_dtrmm(
            CblasRowMajor,
            CblasRight,
            CblasLower,
            CblasTrans,
            CblasNonUnit,
            Int32(m),
            Int32(n),
            1,
            l,
            Int32(ldl),
            b,
            Int32(ldb)
        )
    }
}
