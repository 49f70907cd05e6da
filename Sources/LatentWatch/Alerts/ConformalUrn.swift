import LatentWatchNumerics

/// What a shift detector compares each input with in anytime mode. Docs/Statistics.md states both guarantees.
public enum ShiftReference: String, Sendable, Codable, CaseIterable {
    /// The calibration set and every earlier input of the stream (Vovk's conformal test martingale, the default):
    /// each input's p-value is its rank among the calibration scores and the stream's earlier scores
    /// (``ConformalUrn``). When calibration and stream are exchangeable these p-values are independent and
    /// exactly uniform, so P(any false alarm, ever) <= delta on average over calibration sets, with no correction
    /// and no share of delta spent on the calibration set. Given one calibration set the false-alarm probability
    /// can exceed delta; the stream's own inputs then correct the reference as they accumulate
    /// (Docs/Statistics.md measures how far).
    case calibrationAndStream = "calibration-and-stream"
    /// The fixed calibration set alone, each p-value raised by ``CalibrationCorrection`` when the policy corrects
    /// for the calibration set: P(any false alarm, ever | calibration set) <= delta / 2 for all but a share
    /// delta / 2 of calibration sets. Slower to alarm, since the correction caps the evidence of the smallest
    /// p-values.
    case calibrationSet = "calibration-set"
}

/// The reference of a conformal test martingale: the m calibration scores and every earlier stream input, kept
/// as counts of stream inputs per calibration rank (a Fenwick tree over the m + 1 ranks; no score is stored).
///
/// An input whose conformal p-value against the calibration set is j / (m + 1) (j = 1 + #{calibration >= s})
/// falls in cell j. After n stream inputs, c_i of them in cell i, the p-value of the next one is
/// (j - 1 + sum_{i<j} c_i + u (1 + c_j)) / (m + 1 + n), u uniform in (0, 1]: its smoothed rank among the
/// calibration scores and the earlier stream scores. Given the calibration set, stream inputs fall in the cells
/// independently with probabilities D_1..D_{m+1}, the spacings of the calibration scores' distribution
/// function; for continuous scores D is Dirichlet(1, ..., 1) over calibration sets, so the cells of successive
/// inputs are a Polya urn whose predictive probability of cell i is exactly (1 + c_i) / (m + 1 + n). The
/// p-value is that predictive distribution's randomised probability integral transform: under exchangeability
/// of calibration and stream the p-values are independent and uniform (Vovk's conformal p-values), and any
/// test martingale on them keeps Ville's bound. The tie-breaking u comes from a seeded generator, so a replay
/// of the same stream gives the same p-values.
///
/// Memory: m + 2 integers, allocated once; `pValue(conformal:)` allocates nothing and takes O(log m).
package struct ConformalUrn: Sendable {
    /// Calibration scores m.
    package let calibrationCount: Int
    /// Stream inputs recorded so far.
    package private(set) var count = 0
    /// Fenwick tree of stream counts per cell, 1-based (index 0 unused).
    private var tree: [Int]
    private var random: SeededRandom

    /// An empty urn for p-values against `m` calibration scores; `seed` drives the tie-breaking.
    package init(calibrationCount m: Int, seed: UInt64 = 0) {
        calibrationCount = max(0, m)
        tree = [Int](repeating: 0, count: max(0, m) + 2)
        random = SeededRandom(seed: SeededRandom.mix(seed ^ 0x00C0_4F04_3A10_0001))
    }

    /// The cell of a conformal p-value j / (m + 1): its rank j (``CalibrationCorrection/rank(ofConformal:calibrationCount:)``).
    package func cell(ofConformal p: Double) -> Int {
        CalibrationCorrection.rank(ofConformal: p, calibrationCount: calibrationCount)
    }

    /// Stream inputs recorded in cells 1...j.
    private func prefix(_ j: Int) -> Int {
        var i = j
        var s = 0
        while i > 0 {
            s += tree[i]
            i &= i - 1
        }
        return s
    }

    /// The p-value of an input whose conformal p-value against the calibration set is `p`, against the
    /// calibration set and every input recorded before; then records the input.
    package mutating func pValue(conformal p: Double) -> Double {
        let j = cell(ofConformal: p)
        let below = prefix(j - 1)
        let own = prefix(j) - below
        // u in (0, 1]: never 0, so no p-value is 0.
        let u = (Double(random.next() >> 11) + 1) / Double(1 << 53)
        let value = (Double(j - 1 + below) + u * Double(1 + own)) / Double(calibrationCount + 1 + count)
        var i = j
        while i < tree.count {
            tree[i] += 1
            i += i & -i
        }
        count += 1
        return value
    }
}
