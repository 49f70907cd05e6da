package import ArgumentParser
import LatentWatchNumerics

/// The streams the evaluation and the stream measurements run: in-distribution streams resampled from a
/// held-out split, and change streams where out-of-distribution inputs gradually replace in-distribution ones.
/// One definition, so Docs/Statistics.md and Docs/Evaluation.md report on the same streams.
package struct OODRamp: Sendable, Equatable {
    /// First input that can be out of distribution.
    package var changeAt = 1000
    /// Inputs over which the out-of-distribution probability rises to 1.
    package var rampLength = 500
    /// Stream length.
    package var length = 2500

    /// The ramp of Docs/Evaluation.md: change at 1,000, 500 inputs of ramp, 2,500 inputs.
    package init() {}

    /// P(input t is out of distribution): 0 before ``changeAt``, then (t - changeAt + 1) / rampLength up to 1,
    /// so input changeAt can already be out of distribution and every input from changeAt + rampLength - 1 is.
    package func oodProbability(at t: Int) -> Double {
        t < changeAt ? 0 : min(1, Double(t - changeAt + 1) / Double(rampLength))
    }

    /// For each input: one uniform draw decides OOD (below ``oodProbability(at:)``), then one draw picks the row
    /// of the chosen set (modulo its count). The generator is seeded with ``seed(run:)``.
    package func picks(idCount: Int, oodCount: Int, run: Int) -> [(ood: Bool, row: Int)] {
        precondition(idCount > 0 && oodCount > 0, "callers check that both sets have rows")
        var rng = SeededRandom(seed: Self.seed(run: run))
        return (0..<length).map { t in
            if rng.uniform() < oodProbability(at: t) { return (true, Int(rng.next() % UInt64(oodCount))) }
            return (false, Int(rng.next() % UInt64(idCount)))
        }
    }

    /// The seed of change stream `run`: 5000 + run (the same pattern for every OOD set of a run).
    package static func seed(run: Int) -> UInt64 { UInt64(5000 + run) }
}

/// Rows of an in-distribution stream drawn with replacement from `count` rows, seeded with 1000 + run.
package func resampledRows(length: Int, from count: Int, run: Int) -> [Int] {
    precondition(count > 0, "callers check that the split has rows")
    var rng = SeededRandom(seed: UInt64(1000 + run))
    return (0..<length).map { _ in Int(rng.next() % UInt64(count)) }
}

/// A comma-separated list option (`--layers fc,conv3_gap`).
package struct CommaList: Sendable, CustomStringConvertible {
    /// The items, in order.
    package var items: [String]

    /// Splits `text` at commas; empty items are refused.
    package init?(_ text: String) {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else { return nil }
        items = parts
    }

    /// The list as written.
    package var description: String { items.joined(separator: ",") }
}

extension CommaList: ExpressibleByArgument {
    /// Parses `a,b,c`.
    package init?(argument: String) { self.init(argument) }
}
