/// The distribution of one score on held-out in-distribution data, stored compactly, that turns any new
/// score into a conformal p-value and a target false-positive rate into a threshold. Larger scores are
/// more unusual.
///
/// With m calibration scores, p(s) = (1 + #{calibration >= s}) / (m + 1); under exchangeability of s with
/// the calibration scores, P(p <= alpha) <= alpha. Up to ``exactLimit`` scores are kept exactly; beyond
/// that the top ``tailCount`` are kept exactly and ``bodyCount`` order statistics summarise the rest, so
/// p-values below tailCount / m keep full resolution (see Docs/ModelFormat.md).
package struct EmpiricalDistribution: Sendable, Equatable {
    /// Number of scores kept exactly when there are at most this many.
    package static let exactLimit = 16_384
    /// Scores kept exactly at the top when summarising.
    package static let tailCount = 8_192
    /// Order statistics kept below the tail when summarising.
    package static let bodyCount = 8_192

    /// Total number of calibration scores m.
    package let count: Int
    /// Stored order statistics, ascending.
    package let values: [Float]
    /// 1-based rank of each stored value among all m (ascending order).
    package let ranks: [UInt32]

    /// Builds from raw calibration scores (non-finite scores are dropped).
    package init(scores: [Double]) {
        let sorted = scores.filter { $0.isFinite }.sorted()
        let m = sorted.count
        count = m
        if m <= Self.exactLimit {
            values = sorted.map { Float($0) }
            ranks = (0..<m).map { UInt32($0 + 1) }
            return
        }
        var r: [Int] = []
        let bodyTop = m - Self.tailCount  // ranks 1...bodyTop form the body
        for i in 0..<Self.bodyCount {
            let rank = 1 + Int((Double(i) / Double(Self.bodyCount - 1) * Double(bodyTop - 1)).rounded())
            if r.last != rank { r.append(rank) }
        }
        for rank in (bodyTop + 1)...m where r.last! < rank { r.append(rank) }
        values = r.map { Float(sorted[$0 - 1]) }
        ranks = r.map { UInt32($0) }
    }

    /// Restores a stored distribution; returns nil when the parts are inconsistent.
    /// What ``init(scores:)`` writes is required: ranks fit in 32 bits, the top rank is stored, and every score
    /// is stored up to ``exactLimit``.
    package init?(count: Int, values: [Float], ranks: [UInt32]) {
        guard values.count == ranks.count, count >= values.count, count <= Int(UInt32.max),
            values.allSatisfy({ $0.isFinite })
        else { return nil }
        for i in 1..<max(1, values.count) where !(ranks[i] > ranks[i - 1] && values[i] >= values[i - 1]) { return nil }
        if let last = ranks.last, Int(last) != count { return nil }
        if values.isEmpty, count != 0 { return nil }
        if count <= Self.exactLimit, values.count != count { return nil }
        if let first = ranks.first, first < 1 { return nil }
        self.count = count
        self.values = values
        self.ranks = ranks
    }

    /// Number of calibration scores >= s (interpolated between stored ranks when summarised).
    @inlinable
    package func countAtLeast(_ s: Double) -> Double {
        let n = values.count
        guard n > 0 else { return 0 }
        let x = Float(s)
        // First stored index with value >= x.
        var lo = 0
        var hi = n
        while lo < hi {
            let mid = (lo + hi) >> 1
            if values[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        if lo == n { return 0 }
        let rankHere = Double(ranks[lo])
        if lo == 0 || ranks[lo] == ranks[lo - 1] + 1 {
            // Exact: every score from rank ranks[lo] upwards is >= x.
            return Double(count) - rankHere + 1
        }
        // Between stored order statistics: interpolate the rank of x linearly in value.
        let v0 = Double(values[lo - 1])
        let v1 = Double(values[lo])
        let r0 = Double(ranks[lo - 1])
        let t = v1 > v0 ? (Double(x) - v0) / (v1 - v0) : 1
        let rank = r0 + 1 + t * (rankHere - r0 - 1)
        return Double(count) - rank + 1
    }

    /// Conformal p-value (1 + #{calibration >= s}) / (m + 1). NaN scores get p = 0 (maximally unusual).
    @inlinable
    package func pValue(_ s: Double) -> Double {
        if s.isNaN { return 0 }
        return (1 + countAtLeast(s)) / Double(count + 1)
    }

    /// Smoothed conformal p-value (#{> s} + u (#{= s} + 1)) / (m + 1) with u uniform in [0, 1): exactly
    /// uniform under exchangeability, as conformal test martingales need.
    @inlinable
    package func smoothedPValue(_ s: Double, u: Double) -> Double {
        if s.isNaN { return 0 }
        let atLeast = countAtLeast(s)
        let above = countAtLeast(Double(Float(s).nextUp))
        return (above + u * (atLeast - above + 1)) / Double(count + 1)
    }

    /// The score of 1-based ascending rank `rank` among the m calibration scores: exact when every score is
    /// stored, otherwise the stored order statistic of the smallest rank at or above it (never smaller than the
    /// true one). +infinity when rank > m, -infinity when rank < 1.
    package func orderStatistic(rank: Int) -> Double {
        if rank > count || values.isEmpty { return .infinity }
        if rank < 1 { return -.infinity }
        var lo = 0
        var hi = ranks.count - 1
        while lo < hi {
            let mid = (lo + hi) >> 1
            if Int(ranks[mid]) < rank { lo = mid + 1 } else { hi = mid }
        }
        return Double(values[lo])
    }

    /// The smallest score threshold t such that flagging s > t has p-value <= alpha for every flagged s:
    /// a target false-positive rate alpha becomes a threshold. +infinity when alpha < 1 / (m + 1).
    package func threshold(falsePositiveRate alpha: Double) -> Double {
        // Need (1 + #{cal >= s}) / (m + 1) <= alpha, i.e. #{cal >= s} <= floor(alpha (m + 1)) - 1 =: k.
        let k = Int((alpha * Double(count + 1)).rounded(.down)) - 1
        if k < 0 || values.isEmpty { return .infinity }
        if k >= count { return -.infinity }
        // Flag s > value of rank m - k (ascending): then #{cal >= s} <= k.
        return orderStatistic(rank: count - k)
    }
}
