#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// The shift detector of a monitor with several layers: one jumper per layer, each betting on its own
/// layer's p-values, combined by averaging their capital. Betting on Bonferroni-fused p-values instead loses
/// capital on every in-distribution input, because those are conservative (Docs/Evaluation.md). With one layer
/// this is exactly ``ShiftDetector``. No allocation after initialisation.
///
/// - Against the fixed calibration sets (corrected p-values), the inputs are independent given the sets, so every
///   layer's martingale is a test martingale in one filtration and so is their average: the anytime bound of
///   ``ShiftDetector`` (Ville: P(ever >= 2 / delta) <= delta / 2) and the change-detection mean run length
///   (Shiryaev-Roberts on the average's ratios) hold as they are, whatever the dependence between layers.
/// - Against the calibration sets and the stream's earlier inputs (``ConformalUrn`` per layer), each layer's
///   martingale is a test martingale in its own layer's filtration only, so the average is not one; but it
///   reaches L / delta only if some layer's martingale does, which has probability at most delta / L each. The
///   anytime threshold is therefore L / delta (1 / delta for one layer). Change detection with several layers is
///   not covered by this argument; a `Monitor` uses this reference in anytime mode only.
package struct LayerMixtureShiftDetector: Sendable {
    /// Mode (as for ``ShiftDetector``).
    package var mode: ShiftDetector.Mode { rule.mode }
    /// One martingale per layer.
    package private(set) var martingales: [JumperMartingale]
    /// Applied to each layer's p-value before betting (unless ``urns`` is not empty).
    package let corrections: [CalibrationCorrection]
    /// Each layer's calibration set and stream so far, when the detector bets on p-values against both.
    package private(set) var urns: [ConformalUrn] = []
    /// Log of the average capital.
    package private(set) var logCapital: Double = 0
    /// Shiryaev-Roberts statistic (change detection).
    package var shiryaevRoberts: Double { rule.shiryaevRoberts }
    /// Whether an anytime alarm has been raised (it stays raised).
    package var alarmed: Bool { rule.alarmed }
    private var rule: ShiftAlarmRule

    /// A detector over `corrections.count` layers.
    package init(
        mode: ShiftDetector.Mode,
        betting: ShiftBetting = .mixture,
        jumpRate: Double = 0.001,
        corrections: [CalibrationCorrection]
    ) {
        self.rule = ShiftAlarmRule(mode: mode)
        self.corrections = corrections.isEmpty ? [.none] : corrections
        self.martingales = [JumperMartingale](
            repeating: JumperMartingale(jumpRate: jumpRate, betting: betting),
            count: self.corrections.count
        )
    }

    /// A detector over `calibrationCounts.count` layers that bets on each layer's p-value against that layer's
    /// calibration scores and the stream's earlier inputs (``ConformalUrn``, seeded by layer). In anytime mode
    /// the threshold is L / delta for L layers.
    package init(
        mode: ShiftDetector.Mode,
        betting: ShiftBetting = .mixture,
        jumpRate: Double = 0.001,
        exchangeableWith calibrationCounts: [Int]
    ) {
        let counts = calibrationCounts.isEmpty ? [0] : calibrationCounts
        self.init(
            mode: mode,
            betting: betting,
            jumpRate: jumpRate,
            corrections: counts.map { CalibrationCorrection.uncorrected(calibrationCount: $0) }
        )
        rule = ShiftAlarmRule(mode: mode, anytimeThreshold: Double(counts.count))
        urns = counts.enumerated().map { ConformalUrn(calibrationCount: $1, seed: UInt64($0)) }
    }

    /// A detector over `pValueSlack.count` layers that adds a fixed slack to each layer's p-value.
    package init(
        mode: ShiftDetector.Mode,
        betting: ShiftBetting = .mixture,
        jumpRate: Double = 0.001,
        pValueSlack: [Double]
    ) {
        self.init(mode: mode, betting: betting, jumpRate: jumpRate, corrections: pValueSlack.map { .slack($0) })
    }

    /// Log of the alarm threshold on the capital (anytime) or on R (change detection).
    package var logThreshold: Double { rule.logThreshold }

    /// Current evidence on the log scale: log of the average capital (anytime) or log R_n (change detection).
    package var logEvidence: Double { rule.logEvidence(logCapital: logCapital) }

    /// Writes each layer's martingale's log capital into `out` (as many as both hold).
    package func copyLayerLogCapitals(into out: UnsafeMutableBufferPointer<Double>) {
        for l in 0..<min(martingales.count, out.count) { out[l] = martingales[l].logCapital }
    }

    /// Feeds one input's per-layer p-values (one per layer, in order); returns true when this input raises an
    /// alarm. In anytime mode only the first crossing returns true; in change-detection mode the statistic and
    /// the martingales restart after each alarm.
    package mutating func update(_ p: UnsafeBufferPointer<Double>) -> Bool {
        // A missing layer value counts as p = 1 (no evidence) and is not added to the layer's urn.
        func corrected(_ l: Int) -> Double {
            guard l < p.count else { return 1 }
            return urns.isEmpty ? corrections[l].corrected(p[l]) : urns[l].pValue(conformal: p[l])
        }
        let step: Double
        if martingales.count == 1 {
            // Exactly ShiftDetector.
            step = martingales[0].update(corrected(0))
            logCapital = martingales[0].logCapital
        } else {
            var top = -Double.infinity
            for l in 0..<martingales.count {
                martingales[l].update(corrected(l))
                top = max(top, martingales[l].logCapital)
            }
            // log of the mean of exp(logCapital), shifted by the largest term so nothing overflows.
            var sum = 0.0
            for m in martingales { sum += exp(m.logCapital - top) }
            let next = top + log(sum / Double(martingales.count))
            step = next - logCapital
            logCapital = next
        }
        let alarm = rule.update(logCapital: logCapital, step: step)
        if alarm && rule.restarts {
            for l in 0..<martingales.count { martingales[l] = martingales[l].restarted() }
            logCapital = 0
        }
        return alarm
    }
}
