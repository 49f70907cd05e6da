import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// What the host's model outputs, when the host passes them to the monitor.
public enum ModelOutputKind: String, Sendable, Codable {
    /// Pre-softmax scores.
    case logits
    /// Class probabilities (non-negative, summing to about 1).
    case probabilities
    /// A regression model's prediction of its target (count 1), in the units of the targets the primary layer's
    /// regression model was fitted on: the monitor reports its distance from the latent density's prediction
    /// (``Assessment/disagreement``) and that distance's p-value.
    case prediction
}

/// The classifier's own view of one input, from its outputs: what the monitor reports beside the latent
/// density's, and compares with it.
public struct OutputSummary: Sendable, Equatable {
    /// Index of the largest output.
    public var predicted: Int
    /// Largest softmax probability (maximum softmax probability, Hendrycks and Gimpel 2017).
    public var confidence: Double
    /// Entropy of the softmax distribution (nats).
    public var entropy: Double
    /// Energy score -logsumexp(logits) (Liu et al. 2020); nil for probabilities.
    public var energy: Double?

    /// Summarises `count` outputs; nil when any is NaN/Inf or probabilities are negative, and for a regression
    /// model's prediction (not a classifier's outputs). Allocates nothing.
    package static func summarise(_ o: UnsafeBufferPointer<Float>, kind: ModelOutputKind) -> OutputSummary? {
        guard !o.isEmpty else { return nil }
        var best = 0
        var top = -Double.infinity
        for i in 0..<o.count {
            let v = Double(o[i])
            guard v.isFinite else { return nil }
            if v > top {
                top = v
                best = i
            }
        }
        switch kind {
        case .prediction:
            return nil
        case .logits:
            var sum = 0.0
            for v in o { sum += exp(Double(v) - top) }
            let lse = top + log(sum)
            var h = 0.0
            for v in o {
                let lp = Double(v) - lse
                h -= exp(lp) * lp
            }
            return OutputSummary(predicted: best, confidence: exp(top - lse), entropy: h, energy: -lse)
        case .probabilities:
            var total = 0.0
            for v in o {
                guard v >= 0 else { return nil }
                total += Double(v)
            }
            guard total > 0 else { return nil }
            var h = 0.0
            for v in o where v > 0 {
                let p = Double(v) / total
                h -= p * log(p)
            }
            return OutputSummary(predicted: best, confidence: top / total, entropy: h, energy: nil)
        }
    }
}
