#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Log-space reductions that keep confident inputs distinct instead of underflowing.
package enum LogSpace {
    /// log(sum_i exp(v_i)); -inf for an empty or all -inf input.
    @inlinable
    package static func logSumExp(_ v: UnsafeBufferPointer<Double>) -> Double {
        var m = -Double.infinity
        for x in v where x > m { m = x }
        if !m.isFinite { return m }
        var s = 0.0
        for x in v { s += exp(x - m) }
        return m + log(s)
    }

    /// Turns log-weights into probabilities in place (softmax) and returns their entropy in nats,
    /// computed from the log-probabilities (sum p * (lse - v)) so that it stays accurate when one class
    /// dominates. Returns the log-sum-exp through `logNormalizer`.
    @inlinable
    package static func normalize(
        _ logWeights: UnsafeMutableBufferPointer<Double>,
        logNormalizer: inout Double
    ) -> Double {
        let lse = logSumExp(UnsafeBufferPointer(logWeights))
        logNormalizer = lse
        guard lse.isFinite else {
            // All -inf (or +inf): no information; uniform posterior.
            let n = Double(logWeights.count)
            for i in logWeights.indices { logWeights[i] = 1 / n }
            return log(n)
        }
        var entropy = 0.0
        for i in logWeights.indices {
            let lp = logWeights[i] - lse
            let p = exp(lp)
            logWeights[i] = p
            if p > 0 { entropy -= p * lp }
        }
        return entropy
    }
}
