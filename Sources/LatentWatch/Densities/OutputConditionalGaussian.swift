import LatentWatchNumerics

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// The real-valued targets of a regression model cut into bins at their quantiles: the classes of the
/// output-conditional density (``OutputConditionalGaussian``). Each bin keeps the mean and the standard deviation
/// of the fitting targets that fell into it, so a posterior over bins is a predictive distribution of the target.
package struct TargetBins: Sendable, Equatable {
    /// Bin edges, ascending, `count + 1` of them: bin b holds targets in [edges[b], edges[b + 1]) (the last bin
    /// includes its upper edge). The outer edges are the smallest and largest fitting target.
    package let edges: [Double]
    /// Mean of the fitting targets in each bin.
    package let means: [Double]
    /// Standard deviation of the fitting targets in each bin (divisor n).
    package let spreads: [Double]

    /// Number of bins.
    package var count: Int { means.count }

    /// Bins from stored parts; nil when the parts are inconsistent (edges not increasing, a mean outside its
    /// bin, a negative or non-finite spread).
    package init?(edges: [Double], means: [Double], spreads: [Double]) {
        let b = means.count
        guard b >= 1, edges.count == b + 1, spreads.count == b,
            (edges + means + spreads).allSatisfy({ $0.isFinite }),
            spreads.allSatisfy({ $0 >= 0 })
        else { return nil }
        for i in 0..<b {
            guard edges[i] <= edges[i + 1], means[i] >= edges[i], means[i] <= edges[i + 1] else { return nil }
        }
        self.edges = edges
        self.means = means
        self.spreads = spreads
    }

    /// The bin of a target: the number of inner edges at or below it (numpy's `searchsorted(inner, y, "right")`),
    /// so targets outside the fitting range fall into the first or last bin. NaN falls into the first bin.
    package func bin(of y: Double) -> Int {
        var lo = 0
        var hi = count - 1  // inner edges are edges[1...count-1]
        while lo < hi {
            let mid = (lo + hi) >> 1
            if edges[mid + 1] <= y { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Bins at the quantiles of `targets` (non-finite targets are refused by the caller): inner edges at the
    /// `bins - 1` quantiles b / bins (numpy's default linear interpolation, computed as numpy does), repeated
    /// edges dropped, then any bin
    /// holding fewer than `minimumCount` targets merged into its smaller neighbour until none is left.
    /// Nil when fewer than `minimumCount` targets are given.
    package static func quantiles(of targets: [Double], bins: Int, minimumCount: Int = 2) -> TargetBins? {
        let sorted = targets.sorted()
        let n = sorted.count
        guard n >= max(1, minimumCount), bins >= 1 else { return nil }
        var inner: [Double] = []
        for b in 1..<max(1, bins) {
            // numpy's arithmetic: the virtual index q (n - 1), and its lerp from the nearer end.
            let h = Double(b) / Double(bins) * Double(n - 1)
            let i = min(Int(h.rounded(.down)), n - 1)
            let t = h - Double(i)
            let e: Double
            if i + 1 >= n {
                e = sorted[n - 1]
            } else {
                let d = sorted[i + 1] - sorted[i]
                e = t >= 0.5 ? sorted[i + 1] - d * (1 - t) : sorted[i] + d * t
            }
            if inner.last != e { inner.append(e) }
        }
        // The bin of each sorted target (a walk over the inner edges), and the counts per bin.
        var bin = [Int](repeating: 0, count: n)
        var c = [Int](repeating: 0, count: inner.count + 1)
        var k = 0
        for (i, y) in sorted.enumerated() {
            while k < inner.count && inner[k] <= y { k += 1 }
            bin[i] = k
            c[k] += 1
        }
        // Merge the sparsest bin below the minimum into its smaller neighbour (removing the edge between them)
        // until none is left.
        while let worst = c.indices.filter({ c[$0] < minimumCount }).min(by: { c[$0] < c[$1] }), !inner.isEmpty {
            let left = worst > 0 ? c[worst - 1] : Int.max
            let right = worst + 1 < c.count ? c[worst + 1] : Int.max
            let edge = left <= right ? worst - 1 : worst
            inner.remove(at: edge)
            c[edge] += c.remove(at: edge + 1)
            for i in bin.indices where bin[i] > edge { bin[i] -= 1 }
        }
        let edges = [sorted[0]] + inner + [sorted[n - 1]]
        var sums = [Double](repeating: 0, count: c.count)
        for (i, y) in sorted.enumerated() { sums[bin[i]] += y }
        // Rounding can put the mean of identical targets a hair outside their bin: clamp it back.
        let means = (0..<c.count).map { b in
            min(
                max(sums[b] / Double(c[b]), b == 0 ? sorted[0] : inner[b - 1]),
                b < inner.count ? inner[b] : sorted[n - 1]
            )
        }
        var squares = [Double](repeating: 0, count: c.count)
        for (i, y) in sorted.enumerated() { squares[bin[i]] += (y - means[bin[i]]) * (y - means[bin[i]]) }
        let spreads = (0..<c.count).map { (squares[$0] / Double(c[$0])).squareRoot() }
        return TargetBins(edges: edges, means: means, spreads: spreads)
    }

    /// The predictive distribution's mean and standard deviation given the posterior over bins: the mixture of
    /// the bins' target distributions, mean sum_b p_b m_b and variance sum_b p_b (s_b^2 + m_b^2) - mean^2.
    @inline(__always)
    package func moments(posterior p: UnsafeBufferPointer<Double>) -> (mean: Double, spread: Double) {
        var mean = 0.0
        for b in 0..<count { mean += p[b] * means[b] }
        var second = 0.0
        for b in 0..<count {
            let d = means[b] - mean
            second += p[b] * (spreads[b] * spreads[b] + d * d)
        }
        return (mean, max(0, second).squareRoot())
    }
}

/// The output-conditional density of a regression model (Postels et al. 2020, regression): the targets cut into
/// quantile bins (``TargetBins``) and a class-conditional density over the bins, per-bin full Gaussians
/// (`regression`) or bin means with one tied covariance (`regression-tied`). p(z) = sum_b p(b) p(z | b) is the
/// epistemic part; the posterior over bins, calibrated on held-out targets like a class posterior, is a predictive
/// distribution whose mean is the prediction and whose standard deviation the aleatoric spread.
package struct OutputConditionalGaussian: LatentDensity {
    package static let familyName = "regression"
    /// Name of the variant with one covariance tied across bins.
    package static let tiedFamilyName = "regression-tied"

    /// The density over bins; its class labels are the bin indices 0..<bins.count.
    package let bins: any LatentDensity
    /// The target bins.
    package let targets: TargetBins

    /// A density from its parts; the inner density's labels must be the bin indices.
    package init(bins: any LatentDensity, targets: TargetBins) {
        precondition(bins.classLabels == Array(0..<targets.count), "bin densities are labelled by bin index")
        self.bins = bins
        self.targets = targets
    }

    package var family: String {
        bins is TiedGaussian ? Self.tiedFamilyName : Self.familyName
    }
    package var dimension: Int { bins.dimension }
    package var componentCount: Int { bins.componentCount }
    /// The components are target bins, not classes.
    package var classLabels: [Int]? { nil }
    package var targetBins: TargetBins? { targets }
    package var precision: ElementType { bins.precision }
    package var regularization: [AppliedRegularization] { bins.regularization }

    package func evaluate(
        _ z: UnsafePointer<Float>,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        bins.evaluate(z, logJoint: logJoint, distances: distances, scratch: scratch)
    }

    package func evaluateBatch(
        _ z: UnsafePointer<Float>,
        count: Int,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        workspace: inout BatchWorkspace
    ) {
        bins.evaluateBatch(z, count: count, logJoint: logJoint, distances: distances, workspace: &workspace)
    }

    package func converted(to precision: ElementType) -> OutputConditionalGaussian {
        OutputConditionalGaussian(bins: bins.converted(to: precision), targets: targets)
    }

    package func encode(into sections: inout ModelSectionWriter) {
        bins.encode(into: &sections)
        sections.density?.family = family
        sections.addDoubles("targets.edges", targets.edges, shape: [targets.count + 1])
        sections.addDoubles("targets.means", targets.means, shape: [targets.count])
        sections.addDoubles("targets.spreads", targets.spreads, shape: [targets.count])
    }

    package static func decode(from sections: ModelSectionReader) throws(LatentWatchError) -> OutputConditionalGaussian
    {
        let m = sections.density
        let inner: any LatentDensity =
            m.family == tiedFamilyName
            ? try TiedGaussian.decode(from: sections) : try ClassConditionalGaussian.decode(from: sections)
        let b = m.components
        guard
            let targets = TargetBins(
                edges: try sections.doubles("targets.edges", shape: [b + 1]),
                means: try sections.doubles("targets.means", shape: [b]),
                spreads: try sections.doubles("targets.spreads", shape: [b])
            ),
            m.classLabels == Array(0..<b)
        else {
            throw LatentWatchError(
                .inconsistentModel,
                "the target bins of a \(m.family) density are inconsistent (edges not increasing, a mean outside "
                    + "its bin, a negative spread, or components not labelled 0..<\(b))",
                remedy: "the file is corrupt; refit the model"
            )
        }
        return OutputConditionalGaussian(bins: inner, targets: targets)
    }
}

extension DensityFamily {
    /// `regression`: targets binned at quantiles, a full-covariance Gaussian per bin.
    package static let outputConditional = DensityFamily(
        name: DensityFamilyName(OutputConditionalGaussian.familyName),
        summary: "regression: targets binned at quantiles, a Gaussian per bin (needs targets)",
        needsLabels: false,
        needsTargets: true,
        fit: { (ctx) throws(LatentWatchError) -> any LatentDensity in
            try outputConditionalFit(ctx, inner: .classGaussians)
        },
        decode: { (r) throws(LatentWatchError) -> any LatentDensity in try OutputConditionalGaussian.decode(from: r) }
    )

    /// `regression-tied`: targets binned at quantiles, bin means with one tied covariance.
    package static let outputConditionalTied = DensityFamily(
        name: DensityFamilyName(OutputConditionalGaussian.tiedFamilyName),
        summary: "regression: targets binned at quantiles, bin means with one tied covariance (needs targets)",
        needsLabels: false,
        needsTargets: true,
        fit: { (ctx) throws(LatentWatchError) -> any LatentDensity in
            try outputConditionalFit(ctx, inner: .tiedGaussian)
        },
        decode: { (r) throws(LatentWatchError) -> any LatentDensity in try OutputConditionalGaussian.decode(from: r) }
    )

    private static func outputConditionalFit(
        _ ctx: DensityFitContext,
        inner: DensityFamily
    ) throws(LatentWatchError) -> any LatentDensity {
        guard let targets = ctx.configuration.binnedTargets else {
            throw LatentWatchError(
                .invalidConfiguration,
                "a regression density needs targets",
                remedy: "fit with targets (LatentModelFitter.fit(_:targets:...), or --targets)"
            )
        }
        let bins = try inner.fit(ctx)
        guard bins.classLabels == Array(0..<targets.count) else {
            throw LatentWatchError(
                .fitFailed,
                "the fitting data hold \(bins.classLabels?.count ?? 0) of the \(targets.count) target bins",
                remedy: "fit from the same inputs the targets were binned on"
            )
        }
        ctx.note("targets in \(targets.count) quantile bins")
        return OutputConditionalGaussian(bins: bins, targets: targets)
    }
}
