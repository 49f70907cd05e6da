#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Makes conformal p-values computed against one fixed calibration set of m scores valid given that set, so a
/// stream detector's guarantee holds for the deployment at hand and not only on average over calibration sets.
///
/// For the conformal p-value p = j / (m + 1), j = 1 + #{calibration >= s}, the chance that a new in-distribution
/// score gets a p-value at most j / (m + 1), given the set, is V_j = 1 - F(S_(j)), S_(j) the j-th largest
/// calibration score. With continuous scores V_j is the j-th smallest of m uniforms, Beta(j, m + 1 - j) (with ties
/// it is stochastically smaller). A correction maps p to a bound b(j) that is non-decreasing in j and, with
/// probability at least 1 - beta over the calibration set, at least V_j for every j at once. On that event
/// P(b(J) <= u | set) = V_{J*} <= b(J*) <= u, where J* is the largest rank with b <= u: the corrected p-values are
/// super-uniform given the set, and a test martingale betting on them keeps Ville's bound given the set.
///
/// Two bounds are available (Docs/Statistics.md):
/// - ``Method-swift.enum/dkw``: b(j) = j / (m + 1) + sqrt(log(2 / beta) / (2 m)) (Dvoretzky-Kiefer-Wolfowitz-Massart).
///   The slack is the same at every p; it caps the evidence of the smallest p-values, which are the ones a shift
///   detector bets on.
/// - ``Method-swift.enum/conditional``: the smaller of the DKW bound at beta / 10 and exact Beta quantiles on a grid
///   of small ranks (1 to 16, then growing by a quarter up to 512) sharing the other 9 beta / 10 (a union bound:
///   half for rank 1, where every input more unusual than all calibration scores lands, half split evenly over the
///   other ranks); a rank between two grid ranks takes the bound of the next one up, which is valid because V_j
///   grows with j. At the smallest p the bound is about log(1 / beta_1) / m instead of sqrt(log(2 / beta) / (2 m)):
///   0.00087 against 0.021 at m = 7,000 and beta = 0.005.
///
/// `corrected(_:)` allocates nothing.
package struct CalibrationCorrection: Sendable, Equatable {
    /// The bound used.
    package enum Method: String, Sendable, CaseIterable {
        /// No correction: the p-value as it is (valid on average over calibration sets only).
        case none
        /// The uniform DKW slack added to every p-value.
        case dkw
        /// Exact Beta bounds at small ranks, the DKW slack elsewhere (the default).
        case conditional
    }

    /// The bound used.
    package let method: Method
    /// Calibration scores m.
    package let calibrationCount: Int
    /// The probability over calibration sets that the bound fails.
    package let failureProbability: Double
    /// The DKW slack (at beta with ``Method-swift.enum/dkw``, at ``dkwShare`` beta with ``Method-swift.enum/conditional``).
    package let slack: Double
    /// Grid ranks (increasing) and their bounds (non-decreasing); empty unless conditional.
    package let ranks: [Int]
    package let bounds: [Double]

    /// Largest grid rank of the conditional bound.
    package static let largestGridRank = 512

    /// No correction.
    package static let none = CalibrationCorrection.slack(0)

    /// No correction for p-values against `m` calibration scores: p-values pass unchanged, except that none is taken
    /// below 1 / (m + 1), the smallest conformal p-value (a NaN score's p-value of 0 would otherwise be unbounded
    /// evidence for the power bets).
    package static func uncorrected(calibrationCount m: Int) -> CalibrationCorrection {
        CalibrationCorrection(
            method: .none,
            calibrationCount: max(0, m),
            failureProbability: 0,
            slack: 0,
            ranks: [],
            bounds: []
        )
    }

    /// The DKW slack alone, as a fixed amount (for detectors fed p-values of unknown provenance).
    package static func slack(_ eps: Double) -> CalibrationCorrection {
        CalibrationCorrection(
            method: eps > 0 ? .dkw : .none,
            calibrationCount: 0,
            failureProbability: 0,
            slack: max(0, eps),
            ranks: [],
            bounds: []
        )
    }

    private init(
        method: Method,
        calibrationCount: Int,
        failureProbability: Double,
        slack: Double,
        ranks: [Int],
        bounds: [Double]
    ) {
        self.method = method
        self.calibrationCount = calibrationCount
        self.failureProbability = failureProbability
        self.slack = slack
        self.ranks = ranks
        self.bounds = bounds
    }

    /// The correction for p-values against `m` calibration scores that fails with probability at most `beta`.
    package init(method: Method, calibrationCount m: Int, failureProbability beta: Double) {
        guard method != .none, m > 0, beta > 0, beta < 1 else {
            self = .uncorrected(calibrationCount: m)
            return
        }
        switch method {
        case .none, .dkw:
            self.init(
                method: .dkw,
                calibrationCount: m,
                failureProbability: beta,
                slack: ShiftDetector.calibrationSlack(calibrationCount: m, failureProbability: beta),
                ranks: [],
                bounds: []
            )
        case .conditional:
            let grid = Self.gridRanks(calibrationCount: m)
            var b: [Double] = []
            b.reserveCapacity(grid.count)
            for (i, j) in grid.enumerated() {
                // V_j > q exactly when fewer than j of the m uniforms fall below q: P(Binomial(m, q) <= j - 1).
                let q = WindowRateDetector.calibratedRate(
                    threshold: Double(j) / Double(m + 1),
                    calibrationCount: m,
                    failureProbability: Self.gridShare(beta, rank: i, ranks: grid.count)
                )
                b.append(max(q, b.last ?? 0))
            }
            self.init(
                method: .conditional,
                calibrationCount: m,
                failureProbability: beta,
                slack: ShiftDetector.calibrationSlack(
                    calibrationCount: m,
                    failureProbability: Self.dkwShare * beta
                ),
                ranks: grid,
                bounds: b
            )
        }
    }

    /// The share of beta the conditional method gives the DKW bound (which matters only above the grid's ranks).
    package static let dkwShare = 0.1

    /// The failure probability of the grid's i-th rank: half of the grid's share (1 - ``dkwShare``) for rank 1, where
    /// every input more unusual than all calibration scores lands, and the other half split evenly over the rest.
    package static func gridShare(_ beta: Double, rank i: Int, ranks count: Int) -> Double {
        let grid = (1 - dkwShare) * beta
        guard count > 1 else { return grid }
        return i == 0 ? grid / 2 : grid / 2 / Double(count - 1)
    }

    /// Ranks 1...16, then each a quarter above the last (rounded up), up to min(m, 512).
    package static func gridRanks(calibrationCount m: Int) -> [Int] {
        let top = min(m, largestGridRank)
        guard top >= 1 else { return [] }
        var g: [Int] = []
        var j = 1
        while j < top {
            g.append(j)
            j = j < 16 ? j + 1 : Int((Double(j) * 1.25).rounded(.up))
        }
        g.append(top)
        return g
    }

    /// The rank j in 1...m+1 of a conformal p-value j / (m + 1) against m calibration scores, rounded up when off
    /// the lattice (a smoothed p-value; conservative); NaN or 0 (a NaN score) is rank 1, the most unusual.
    package static func rank(ofConformal p: Double, calibrationCount m: Int) -> Int {
        let q = p.isNaN ? 0 : min(max(p, 0), 1)
        return min(m + 1, max(1, Int((q * Double(m + 1) - 1e-9).rounded(.up))))
    }

    /// The corrected p-value of a conformal p-value (1 + #{calibration >= s}) / (m + 1). A value off that lattice
    /// (a smoothed p-value) is taken at the next lattice point up, which is conservative. NaN counts as 0.
    package func corrected(_ p: Double) -> Double {
        let q = p.isNaN ? 0 : min(max(p, 0), 1)
        switch method {
        case .none: return calibrationCount > 0 ? max(q, 1 / Double(calibrationCount + 1)) : q
        case .dkw: return min(1, q + slack)
        case .conditional:
            let dkw = min(1, q + slack)
            let j = Self.rank(ofConformal: q, calibrationCount: calibrationCount)
            guard let last = ranks.last, j <= last else { return dkw }
            // Smallest grid rank >= j.
            var lo = 0
            var hi = ranks.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if ranks[mid] >= j { hi = mid } else { lo = mid + 1 }
            }
            return min(dkw, bounds[lo])
        }
    }
}
