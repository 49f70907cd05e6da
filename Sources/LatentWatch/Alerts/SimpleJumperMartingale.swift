#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Vovk's simple jumper, one-sided: a conformal test martingale over a stream of p-values that bets,
/// through a mixture of the betting functions f_e(p) = 1 + e (p - 1/2) with e in {-1, -1/2, 0}, that
/// p-values are too small (inputs more unusual than the calibration data), and lets its bet jump between
/// them at rate J so it can follow a change. Every f_e is non-increasing with integral 1, so for independent
/// p-values that are uniform, or stochastically larger than uniform, the capital S_n is a nonnegative
/// supermartingale with S_0 = 1, and by Ville's inequality P(sup_n S_n >= 1/delta) <= delta. (Vovk's
/// two-sided jumper also bets e = +1, on p-values that are too large; that bet would win on the
/// conservatively raised p-values ``ShiftDetector`` uses, so it is left out.)
///
/// The state is the log capital and the share of capital on each bet; updating allocates nothing.
package struct SimpleJumperMartingale: Sendable, Equatable {
    /// Jump rate J in [0, 1].
    package let jumpRate: Double
    /// log S_n.
    package private(set) var logCapital: Double = 0
    /// Shares of capital on e = -1, -1/2, 0 (sum 1).
    package private(set) var shares: (Double, Double, Double) = (1.0 / 3, 1.0 / 3, 1.0 / 3)
    /// Number of p-values seen.
    package private(set) var count = 0

    /// A martingale with capital 1.
    package init(jumpRate: Double = 0.01) {
        self.jumpRate = min(max(jumpRate, 0), 1)
    }

    /// Bets on one p-value and returns log(S_n / S_{n-1}).
    @discardableResult
    package mutating func update(_ p: Double) -> Double {
        let q = min(max(p.isNaN ? 0 : p, 0), 1)
        let j = jumpRate
        let a = (1 - j) * shares.0 + j / 3
        let b = (1 - j) * shares.1 + j / 3
        let c = (1 - j) * shares.2 + j / 3
        let fa = a * (1 - (q - 0.5))
        let fb = b * (1 - 0.5 * (q - 0.5))
        let fc = c
        let factor = fa + fb + fc
        shares = (fa / factor, fb / factor, fc / factor)
        let step = log(factor)
        logCapital += step
        count += 1
        return step
    }

    package static func == (l: Self, r: Self) -> Bool {
        l.jumpRate == r.jumpRate && l.logCapital == r.logCapital && l.count == r.count && l.shares == r.shares
    }
}
