#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Fits the temperature of a softmax posterior on labelled inputs: T minimises the mean Brier score of
/// softmax(a_i / T) against the labels, (1/n) sum_i sum_k (p_ik - [k = y_i])^2, for logits a_i (here the root
/// distances of ``LatentModel/posteriorTemperature``). The Brier score is bounded per input (at most 2), so a few
/// inputs that are confidently wrong, far from every class, cannot drive T up and every other input's posterior
/// towards uniform, as they do to the log-likelihood (Docs/Statistics.md has the case). It is searched on a grid
/// of 64 temperatures spaced evenly in log T over ``range``, then refined by golden-section search in log T
/// between the best grid point's neighbours.
package enum PosteriorTemperature {
    /// The temperatures a fit may choose.
    package static let range: ClosedRange<Double> = 1e-3...1e6

    /// The temperature that minimises the mean Brier score of softmax(logits_i / T) against `labels` (component
    /// indices in 0..<classes), within ``range``. `logits` holds n rows of `classes` values; rows with a label
    /// outside 0..<classes or a non-finite value are skipped. Returns nil when no row remains.
    package static func fit(logits: [Double], classes k: Int, labels: [Int]) -> Double? {
        precondition(k >= 1 && logits.count == labels.count * k)
        var rows: [Int] = []
        for (i, y) in labels.enumerated() where y >= 0 && y < k {
            if logits[(i * k)..<((i + 1) * k)].allSatisfy(\.isFinite) { rows.append(i) }
        }
        guard !rows.isEmpty else { return nil }
        var p = [Double](repeating: 0, count: k)
        func brier(_ logT: Double) -> Double {
            let beta = exp(-logT)
            var total = 0.0
            logits.withUnsafeBufferPointer { l in
                for i in rows {
                    let row = l.baseAddress! + i * k
                    var m = -Double.infinity
                    for c in 0..<k where row[c] > m { m = row[c] }
                    var z = 0.0
                    for c in 0..<k {
                        p[c] = exp(beta * (row[c] - m))
                        z += p[c]
                    }
                    var s = 0.0
                    for c in 0..<k {
                        let e = p[c] / z - (c == labels[i] ? 1 : 0)
                        s += e * e
                    }
                    total += s
                }
            }
            return total / Double(rows.count)
        }
        let lo = log(range.lowerBound)
        let hi = log(range.upperBound)
        let steps = 63
        let h = (hi - lo) / Double(steps)
        var best = 0
        var bestValue = Double.infinity
        for j in 0...steps {
            let v = brier(lo + Double(j) * h)
            if v < bestValue {
                best = j
                bestValue = v
            }
        }
        // Golden-section search between the neighbours of the best grid point.
        var a = lo + Double(max(best - 1, 0)) * h
        var b = lo + Double(min(best + 1, steps)) * h
        let g = (5.0.squareRoot() - 1) / 2
        var c = b - g * (b - a)
        var d = a + g * (b - a)
        var fc = brier(c)
        var fd = brier(d)
        for _ in 0..<60 where b - a > 1e-10 {
            if fc <= fd {
                b = d
                d = c
                fd = fc
                c = b - g * (b - a)
                fc = brier(c)
            } else {
                a = c
                c = d
                fc = fd
                d = a + g * (b - a)
                fd = brier(d)
            }
        }
        let logT = (a + b) / 2
        return brier(logT) <= bestValue ? exp(logT) : exp(lo + Double(best) * h)
    }
}
