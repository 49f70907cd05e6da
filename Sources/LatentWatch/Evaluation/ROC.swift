/// Threshold-free separation measures of scores where larger means "more unusual".
package enum ROC {
    /// Area under the ROC curve: the probability that a positive (out-of-distribution) score exceeds a
    /// negative (in-distribution) one, ties counted half (Mann-Whitney U / (n_neg n_pos)). O((n + m) log n).
    package static func auroc(negatives: [Double], positives: [Double]) -> Double {
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

    /// False-positive rate at the largest threshold whose true-positive rate is at least `tpr` (0.95 for
    /// the usual "FPR at 95 % TPR"): the share of negatives scoring at least the threshold. Matches taking the
    /// first point of scikit-learn's `roc_curve` with TPR >= tpr.
    package static func falsePositiveRate(
        atTruePositiveRate tpr: Double = 0.95,
        negatives: [Double],
        positives: [Double]
    )
        -> Double
    {
        guard !negatives.isEmpty, !positives.isEmpty else { return .nan }
        let pos = positives.sorted()
        // The need-th largest positive is the largest threshold keeping at least `need` positives.
        let need = max(1, Int((tpr * Double(pos.count) - 1e-9).rounded(.up)))
        let t = pos[pos.count - min(need, pos.count)]
        let neg = negatives.sorted()
        return Double(neg.count - lowerBound(neg, t)) / Double(neg.count)
    }

    /// Average precision with positives as the class of interest (scikit-learn's `average_precision_score`):
    /// sum over distinct thresholds, descending, of (recall step) x precision.
    package static func averagePrecision(negatives: [Double], positives: [Double]) -> Double {
        guard !positives.isEmpty else { return .nan }
        let all = (negatives.map { ($0, false) } + positives.map { ($0, true) }).sorted { $0.0 > $1.0 }
        var tp = 0.0
        var fp = 0.0
        var previousRecall = 0.0
        var ap = 0.0
        var i = 0
        while i < all.count {
            let v = all[i].0
            while i < all.count && all[i].0 == v {
                if all[i].1 { tp += 1 } else { fp += 1 }
                i += 1
            }
            let recall = tp / Double(positives.count)
            ap += (recall - previousRecall) * tp / (tp + fp)
            previousRecall = recall
        }
        return ap
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
