/// Calibration of every score on held-out in-distribution data.
package struct Calibration: Sendable, Equatable {
    /// Distribution per score kind.
    package let distributions: [ScoreKind: EmpiricalDistribution]

    /// Creates a calibration from distributions.
    package init(distributions: [ScoreKind: EmpiricalDistribution]) {
        self.distributions = distributions
    }

    /// No calibration (p-values unavailable).
    package static let none = Calibration(distributions: [:])

    /// The conformal p-value of a score, or nil when that score was not calibrated.
    package func pValue(_ kind: ScoreKind, _ score: Double) -> Double? {
        distributions[kind]?.pValue(score)
    }

    /// The score threshold for a target false-positive rate, or nil when not calibrated.
    package func threshold(_ kind: ScoreKind, falsePositiveRate alpha: Double) -> Double? {
        distributions[kind]?.threshold(falsePositiveRate: alpha)
    }
}
