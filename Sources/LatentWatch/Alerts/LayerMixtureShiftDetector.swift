#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// The shift detector of a monitor with several layers: one jumper per layer, each betting on its own
/// layer's corrected p-values, combined by averaging their capital. The average of test martingales is a
/// test martingale, so the anytime bound of ``ShiftDetector`` (Ville: P(ever >= 2 / delta) <= delta / 2) and the
/// change-detection mean run length (Shiryaev-Roberts on the average's ratios) hold as they are, whatever the
/// dependence between layers. Betting on Bonferroni-fused p-values instead loses capital on every
/// in-distribution input, because those are conservative (Docs/Evaluation.md). With one layer this
/// is exactly ``ShiftDetector``. No allocation after initialisation.
package struct LayerMixtureShiftDetector: Sendable {
    /// Mode (as for ``ShiftDetector``).
    package var mode: ShiftDetector.Mode { rule.mode }
    /// One martingale per layer.
    package private(set) var martingales: [JumperMartingale]
    /// Applied to each layer's p-value before betting.
    package let corrections: [CalibrationCorrection]
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
        // A missing layer value counts as p = 1 (no evidence).
        func corrected(_ l: Int) -> Double { l < p.count ? corrections[l].corrected(p[l]) : 1 }
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
