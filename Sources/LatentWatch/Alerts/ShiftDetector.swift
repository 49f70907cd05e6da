#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Detects a distribution shift in a stream of conformal p-values with a conformal test martingale
/// (``JumperMartingale``) betting on p-values corrected for the fixed calibration set
/// (``CalibrationCorrection``), or on p-values against the calibration set and the stream's earlier inputs
/// (``ConformalUrn``, from ``exchangeable(mode:calibrationCount:betting:jumpRate:seed:)``). Docs/Statistics.md states
/// what each mode guarantees and assumes.
package struct ShiftDetector: Sendable {
    /// What an alarm means (the policy's choice).
    package typealias Mode = ShiftDetection

    /// Mode.
    package var mode: Mode { rule.mode }
    /// The martingale (restarted after a change-detection alarm).
    package private(set) var martingale: JumperMartingale
    /// Shiryaev-Roberts statistic (change detection).
    package var shiryaevRoberts: Double { rule.shiryaevRoberts }
    /// Whether an anytime alarm has been raised (it stays raised).
    package var alarmed: Bool { rule.alarmed }
    private var rule: ShiftAlarmRule
    /// Applied to every p-value before betting (unless ``urn`` is set).
    package let correction: CalibrationCorrection
    /// The calibration set and the stream so far, when the detector bets on p-values against both.
    package private(set) var urn: ConformalUrn?

    /// A detector whose p-values are corrected by `correction` before it bets.
    package init(
        mode: Mode,
        betting: ShiftBetting = .mixture,
        jumpRate: Double = 0.001,
        correction: CalibrationCorrection = .none
    ) {
        self.rule = ShiftAlarmRule(mode: mode)
        self.martingale = JumperMartingale(jumpRate: jumpRate, betting: betting)
        self.correction = correction
    }

    /// A detector that bets on each input's p-value against the `m` calibration scores and the stream's earlier
    /// inputs (``ConformalUrn``; the conformal p-values fed to ``update(_:)`` are against the calibration set
    /// alone). No share of delta goes to the calibration set: in anytime mode the threshold is 1 / delta, and
    /// P(any false alarm, ever) <= delta when calibration set and stream are exchangeable.
    package static func exchangeable(
        mode: Mode,
        calibrationCount m: Int,
        betting: ShiftBetting = .mixture,
        jumpRate: Double = 0.001,
        seed: UInt64 = 0
    ) -> ShiftDetector {
        var d = ShiftDetector(mode: mode, betting: betting, jumpRate: jumpRate, correction: .none)
        d.rule = ShiftAlarmRule(mode: mode, anytimeThreshold: 1)
        d.urn = ConformalUrn(calibrationCount: m, seed: seed)
        return d
    }

    /// A detector that adds a fixed amount to every p-value before betting (usually
    /// ``calibrationSlack(calibrationCount:failureProbability:)``).
    package init(mode: Mode, betting: ShiftBetting = .mixture, jumpRate: Double = 0.001, pValueSlack: Double) {
        self.init(mode: mode, betting: betting, jumpRate: jumpRate, correction: .slack(pValueSlack))
    }

    /// A detector for p-values computed against a fixed calibration set of m scores: in anytime mode half
    /// of delta goes to the martingale and half to the event that the correction fails for this calibration set.
    package static func calibrated(
        mode: Mode,
        calibrationCount m: Int,
        betting: ShiftBetting = .mixture,
        method: CalibrationCorrection.Method = .conditional,
        jumpRate: Double = 0.001
    ) -> ShiftDetector {
        ShiftDetector(
            mode: mode,
            betting: betting,
            jumpRate: jumpRate,
            correction: CalibrationCorrection(
                method: method,
                calibrationCount: m,
                failureProbability: mode.calibrationFailureProbability
            )
        )
    }

    /// sqrt(log(2 / beta) / (2 m)): with probability at least 1 - beta over the calibration set, the empirical
    /// distribution of m scores is within this of the true one everywhere (DKW-Massart), and then p-values
    /// raised by it are conditionally super-uniform, so the martingale's guarantee holds given the set.
    /// Feed it the (non-smoothed) conformal p-values (1 + #{calibration >= s}) / (m + 1), which are never
    /// below the empirical tail fraction the bound is about.
    package static func calibrationSlack(calibrationCount m: Int, failureProbability beta: Double) -> Double {
        guard m > 0, beta > 0 else { return 0 }
        return (log(2 / beta) / (2 * Double(m))).squareRoot()
    }

    /// Log of the alarm threshold on the capital (anytime) or on R (change detection).
    package var logThreshold: Double { rule.logThreshold }

    /// Current evidence on the log scale: log S_n (anytime) or log R_n (change detection).
    package var logEvidence: Double { rule.logEvidence(logCapital: martingale.logCapital) }

    /// Feeds one p-value; returns true when this input raises an alarm. In anytime mode only the first
    /// crossing returns true; in change-detection mode the statistic restarts after each alarm.
    package mutating func update(_ p: Double) -> Bool {
        let q = urn != nil ? urn!.pValue(conformal: p) : correction.corrected(p)
        let step = martingale.update(q)
        let alarm = rule.update(logCapital: martingale.logCapital, step: step)
        if alarm && rule.restarts { martingale = martingale.restarted() }
        return alarm
    }
}

extension ShiftDetector.Mode {
    /// The share of delta that pays for conditioning on a fixed calibration set: delta / 2 in anytime mode,
    /// 0.005 in change-detection mode.
    var calibrationFailureProbability: Double {
        switch self {
        case .anytime(let delta): return delta / 2
        case .changeDetection: return 0.005
        }
    }
}

/// The alarm rule of both shift detectors, applied to the log of a test martingale's capital: the anytime
/// crossing of c / delta (once), or Shiryaev-Roberts on the capital's ratios with a restart after each alarm.
struct ShiftAlarmRule: Sendable {
    let mode: ShiftDetector.Mode
    private(set) var shiryaevRoberts: Double = 0
    private(set) var alarmed = false
    /// c: 2 when half of delta pays for the calibration set; the number of layers L when L martingales, each
    /// in its own layer's filtration, are averaged (any of them reaching L / delta has probability at most
    /// delta / L; the average reaches L / delta only if one of them does).
    let anytimeThreshold: Double

    init(mode: ShiftDetector.Mode, anytimeThreshold: Double = 2) {
        self.mode = mode
        self.anytimeThreshold = anytimeThreshold
    }

    var logThreshold: Double {
        switch mode {
        case .anytime(let delta): return log(anytimeThreshold / delta)
        case .changeDetection(let arl): return log(arl)
        }
    }

    /// Whether an alarm restarts the martingale (change detection).
    var restarts: Bool {
        if case .changeDetection = mode { return true }
        return false
    }

    func logEvidence(logCapital: Double) -> Double {
        switch mode {
        case .anytime: return logCapital
        case .changeDetection: return shiryaevRoberts > 0 ? log(shiryaevRoberts) : -.infinity
        }
    }

    /// Feeds the capital after one input: its log, and the log of this input's betting factor. Returns whether
    /// this input raises an alarm; after one in change-detection mode the caller restarts the martingale.
    mutating func update(logCapital: Double, step: Double) -> Bool {
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
                return true
            }
            return false
        }
    }
}
