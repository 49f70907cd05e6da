import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// EM for Gaussian mixtures over a multi-pass source of prepared vectors, in double precision.
/// Follows scikit-learn's iteration (E-step, M-step, stop when the E-step mean log-likelihood changes by
/// less than the tolerance), so that from the same initial parameters both reach the same solution.
struct ExpectationMaximization {
    typealias Pass = ((UnsafeBufferPointer<Float>, Int) throws -> Void) throws -> Void

    struct Parameters {
        var weights: [Double]
        var means: [Double]  // K x D
        var covariances: [Double]  // K x D x D or K x D
    }

    struct Result {
        var parameters: Parameters
        var iterations: Int
        var converged: Bool
        var lowerBounds: [Double]
        var regularization: [AppliedRegularization]
    }

    let dimension: Int
    let components: Int
    let covariance: GaussianMixture.Covariance
    let regularization: Regularization
    /// Average variance of the data (for the relative floor).
    let averageVariance: Double
    /// EM stops when the mean log-likelihood changes by less than this.
    let tolerance: Double

    /// Per-component scoring state in double precision.
    struct Scorer {
        var logWeights: [Double]
        var means: [Double]
        var factors: [[Double]]  // full: W = L^-1 dense
        var inverseStd: [Double]  // diagonal: K x D
        var logNormalizers: [Double]
    }

    func scorer(_ p: Parameters) throws -> Scorer {
        let d = dimension
        var s = Scorer(
            logWeights: p.weights.map { log($0) },
            means: p.means,
            factors: [],
            inverseStd: [],
            logNormalizers: []
        )
        for k in 0..<components {
            switch covariance {
            case .full:
                let f = try GaussianFactorization(
                    covariance: Array(p.covariances[(k * d * d)..<((k + 1) * d * d)]),
                    dimension: d
                )
                s.factors.append(f.inverseFactor)
                s.logNormalizers.append(f.logNormalizer)
            case .diagonal:
                var logDet = 0.0
                for j in 0..<d {
                    let v = p.covariances[k * d + j]
                    guard v > 0 else {
                        throw LatentWatchError(
                            .fitFailed,
                            "mixture component \(k) has a non-positive variance; raise the regularisation"
                        )
                    }
                    s.inverseStd.append(1 / v.squareRoot())
                    logDet += log(v)
                }
                s.logNormalizers.append(-0.5 * (Double(d) * log(2 * Double.pi) + logDet))
            }
        }
        return s
    }

    /// log w_k + log N(z_i; k) for a batch, into out [n x K].
    func logJoint(_ s: Scorer, _ z: UnsafeBufferPointer<Float>, count n: Int, out: inout [Double], work: inout [Double])
    {
        let d = dimension
        let kk = components
        if out.count < n * kk { out = [Double](repeating: 0, count: n * kk) }
        if work.count < n * d { work = [Double](repeating: 0, count: n * d) }
        for k in 0..<kk {
            let mu = k * d
            switch covariance {
            case .full:
                work.withUnsafeMutableBufferPointer { w in
                    for i in 0..<n {
                        for j in 0..<d { w[i * d + j] = Double(z[i * d + j]) - s.means[mu + j] }
                    }
                    s.factors[k].withUnsafeBufferPointer { l in
                        BLAS.dtrmmRightLowerTransposed(m: n, n: d, l: l.baseAddress!, ldl: d, b: w.baseAddress!, ldb: d)
                    }
                    for i in 0..<n {
                        var q = 0.0
                        for j in 0..<d { q += w[i * d + j] * w[i * d + j] }
                        out[i * kk + k] = s.logWeights[k] + s.logNormalizers[k] - 0.5 * q
                    }
                }
            case .diagonal:
                for i in 0..<n {
                    var q = 0.0
                    for j in 0..<d {
                        let y = (Double(z[i * d + j]) - s.means[mu + j]) * s.inverseStd[mu + j]
                        q += y * y
                    }
                    out[i * kk + k] = s.logWeights[k] + s.logNormalizers[k] - 0.5 * q
                }
            }
        }
    }

    /// M-step from accumulated weighted moments.
    func maximize(_ moments: [GaussianMoments], total: Double) -> (Parameters, [AppliedRegularization]) {
        let d = dimension
        var p = Parameters(weights: [], means: [], covariances: [])
        var applied: [AppliedRegularization] = []
        let eps10 = 10 * Double.ulpOfOne
        for m in moments {
            let nk = m.weight + eps10
            p.weights.append(nk / total)
            p.means += m.mean
            var cov = m.scatterSymmetric
            for i in cov.indices { cov[i] /= nk }
            let lambda: Double
            if case .fixed(let l) = regularization.shrinkage { lambda = l } else { lambda = 0 }
            // Floor relative to the data's average variance (not the component's, which may collapse).
            let t = LinearAlgebra.trace(cov, n: d) / Double(d)
            let load = regularization.floorRatio * averageVariance + regularization.ridge
            for i in cov.indices { cov[i] *= (1 - lambda) }
            for i in 0..<d { cov[i * d + i] += lambda * t + load }
            applied.append(AppliedRegularization(shrinkage: lambda, diagonalLoad: load, method: "fixed"))
            switch covariance {
            case .full: p.covariances += cov
            case .diagonal: p.covariances += (0..<d).map { cov[$0 * d + $0] }
            }
        }
        return (p, applied)
    }

    /// What an E-step accumulates over the data: per-component moments weighted by the responsibilities, the
    /// sum of the rows' log-likelihoods and the number of rows. Mergeable across shards of the data.
    struct Expectation {
        var moments: [GaussianMoments]
        var logLikelihoodSum: Double
        var total: Double
    }

    /// One E-step over the rows `pass` yields, with the parameters `params`.
    func expectation(_ params: Parameters, pass: Pass) throws -> Expectation {
        let s = try scorer(params)
        var e = Expectation(
            moments: [GaussianMoments](repeating: GaussianMoments(dimension: dimension), count: components),
            logLikelihoodSum: 0,
            total: 0
        )
        var out: [Double] = []
        var work: [Double] = []
        var resp: [Double] = []
        var respAll: [Double] = []
        var ws: [Double] = []
        try pass { z, n in
            logJoint(s, z, count: n, out: &out, work: &work)
            if resp.count < n { resp = [Double](repeating: 0, count: n) }
            if respAll.count < n * components { respAll = [Double](repeating: 0, count: n * components) }
            for i in 0..<n {
                var mx = -Double.infinity
                for k in 0..<components { mx = max(mx, out[i * components + k]) }
                var se = 0.0
                for k in 0..<components { se += exp(out[i * components + k] - mx) }
                let lse = mx + log(se)
                e.logLikelihoodSum += lse
                for k in 0..<components { respAll[i * components + k] = exp(out[i * components + k] - lse) }
            }
            e.total += Double(n)
            for k in 0..<components {
                for i in 0..<n { resp[i] = respAll[i * components + k] }
                resp.withUnsafeBufferPointer { r in
                    e.moments[k].add(z, rows: n, weights: UnsafeBufferPointer(rebasing: r[0..<n]), workspace: &ws)
                }
            }
        }
        return e
    }

    /// The M-step after an E-step, and EM's stopping rule: the new parameters, the E-step's mean log-likelihood,
    /// and whether it changed by less than the tolerance from `previous` (the last round's).
    func maximize(
        _ e: Expectation,
        previous: Double
    ) throws -> (
        parameters: Parameters, regularization: [AppliedRegularization], logLikelihood: Double, converged: Bool
    ) {
        guard e.total > 0 else { throw LatentWatchError(.fitFailed, "the mixture fit got no data") }
        let bound = e.logLikelihoodSum / e.total
        guard bound.isFinite else {
            throw LatentWatchError(
                .fitFailed,
                "EM diverged (log-likelihood \(bound)); raise the mixture regularisation"
            )
        }
        let (p, applied) = maximize(e.moments, total: e.total)
        return (p, applied, bound, abs(bound - previous) < tolerance)
    }

    /// Runs EM from initial parameters.
    func run(
        from initial: Parameters,
        maxIterations: Int,
        pass: Pass,
        progress: (Int, Double) -> Void
    ) throws -> Result {
        var params = initial
        var applied = [AppliedRegularization](
            repeating: AppliedRegularization(shrinkage: 0, diagonalLoad: 0, method: "fixed"),
            count: components
        )
        var lowerBound = -Double.infinity
        var bounds: [Double] = []
        var converged = false
        var iterations = 0
        for iteration in 1...max(1, maxIterations) {
            iterations = iteration
            let step = try maximize(try expectation(params, pass: pass), previous: lowerBound)
            (params, applied, lowerBound) = (step.parameters, step.regularization, step.logLikelihood)
            bounds.append(lowerBound)
            progress(iteration, lowerBound)
            if step.converged {
                converged = true
                break
            }
        }
        return Result(
            parameters: params,
            iterations: iterations,
            converged: converged,
            lowerBounds: bounds,
            regularization: applied
        )
    }

    /// k-means++ seeding and Lloyd iterations on a sample; initial parameters from the clusters.
    func kMeansInitialization(
        sample: [Float],
        count n: Int,
        seed: UInt64,
        globalCovariance: [Double]
    ) throws -> Parameters {
        let d = dimension
        let kk = components
        guard n >= kk else {
            throw LatentWatchError(.fitFailed, "a \(kk)-component mixture needs at least \(kk) samples, got \(n)")
        }
        var rng = SeededRandom(seed: seed)
        func dist2(_ i: Int, _ c: [Double], _ k: Int) -> Double {
            var s = 0.0
            for j in 0..<d {
                let t = Double(sample[i * d + j]) - c[k * d + j]
                s += t * t
            }
            return s
        }
        var centers = [Double](repeating: 0, count: kk * d)
        let first = Int.random(in: 0..<n, using: &rng)
        for j in 0..<d { centers[j] = Double(sample[first * d + j]) }
        var closest = (0..<n).map { dist2($0, centers, 0) }
        let trials = 2 + Int(log(Double(kk)))
        for k in 1..<kk {
            let total = closest.reduce(0, +)
            var bestIndex = 0
            var bestPotential = Double.infinity
            for _ in 0..<trials {
                var r = Double.random(in: 0..<1, using: &rng) * total
                var pick = n - 1
                for i in 0..<n {
                    r -= closest[i]
                    if r <= 0 {
                        pick = i
                        break
                    }
                }
                var potential = 0.0
                var candidate = centers
                for j in 0..<d { candidate[k * d + j] = Double(sample[pick * d + j]) }
                for i in 0..<n { potential += min(closest[i], dist2(i, candidate, k)) }
                if potential < bestPotential {
                    bestPotential = potential
                    bestIndex = pick
                }
            }
            for j in 0..<d { centers[k * d + j] = Double(sample[bestIndex * d + j]) }
            for i in 0..<n { closest[i] = min(closest[i], dist2(i, centers, k)) }
        }
        var assignment = [Int](repeating: 0, count: n)
        for _ in 0..<20 {
            var changed = false
            for i in 0..<n {
                var best = 0
                var bd = Double.infinity
                for k in 0..<kk {
                    let v = dist2(i, centers, k)
                    if v < bd {
                        bd = v
                        best = k
                    }
                }
                if assignment[i] != best {
                    assignment[i] = best
                    changed = true
                }
            }
            var sums = [Double](repeating: 0, count: kk * d)
            var counts = [Int](repeating: 0, count: kk)
            for i in 0..<n {
                counts[assignment[i]] += 1
                for j in 0..<d { sums[assignment[i] * d + j] += Double(sample[i * d + j]) }
            }
            for k in 0..<kk where counts[k] > 0 {
                for j in 0..<d { centers[k * d + j] = sums[k * d + j] / Double(counts[k]) }
            }
            if !changed { break }
        }
        var moments = [GaussianMoments](repeating: GaussianMoments(dimension: d), count: kk)
        for k in 0..<kk {
            let rows = (0..<n).filter { assignment[$0] == k }
            var data: [Float] = []
            data.reserveCapacity(rows.count * d)
            for i in rows { data += sample[(i * d)..<((i + 1) * d)] }
            moments[k].add(data, rows: rows.count)
        }
        var (p, _) = maximize(moments, total: Double(n))
        // Clusters too small for a covariance start from the global covariance around their centre.
        for k in 0..<kk where moments[k].weight < 2 {
            p.weights[k] = max(p.weights[k], 1 / Double(n))
            for j in 0..<d { p.means[k * d + j] = centers[k * d + j] }
            switch covariance {
            case .full:
                for i in 0..<(d * d) { p.covariances[k * d * d + i] = globalCovariance[i] }
                for j in 0..<d {
                    p.covariances[k * d * d + j * d + j] +=
                        regularization.floorRatio * averageVariance + regularization.ridge + 1e-12
                }
            case .diagonal:
                for j in 0..<d {
                    p.covariances[k * d + j] =
                        globalCovariance[j * d + j] + regularization.floorRatio * averageVariance + regularization.ridge
                        + 1e-12
                }
            }
        }
        let ws = p.weights.reduce(0, +)
        p.weights = p.weights.map { $0 / ws }
        return p
    }
}
