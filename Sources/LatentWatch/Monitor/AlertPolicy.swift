/// How per-layer p-values combine into one. Bonferroni and Cauchy stay valid under the strong dependence between
/// layers (Fisher's method and summed log-likelihoods do not); a joint calibration makes the combination itself a
/// conformal p-value.
public enum PValueFusion: String, Sendable, Codable, CaseIterable {
    /// The joint calibration when every layer's model carries one made for exactly the monitored layers
    /// (``LatentModel/jointCalibration``), otherwise Bonferroni. The default.
    case automatic
    /// The joint calibration: the conformal p-value of the Cauchy (or Fisher) statistic of the layers' p-values
    /// among the same statistic on the inputs every layer was calibrated on; valid at every level (on average over
    /// calibration sets), as one layer's p-value is, and ranking as the statistic does. A monitor of two or more
    /// layers refuses models without a matching one; one layer's own p-value needs none.
    case calibrated
    /// min(1, L min_i p_i): valid under any dependence, conservative.
    case bonferroni
    /// Cauchy combination (Liu and Xie 2020): 1/2 - arctan(mean_i tan((1/2 - p_i) pi)) / pi; valid
    /// asymptotically under arbitrary dependence, more powerful when several layers agree.
    case cauchy
}

/// Which alerts a monitor raises, and at what levels.
public struct AlertPolicy: Sendable, Equatable {
    /// Per-input alert when the fused epistemic p-value is at most this.
    public var inputAlpha: Double
    /// Aleatoric alert when the aleatoric p-value of the primary layer is at most this (nil: off): of the entropy
    /// of p(y | z) for classifiers, of the predictive spread for regression models.
    public var aleatoricAlpha: Double?
    /// Sliding-window rate test (nil: off).
    public var window: WindowPolicy?
    /// Distribution-shift detector mode (nil: off).
    public var shift: ShiftDetection?
    /// Jump rate of the shift detector's martingale.
    public var jumpRate: Double
    /// The shift detector's betting functions.
    public var shiftBetting: ShiftBetting
    /// Fusion of layers' p-values (``PValueFusion/automatic``: the models' joint calibration when they carry one,
    /// otherwise Bonferroni).
    public var fusion: PValueFusion
    /// Correct the stream detectors that test against the fixed calibration set, so their guarantees hold given
    /// it: the shift detector in change-detection mode or with ``ShiftReference/calibrationSet`` bets on p-values
    /// raised to bounds that hold given the set (exact Beta bounds at small p, DKW elsewhere;
    /// ``CalibrationCorrection``), and the window assumes the exact bound on the rate of p <= alpha
    /// (``WindowRateDetector/calibratedRate(threshold:calibrationCount:failureProbability:)``; Docs/Statistics.md).
    public var correctForCalibrationSet: Bool
    /// What the shift detector compares each input with in anytime mode: the calibration set and the stream's
    /// earlier inputs (the default), or the calibration set alone with the correction above. Change-detection
    /// mode always uses the calibration set. Docs/Statistics.md states both guarantees.
    public var shiftReference: ShiftReference
    /// Coverage level of the prediction interval a regression model's assessments carry
    /// (``Assessment/predictionInterval``), in (0, 1); nil, or a level outside (0, 1): none. (The C, Python and
    /// command-line interfaces refuse a level outside (0, 1).)
    public var predictionIntervalLevel: Double?
    /// Disagreement alert (``Alert/Kind/disagreement``) and flag when the p-value of the distance between a
    /// regression host's prediction and the latent density's is at most this (nil: off). Only monitors given the
    /// host's predictions (``ModelOutputKind/prediction``) of models whose disagreement is calibrated compute it.
    public var disagreementAlpha: Double?

    /// Sliding-window settings.
    public struct WindowPolicy: Sendable, Equatable {
        /// Inputs per window.
        public var length: Int
        /// Probability that one full in-distribution window fires.
        public var windowLevel: Double
        /// Inputs at normal rate before an episode is resolved (nil: one window).
        public var cooldown: Int?

        /// Creates window settings.
        public init(length: Int = 200, windowLevel: Double = 1e-4, cooldown: Int? = nil) {
            self.length = length
            self.windowLevel = windowLevel
            self.cooldown = cooldown
        }
    }

    /// Defaults: alpha 0.01 per input and aleatoric, a 200-input window at level 1e-4, anytime shift detection
    /// at delta 0.01 (mixture betting, jump rate 0.001, against the calibration set and the stream so far),
    /// fusion by the models' joint calibration when they carry one (Bonferroni otherwise), calibration-set
    /// correction on, prediction intervals at 90 %, disagreement alerts at 0.01.
    public init(
        inputAlpha: Double = 0.01,
        aleatoricAlpha: Double? = 0.01,
        window: WindowPolicy? = WindowPolicy(),
        shift: ShiftDetection? = .anytime(delta: 0.01),
        jumpRate: Double = 0.001,
        shiftBetting: ShiftBetting = .mixture,
        fusion: PValueFusion = .automatic,
        correctForCalibrationSet: Bool = true,
        shiftReference: ShiftReference = .calibrationAndStream,
        predictionIntervalLevel: Double? = 0.9,
        disagreementAlpha: Double? = 0.01
    ) {
        self.inputAlpha = inputAlpha
        self.aleatoricAlpha = aleatoricAlpha
        self.window = window
        self.shift = shift
        self.jumpRate = jumpRate
        self.shiftBetting = shiftBetting
        self.fusion = fusion
        self.correctForCalibrationSet = correctForCalibrationSet
        self.shiftReference = shiftReference
        self.predictionIntervalLevel = predictionIntervalLevel
        self.disagreementAlpha = disagreementAlpha
    }
}

extension PValueFusion {
    /// Fuses p-values without a joint calibration (``automatic`` and ``calibrated`` fall back to Bonferroni);
    /// allocates nothing.
    @inlinable
    package func fuse(_ p: UnsafeBufferPointer<Double>) -> Double {
        guard !p.isEmpty else { return 1 }
        if p.count == 1 { return p[0] }
        switch self {
        case .bonferroni, .automatic, .calibrated:
            var m = 1.0
            for v in p { m = min(m, v) }
            return min(1, m * Double(p.count))
        case .cauchy:
            var t = 0.0
            for v in p {
                let q = min(max(v, 1e-300), 1 - 1e-16)
                t += tanPi(0.5 - q)
            }
            t /= Double(p.count)
            return min(1, max(0, 0.5 - atanOverPi(t)))
        }
    }
}

extension PValueFusion {
    /// The joint calibration this fusion uses for these layers' models: the one they all carry when it was made
    /// for exactly them (nil with one layer, with ``bonferroni`` and ``cauchy``, and with ``automatic`` when
    /// there is none). Throws with ``calibrated`` when there is none. When ``automatic`` falls back to Bonferroni
    /// although some of the models carry a joint calibration (made for other models), `warning` gets the reason:
    /// the monitor logs it, since the fallback would otherwise go unnoticed, for example after a hot reload.
    package func jointCalibration(
        for layers: [MonitoredLayer],
        warning: (String) -> Void = { _ in }
    ) throws(LatentWatchError) -> JointCalibration? {
        guard layers.count >= 2, self == .automatic || self == .calibrated else { return nil }
        let models = layers.map(\.model)
        if let j = models[0].jointCalibration, j.matches(models) { return j }
        let carried = layers.filter { $0.model.jointCalibration != nil }.map(\.name)
        guard self == .calibrated else {
            if !carried.isEmpty {
                warning(
                    "layers \(carried) carry a joint calibration, but none made for exactly the models of "
                        + "\(layers.map(\.name)); their p-values are fused with Bonferroni (calibrate them together: "
                        + "latentwatch calibrate-fusion)"
                )
            }
            return nil
        }
        throw LatentWatchError(
            .invalidConfiguration,
            "calibrated fusion needs the layers' models to carry one joint calibration made for exactly them; "
                + (carried.isEmpty
                    ? "none carries one"
                    : "\(carried) carry one, made for \(models.compactMap(\.jointCalibration).first!.layerNames) or "
                        + "with other calibrations"),
            remedy: "calibrate them together (latentwatch calibrate-fusion, LatentModelFitter.calibrateJointly), "
                + "or choose automatic, bonferroni or cauchy fusion"
        )
    }
}

@usableFromInline func tanPi(_ x: Double) -> Double { _tan(x * Double.pi) }
@usableFromInline func atanOverPi(_ x: Double) -> Double { _atan(x) / Double.pi }

extension AlertPolicy {
    /// Whether the shift detector bets on p-values against the calibration set and the stream so far (anytime
    /// mode with ``ShiftReference/calibrationAndStream``).
    package var shiftUsesStream: Bool {
        if case .anytime = shift, shiftReference == .calibrationAndStream { return true }
        return false
    }

    /// The shift detector of a monitor with this policy over layers with these calibration counts (nil when
    /// shift detection is off); `corrections` are ``calibrationCorrections(calibrationCounts:method:)``'s.
    package func shiftDetector(
        calibrationCounts: [Int],
        corrections: [CalibrationCorrection]
    ) -> LayerMixtureShiftDetector? {
        guard let mode = shift else { return nil }
        if shiftUsesStream {
            return LayerMixtureShiftDetector(
                mode: mode,
                betting: shiftBetting,
                jumpRate: jumpRate,
                exchangeableWith: calibrationCounts
            )
        }
        return LayerMixtureShiftDetector(
            mode: mode,
            betting: shiftBetting,
            jumpRate: jumpRate,
            corrections: corrections
        )
    }

    /// The shift detector's alarm threshold on the log scale for `layers` layers (nil when off): log(L / delta)
    /// against the calibration sets and the stream, log(2 / delta) against the calibration sets alone, log of the
    /// mean run length in change-detection mode.
    package func shiftLogThreshold(layers: Int) -> Double? {
        guard let mode = shift else { return nil }
        return ShiftAlarmRule(mode: mode, anytimeThreshold: shiftUsesStream ? Double(max(1, layers)) : 2)
            .logThreshold
    }

    /// The corrections a `Monitor` with this policy applies for fixed calibration sets of these sizes (one
    /// per layer). `shift[l]` corrects layer l's p-value before the shift detector bets on it
    /// (``CalibrationCorrection``, conditional method, at beta / L, with beta = delta / 2 in anytime mode and
    /// 0.005 otherwise). `windowNullRate` is the rate of fused p <= `inputAlpha` the window assumes: `inputAlpha`
    /// plus each layer's excess of the exact bound
    /// ``WindowRateDetector/calibratedRate(threshold:calibrationCount:failureProbability:)`` at `inputAlpha` / L
    /// over `inputAlpha` / L (a union bound for Bonferroni fusion, approximate for Cauchy). Without
    /// `correctForCalibrationSet` there is no correction and the null rate is `inputAlpha`. Docs/Statistics.md.
    package func calibrationCorrections(
        calibrationCounts: [Int],
        method: CalibrationCorrection.Method = .conditional
    ) -> (shift: [CalibrationCorrection], windowNullRate: Double) {
        let layers = max(1, calibrationCounts.count)
        guard correctForCalibrationSet else {
            return (calibrationCounts.map { CalibrationCorrection.uncorrected(calibrationCount: $0) }, inputAlpha)
        }
        let beta = (shift?.calibrationFailureProbability ?? 0.005) / Double(layers)
        let corrections = calibrationCounts.map {
            CalibrationCorrection(method: method, calibrationCount: $0, failureProbability: beta)
        }
        let layerAlpha = inputAlpha / Double(layers)
        let excess = calibrationCounts.reduce(0.0) {
            $0
                + WindowRateDetector.calibratedRate(
                    threshold: layerAlpha,
                    calibrationCount: $1,
                    failureProbability: beta
                ) - layerAlpha
        }
        return (corrections, inputAlpha + max(0, excess))
    }

    /// The rate of fused p <= `inputAlpha` the window assumes when the fused p-value is jointly calibrated on `m`
    /// inputs: the exact bound given that set at the calibration failure probability (as for one layer), or
    /// `inputAlpha` without `correctForCalibrationSet`.
    package func windowNullRate(jointCalibrationCount m: Int) -> Double {
        guard correctForCalibrationSet else { return inputAlpha }
        return WindowRateDetector.calibratedRate(
            threshold: inputAlpha,
            calibrationCount: m,
            failureProbability: shift?.calibrationFailureProbability ?? 0.005
        )
    }
}

/// What a shift alarm means: an anytime test (no false alarm ever, with probability 1 - delta) or change
/// detection (restarts after each alarm; false alarms bounded by a mean run length). Docs/Statistics.md.
public enum ShiftDetection: Sendable, Equatable {
    /// Alarm once when the martingale's capital crosses a threshold, never restarting: P(any false alarm,
    /// ever) <= delta. Against the calibration set and the stream (``ShiftReference/calibrationAndStream``) the
    /// threshold is L / delta for L layers and the bound holds on average over calibration sets; against the
    /// calibration set alone it is 2 / delta, and the other delta / 2 pays for conditioning on that set.
    case anytime(delta: Double)
    /// Shiryaev-Roberts change detection on the martingale's ratios, R_n = (1 + R_{n-1}) S_n / S_{n-1},
    /// alarm when R_n >= the mean run length asked for, then restart. Under the null R_n - n is a
    /// martingale, so the mean run length to a false alarm is at least that value.
    case changeDetection(meanRunLength: Double)
}
