/// Threshold-free separation measures of scores where larger means "more unusual".
public enum ROC {
    /// Area under the ROC curve: the probability that a positive (out-of-distribution) score exceeds a
    /// negative (in-distribution) one, ties counted half (Mann-Whitney U / (n_neg n_pos)). O((n + m) log n).
    public static func auroc(negatives: [Double], positives: [Double]) -> Double {
        guard !negatives.isEmpty, !positives.isEmpty else { return .nan }
        let neg = negatives.sorted()
        var wins = 0.0
        for p in positives {
            let below = lowerBound(neg, p)
            var upper = below
            while upper < neg.count && neg[upper] == p { upper += 1 }
            wins += Double(below) + 0.5 * Double(upper - below)
        }
        return wins / (Double(negatives.count) * Double(positives.count))
    }

    static func lowerBound(_ sorted: [Double], _ x: Double) -> Int {
        var lo = 0
        var hi = sorted.count
        while lo < hi {
            let m = (lo + hi) / 2
            if sorted[m] < x { lo = m + 1 } else { hi = m }
        }
        return lo
    }
}
