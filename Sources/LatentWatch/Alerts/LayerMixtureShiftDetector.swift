#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// The shift detector of a monitor with several layers: one simple jumper per layer, each betting on its own
/// layer's (slack-raised) p-values, combined by averaging their capital. The average of test martingales is a
/// test martingale, so the anytime bound of ``ShiftDetector`` (Ville: P(ever >= 2 / delta) <= delta / 2) and the
/// change-detection mean run length (Shiryaev-Roberts on the average's ratios) hold as they are, whatever the
/// dependence between layers. Betting on Bonferroni-fused p-values instead loses capital on every
/// in-distribution input, because those are conservative (Docs/Evaluation.md, finding 5). With one layer this
/// is exactly ``ShiftDetector``. No allocation after initialisation.
public struct LayerMixtureShiftDetector: Sendable {
    /// Mode (as for ``ShiftDetector``).
    public let mode: ShiftDetector.Mode
    /// One martingale per layer.
    public private(set) var martingales: [SimpleJumperMartingale]
    /// Added to each layer's p-value before betting (``ShiftDetector/calibrationSlack(calibrationCount:failureProbability:)``).
    public let pValueSlack: [Double]
    /// Log of the average capital.
    public private(set) var logCapital: Double = 0
    /// Shiryaev-Roberts statistic (change detection).
    public private(set) var shiryaevRoberts: Double = 0
    /// Whether an anytime alarm has been raised (it stays raised).
    public private(set) var alarmed = false

    /// A detector over `pValueSlack.count` layers.
    public init(mode: ShiftDetector.Mode, jumpRate: Double = 0.01, pValueSlack: [Double]) {
        self.mode = mode
        self.pValueSlack = pValueSlack.isEmpty ? [0] : pValueSlack.map { max(0, $0) }
        self.martingales = [SimpleJumperMartingale](
            repeating: SimpleJumperMartingale(jumpRate: jumpRate),
            count: self.pValueSlack.count
        )
    }

    /// Log of the alarm threshold on the capital (anytime) or on R (change detection).
    public var logThreshold: Double { ShiftDetector(mode: mode).logThreshold }

    /// Current evidence on the log scale: log of the average capital (anytime) or log R_n (change detection).
    public var logEvidence: Double {
        switch mode {
        case .anytime: return logCapital
        case .changeDetection: return shiryaevRoberts > 0 ? log(shiryaevRoberts) : -.infinity
        }
    }

    /// Feeds one input's per-layer p-values (one per layer, in order); returns true when this input raises an
    /// alarm. In anytime mode only the first crossing returns true; in change-detection mode the statistic and
    /// the martingales restart after each alarm.
    public mutating func update(_ p: UnsafeBufferPointer<Double>) -> Bool {
        let n = min(p.count, martingales.count)
        var top = -Double.infinity
        var firstStep = 0.0
        for l in 0..<martingales.count {
            // A missing layer value counts as p = 1 (no evidence).
            let s = martingales[l].update(l < n ? min(1, p[l] + pValueSlack[l]) : 1)
            if l == 0 { firstStep = s }
            top = max(top, martingales[l].logCapital)
        }
        // log of the mean of exp(logCapital), shifted by the largest term so nothing overflows.
        var sum = 0.0
        for m in martingales { sum += exp(m.logCapital - top) }
        let next = top + log(sum / Double(martingales.count))
        // With one layer, exactly ShiftDetector's step.
        let step = martingales.count == 1 ? firstStep : next - logCapital
        logCapital = martingales.count == 1 ? martingales[0].logCapital : next
        switch mode {
        case .anytime:
            if !alarmed && logCapital >= logThreshold {
                alarmed = true
                return true
            }
            return false
        case .changeDetection(let arl):
            shiryaevRoberts = (1 + shiryaevRoberts) * exp(step)
            if shiryaevRoberts >= arl {
                shiryaevRoberts = 0
                for l in 0..<martingales.count {
                    martingales[l] = SimpleJumperMartingale(jumpRate: martingales[l].jumpRate)
                }
                logCapital = 0
                return true
            }
            return false
        }
    }
}
