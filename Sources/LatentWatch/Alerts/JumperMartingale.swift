#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// How a shift detector's martingale bets on each p-value: the betting functions ("experts") of its jumper.
/// Every function is non-increasing in p with integral at most 1 over [0, 1], which is what keeps the capital a
/// supermartingale under the null. Docs/Statistics.md compares them.
public enum ShiftBetting: String, Sendable, Codable, CaseIterable {
    /// A mixture of bets for near and far shifts: no bet; the log e-value 1 + (-log p - 1) / 2 (gains steadily on
    /// moderately small p); and the power functions p^(-3/4) / 4 and p^(-9/10) / 10 (gain much on very small p:
    /// 49 and 57 at p = 0.00087, the smallest corrected p-value at m = 7,000).
    case mixture
    /// Power betting functions f_k(p) = k p^(k - 1) for k in {1, 1/2, 1/4, 1/10, 1/30} (k = 1 does not bet):
    /// the fastest on far shifts, slower than the others on near ones.
    case power
    /// Vovk's simple jumper: f_e(p) = 1 + e (p - 1/2) for e in {-1, -1/2, 0}; at most a factor 1.5 per input.
    case linear
}

/// A conformal test martingale over a stream of p-values: a jumper (Vovk) that spreads its capital over a few
/// betting functions ("experts"), lets a share J of it jump between them before each bet so it can follow a
/// change, and multiplies each expert's capital by its function of the p-value. It bets that p-values are
/// too small (inputs more unusual than the calibration data). Every betting function is non-increasing with
/// integral 1, so for independent p-values that are uniform, or stochastically larger than uniform, the
/// capital S_n is a nonnegative supermartingale with S_0 = 1, and by Ville's inequality
/// P(sup_n S_n >= 1/delta) <= delta. (Vovk's two-sided jumper also bets e = +1, on p-values that are too
/// large; that bet would win on the conservatively corrected p-values ``ShiftDetector`` uses, so it is left out.)
///
/// The state is the log capital and the share of capital on each expert; updating allocates nothing.
package struct JumperMartingale: Sendable, Equatable {
    /// The betting functions.
    package let betting: ShiftBetting
    /// Jump rate J in [0, 1].
    package let jumpRate: Double
    /// log S_n.
    package private(set) var logCapital: Double = 0
    /// Shares of capital on each expert (the first `experts` lanes; sum 1).
    package private(set) var shares: SIMD8<Double>
    /// Number of p-values seen.
    package private(set) var count = 0

    /// One betting function.
    enum Expert: Sendable, Equatable {
        /// f(p) = 1 (keeps its capital).
        case none
        /// f(p) = 1 + e (p - 1/2), e in [-1, 0].
        case linear(Double)
        /// f(p) = 1 + l (-log p - 1), l in [0, 1): E f(U) = 1 for U uniform.
        case logarithmic(Double)
        /// f(p) = k p^(k - 1), k in (0, 1).
        case power(Double)
    }

    /// The experts of each betting option.
    static func experts(_ betting: ShiftBetting) -> [Expert] {
        switch betting {
        case .mixture: return [.none, .logarithmic(0.5), .power(0.25), .power(0.1)]
        case .power: return [.none, .power(0.5), .power(0.25), .power(0.1), .power(1.0 / 30)]
        case .linear: return [.linear(-1), .linear(-0.5), .none]
        }
    }

    /// The experts, by betting option (looked up once, not per update).
    private static let table: [ShiftBetting: [Expert]] = Dictionary(
        uniqueKeysWithValues: ShiftBetting.allCases.map { ($0, experts($0)) }
    )
    private let expertList: [Expert]

    /// Number of experts.
    package var experts: Int { expertList.count }

    /// A martingale with capital 1, its capital spread evenly over the experts.
    package init(jumpRate: Double = 0.001, betting: ShiftBetting = .mixture) {
        self.jumpRate = min(max(jumpRate, 0), 1)
        self.betting = betting
        self.expertList = Self.table[betting]!
        var s = SIMD8<Double>(repeating: 0)
        for e in 0..<expertList.count { s[e] = 1 / Double(expertList.count) }
        shares = s
    }

    /// The same martingale restarted (capital 1).
    package func restarted() -> JumperMartingale { JumperMartingale(jumpRate: jumpRate, betting: betting) }

    /// Bets on one p-value and returns log(S_n / S_{n-1}).
    @discardableResult
    package mutating func update(_ p: Double) -> Double {
        let q = min(max(p.isNaN ? 0 : p, 0), 1)
        let j = jumpRate
        let n = experts
        let jump = j / Double(n)
        var f = SIMD8<Double>(repeating: 0)
        // Only the log and power experts need log q (q = 0 only from a NaN score with no correction; then capped).
        let logQ = betting == .linear ? 0 : log(max(q, 1e-300))
        for e in 0..<n {
            let bet: Double
            switch expertList[e] {
            case .none: bet = 1
            case .linear(let slope): bet = 1 + slope * (q - 0.5)
            case .logarithmic(let l): bet = 1 + l * (-logQ - 1)
            case .power(let k): bet = k * exp((k - 1) * logQ)
            }
            f[e] = ((1 - j) * shares[e] + jump) * bet
        }
        var factor = 0.0
        for e in 0..<n { factor += f[e] }
        for e in 0..<n { shares[e] = f[e] / factor }
        let step = log(factor)
        logCapital += step
        count += 1
        return step
    }
}
