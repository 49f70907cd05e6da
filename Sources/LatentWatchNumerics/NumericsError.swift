/// Failures of numeric routines. Fitting code turns them into errors that name the layer and the remedy.
package enum NumericsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A Cholesky factorisation found a non-positive pivot at this (1-based) order.
    case notPositiveDefinite(order: Int)
    /// A LAPACK routine reported an error code.
    case lapack(routine: String, info: Int)

    package var description: String {
        switch self {
        case .notPositiveDefinite(let order):
            return "matrix is not positive definite (leading minor of order \(order))"
        case .lapack(let routine, let info):
            return "LAPACK \(routine) failed with info \(info)"
        }
    }
}
