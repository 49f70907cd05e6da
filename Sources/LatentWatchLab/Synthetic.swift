import LatentWatchNumerics

/// Synthetic class data for the benchmark and the load test (the draws are in a fixed order, so a seed gives
/// the same arrays on every machine).
package enum Synthetic {
    /// Labelled training rows and unlabelled query rows, row-major.
    package struct Classes {
        /// [classes * perClass, dimension].
        package var train: [Float]
        /// Class of each training row.
        package var labels: [Int]
        /// [queries, dimension].
        package var queries: [Float]
    }

    /// Class-specific low-rank structure plus noise (the benchmark's data): per class a random rank-`rank` basis
    /// and shift; a row is shift + 0.5 N(0, 1) + basis x 0.2 N(0, 1) coefficients. Query q belongs to class
    /// q mod classes and is drawn right after that class's training rows.
    package static func lowRankClasses(
        seed: UInt64,
        dimension d: Int,
        classes k: Int,
        perClass: Int,
        queries: Int,
        rank: Int = 32
    ) -> Classes {
        var rng = SeededRandom(seed: seed)
        var out = Classes(
            train: [Float](repeating: 0, count: k * perClass * d),
            labels: [Int](repeating: 0, count: k * perClass),
            queries: [Float](repeating: 0, count: queries * d)
        )
        for c in 0..<k {
            let basis = (0..<(rank * d)).map { _ in Float(rng.normal()) }
            let shift = (0..<d).map { _ in Float(rng.normal()) }
            func sample(into buf: inout [Float], row: Int) {
                let coef = (0..<rank).map { _ in Float(rng.normal()) * 0.2 }
                for j in 0..<d {
                    var v = shift[j] + 0.5 * Float(rng.normal())
                    for b in 0..<rank { v += coef[b] * basis[b * d + j] }
                    buf[row * d + j] = v
                }
            }
            for i in 0..<perClass {
                out.labels[c * perClass + i] = c
                sample(into: &out.train, row: c * perClass + i)
            }
            for q in stride(from: c, to: queries, by: k) { sample(into: &out.queries, row: q) }
        }
        return out
    }

    /// Isotropic classes (the load test's data): class means 2 N(0, 1) per coordinate, rows mean + N(0, 1);
    /// query q belongs to class q mod classes.
    package static func isotropicClasses(
        seed: UInt64,
        dimension d: Int,
        classes k: Int,
        perClass: Int,
        queries: Int
    ) -> Classes {
        var rng = SeededRandom(seed: seed)
        var means = [Float](repeating: 0, count: k * d)
        for i in 0..<(k * d) { means[i] = 2 * Float(rng.normal()) }
        var out = Classes(
            train: [Float](repeating: 0, count: k * perClass * d),
            labels: [Int](repeating: 0, count: k * perClass),
            queries: [Float](repeating: 0, count: queries * d)
        )
        for c in 0..<k {
            for i in 0..<perClass {
                let row = c * perClass + i
                out.labels[row] = c
                for j in 0..<d { out.train[row * d + j] = means[c * d + j] + Float(rng.normal()) }
            }
        }
        for q in 0..<queries {
            let c = q % k
            for j in 0..<d { out.queries[q * d + j] = means[c * d + j] + Float(rng.normal()) }
        }
        return out
    }
}
