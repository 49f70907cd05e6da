#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Tests the share of low p-values in a sliding window against its expected rate: with p-values uniform
/// under the null, the count of p <= alpha among the last W inputs is Binomial(W, alpha); the detector
/// fires when the count reaches the smallest k whose upper tail probability is at most `windowLevel`.
/// It fires once per episode and reports the episode resolved when the count has fallen back to at most
/// its expectation under the null for `cooldown` consecutive inputs. The ring buffer is allocated once.
package struct WindowRateDetector: Sendable {
    /// Window length W.
    package let window: Int
    /// Per-input level alpha.
    package let alpha: Double
    /// Rate of low p-values assumed under the null.
    package let nullRate: Double
    /// Count of low p-values that fires.
    package let threshold: Int
    /// Inputs the count must stay at or below its expectation before an episode is resolved.
    package let cooldown: Int
    private var ring: [Bool]
    private var next = 0
    private var filled = 0
    /// Low p-values in the current window.
    package private(set) var count = 0
    /// Whether an episode is open.
    package private(set) var active = false
    private var quiet = 0

    /// What an update reports.
    package enum Event: Sendable, Equatable {
        case none
        /// The window's rate became significant: a new episode.
        case fired(count: Int)
        /// The rate has been back to normal for the cooldown.
        case resolved
    }

    /// A detector; `windowLevel` is the probability that one full window of in-distribution inputs reaches the
    /// threshold. `nullRate` is the rate of p <= alpha assumed under the null: alpha itself for exactly uniform
    /// p-values, or ``calibratedRate(threshold:calibrationCount:failureProbability:)`` when p-values come from a
    /// fixed calibration set (their conditional rate is then at most that, with high probability;
    /// Docs/Statistics.md).
    package init(
        window: Int = 200,
        alpha: Double = 0.01,
        windowLevel: Double = 1e-4,
        nullRate: Double? = nil,
        cooldown: Int? = nil
    ) {
        self.window = max(1, window)
        self.alpha = alpha
        self.nullRate = min(1, nullRate ?? alpha)
        self.threshold = Self.binomialThreshold(n: max(1, window), p: min(1, nullRate ?? alpha), level: windowLevel)
        self.cooldown = cooldown ?? max(1, window)
        self.ring = [Bool](repeating: false, count: max(1, window))
    }

    /// The smallest k with P(Binomial(n, p) >= k) <= level.
    package static func binomialThreshold(n: Int, p: Double, level: Double) -> Int {
        guard p > 0 else { return 1 }
        guard p < 1 else { return n + 1 }
        // log pmf by recurrence; tail summed from the top.
        var logPmf = [Double](repeating: 0, count: n + 1)
        logPmf[0] = Double(n) * log(1 - p)
        for k in 1...n {
            logPmf[k] = logPmf[k - 1] + log(Double(n - k + 1) / Double(k)) + log(p / (1 - p))
        }
        var tail = 0.0
        var k = n
        while k >= 0 {
            let t = tail + exp(logPmf[k])
            if t > level { return k + 1 }
            tail = t
            k -= 1
        }
        return 0
    }

    /// Up to this many binomial terms the tail is summed from 0; beyond (calibration sets of many millions) from
    /// the top, with lgamma, for as many terms as the binomial's spread needs.
    package static let directSumLimit = 1_000_000

    /// An upper bound on the rate of conformal p-values (1 + #{calibration >= s}) / (m + 1) at or below
    /// `threshold` for new in-distribution scores, given one fixed calibration set of m scores: it holds with
    /// probability at least 1 - `failureProbability` over the calibration set, and it is exact, not a uniform
    /// bound like DKW. With k = #{j in 1...m+1 : j / (m + 1) <= threshold}, p <= threshold exactly when the score
    /// is above the k-th largest calibration score; the probability mass above that order statistic is
    /// Beta(k, m + 1 - k) for continuous scores (stochastically smaller with ties). The bound is that law's
    /// 1 - beta quantile: the q with P(Binomial(m, q) <= k - 1) = beta. Returns `threshold` when m or beta
    /// leave nothing to bound.
    package static func calibratedRate(
        threshold t: Double,
        calibrationCount m: Int,
        failureProbability beta: Double,
        directSumLimit: Int = directSumLimit
    ) -> Double {
        guard m > 0, beta > 0, beta < 1, t.isFinite else { return min(1, max(0, t)) }
        let n = Double(m + 1)
        var k = max(0, min(m + 1, Int((t * n).rounded(.down))))
        while k < m + 1 && Double(k + 1) / n <= t { k += 1 }
        while k > 0 && Double(k) / n > t { k -= 1 }
        if k == 0 { return 0 }
        if k == m + 1 { return 1 }
        // log P(Binomial(m, q) <= k - 1), summed in log space so large m cannot underflow.
        func logLowerTail(_ q: Double) -> Double {
            let logOdds = log(q) - log1p(-q)
            var term = Double(m) * log1p(-q)
            var total = term
            for j in stride(from: 1, to: k, by: 1) {
                term += log(Double(m - j + 1) / Double(j)) + logOdds
                total = max(total, term) + log1p(exp(-abs(total - term)))
            }
            return total
        }
        // For very large k: the terms from k - 1 downwards, each from lgamma, until they fall below e^-50 of the
        // sum past the mode (the caller only asks when the mode is near or above k - 1), so the cost follows the
        // binomial's spread, not k.
        func logLowerTailNearTop(_ q: Double) -> Double {
            let lq = log(q)
            let lp = log1p(-q)
            let lg: (Double) -> Double = lgamma
            let lm = lg(Double(m) + 1)
            var total = -Double.infinity
            var j = k - 1
            while j >= 0 {
                let term = lm - lg(Double(j) + 1) - lg(Double(m - j) + 1) + Double(j) * lq + Double(m - j) * lp
                total = max(total, term) + log1p(exp(-abs(total - term)))
                if term < total - 50, Double(j) < Double(m) * q { break }
                j -= 1
            }
            return total
        }
        // The tail falls from 1 at q = 0 to 0 at q = 1: bisect for the point where it equals beta.
        let target = log(beta)
        func tailExceedsTarget(_ q: Double) -> Bool {
            guard k > directSumLimit else { return logLowerTail(q) > target }
            // The binomial's median is at most ceil(m q), so P(X <= k - 1) >= 1/2 > beta once k - 1 reaches it.
            if target < log(0.5), (Double(m) * q).rounded(.up) <= Double(k - 1) { return true }
            return logLowerTailNearTop(q) > target
        }
        var lo = 0.0
        var hi = 1.0
        for _ in 0..<100 {
            let mid = 0.5 * (lo + hi)
            if mid <= lo || mid >= hi { break }
            if tailExceedsTarget(mid) { lo = mid } else { hi = mid }
        }
        return hi
    }

    /// Feeds one p-value.
    package mutating func update(_ p: Double) -> Event {
        let low = p <= alpha
        if filled == window {
            if ring[next] { count -= 1 }
        } else {
            filled += 1
        }
        ring[next] = low
        if low { count += 1 }
        next = (next + 1) % window
        if !active {
            if count >= threshold {
                active = true
                quiet = 0
                return .fired(count: count)
            }
            return .none
        }
        if Double(count) <= Double(window) * nullRate {
            quiet += 1
            if quiet >= cooldown {
                active = false
                quiet = 0
                return .resolved
            }
        } else {
            quiet = 0
        }
        return .none
    }
}
