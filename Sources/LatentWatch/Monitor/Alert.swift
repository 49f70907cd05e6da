import Foundation

/// One alert: a flagged input, or an episode of a stream alarm opening or closing.
public struct Alert: Sendable, Codable, Equatable {
    /// What raised it.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// One input's fused epistemic p-value is at or below alpha.
        case input
        /// The share of low p-values in the sliding window is significant (one per episode).
        case window
        /// The conformal test martingale detected a distribution shift (one per episode).
        case shift
        /// One input's aleatoric uncertainty (entropy of p(y|z), or a regression model's predictive spread) is
        /// above its calibrated quantile.
        case aleatoric
        /// A window or shift episode ended.
        case resolved
        /// A regression host's prediction of one input lies far from the latent density's prediction: the
        /// distance's p-value is at or below ``AlertPolicy/disagreementAlpha``.
        case disagreement
    }

    /// What raised it.
    public var kind: Kind
    /// Sequence number of the input in the monitor's stream (0-based).
    public var index: Int
    /// The host's request id, when it gave one.
    public var requestID: String?
    /// The p-value behind the alert (fused epistemic, or aleatoric), when there is one.
    public var pValue: Double?
    /// For `resolved`: the kind of episode that ended.
    public var episode: Kind?
    /// Human-readable detail.
    public var detail: String
    /// Seconds since 1970 when the alert was raised.
    public var time: Double

    /// Creates an alert.
    public init(
        kind: Kind,
        index: Int,
        requestID: String? = nil,
        pValue: Double? = nil,
        episode: Kind? = nil,
        detail: String,
        time: Double
    ) {
        self.kind = kind
        self.index = index
        self.requestID = requestID
        self.pValue = pValue
        self.episode = episode
        self.detail = detail
        self.time = time
    }

    enum CodingKeys: String, CodingKey {
        case kind, index
        case requestID = "request_id"
        case pValue = "p_value"
        case episode, detail, time
    }
}

extension Alert {
    /// Three significant digits, for details a person reads (the alert's `pValue` keeps every digit).
    static func short(_ x: Double) -> String { String(format: "%.3g", x) }

    /// One input's fused epistemic p-value is at or below alpha.
    static func outOfDistribution(index: Int, requestID: String?, pValue: Double, time: Double) -> Alert {
        Alert(
            kind: .input,
            index: index,
            requestID: requestID,
            pValue: pValue,
            detail: "input \(index) is out of distribution (fused p = \(Self.short(pValue)))",
            time: time
        )
    }

    /// One input's aleatoric p-value (its entropy of p(y | z) against calibration) is at or below alpha.
    static func ambiguous(index: Int, requestID: String?, entropy: Double, pValue: Double, time: Double) -> Alert {
        Alert(
            kind: .aleatoric,
            index: index,
            requestID: requestID,
            pValue: pValue,
            detail: "input \(index) is ambiguous (entropy \(Self.short(entropy)) nats, p = \(Self.short(pValue)))",
            time: time
        )
    }

    /// One input's predictive spread p-value (a regression model's aleatoric p-value) is at or below alpha.
    static func uncertainPrediction(
        index: Int,
        requestID: String?,
        prediction: Double,
        spread: Double,
        pValue: Double,
        time: Double
    ) -> Alert {
        Alert(
            kind: .aleatoric,
            index: index,
            requestID: requestID,
            pValue: pValue,
            detail: "input \(index) has an uncertain prediction (\(Self.short(prediction)) with spread "
                + "\(Self.short(spread)), p = \(Self.short(pValue)))",
            time: time
        )
    }

    /// A regression host's prediction lies far from the latent density's: its disagreement p-value is at or below
    /// alpha.
    static func predictionDisagreement(
        index: Int,
        requestID: String?,
        hostPrediction: Double,
        prediction: Double,
        pValue: Double,
        time: Double
    ) -> Alert {
        Alert(
            kind: .disagreement,
            index: index,
            requestID: requestID,
            pValue: pValue,
            detail: "input \(index): the host predicts \(Self.short(hostPrediction)), the activations "
                + "\(Self.short(prediction)) (p = \(Self.short(pValue)))",
            time: time
        )
    }

    /// A window episode opened.
    static func windowFired(
        index: Int,
        requestID: String?,
        count: Int,
        length: Int,
        alpha: Double,
        time: Double
    )
        -> Alert
    {
        Alert(
            kind: .window,
            index: index,
            requestID: requestID,
            detail: "\(count) of the last \(length) inputs have p <= \(alpha)",
            time: time
        )
    }

    /// A shift episode opened.
    static func shiftFired(index: Int, requestID: String?, time: Double) -> Alert {
        Alert(
            kind: .shift,
            index: index,
            requestID: requestID,
            detail: "distribution shift detected (conformal test martingale)",
            time: time
        )
    }

    /// A window or shift episode ended.
    static func resolved(_ episode: Kind, index: Int, time: Double, detail: String? = nil) -> Alert {
        Alert(
            kind: .resolved,
            index: index,
            episode: episode,
            detail: detail
                ?? (episode == .window
                    ? "the rate of low p-values is back to normal" : "no further shift alarms for the cooldown"),
            time: time
        )
    }
}
