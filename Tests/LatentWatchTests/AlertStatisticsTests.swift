import Foundation
import LatentWatch
import LatentWatchNumerics
import Testing

/// Measured guarantees of the streaming alarms. Each figure is printed, so the run shows what was measured.
@Suite struct AlertStatisticsTests {
    static func normals(_ n: Int, _ g: inout SeededRandom, shift: Double = 0) -> [Double] {
        (0..<n).map { _ in g.normal() + shift }
    }

    /// Independent uniform p-values: the anytime alarm at delta = 0.01 (threshold 2 / delta, no slack) fires on
    /// at most delta / 2 of streams in theory; 400 streams of 2,000 allow a binomial margin. Every betting option.
    @Test(arguments: ShiftBetting.allCases)
    func anytimeAlarmRespectsVilleOnUniformPValues(betting: ShiftBetting) {
        var g = SeededRandom(seed: 1)
        var alarms = 0
        let streams = 400
        for _ in 0..<streams {
            var det = ShiftDetector(mode: .anytime(delta: 0.01), betting: betting)
            for _ in 0..<2_000 where det.update(g.uniform()) {
                alarms += 1
                break
            }
        }
        let rate = Double(alarms) / Double(streams)
        print(
            "anytime, \(betting) betting, uniform p-values: false-alarm rate \(rate) over \(streams) streams of 2,000 (bound 0.005)"
        )
        #expect(rate <= 0.02)
    }

    /// A fixed calibration set of m = 200 scores (a fresh one per stream): p-values are dependent through it. With
    /// the correction (each method) the anytime alarm stays under delta over 10,000-input streams; without it, it is
    /// measured and printed.
    @Test(arguments: [CalibrationCorrection.Method.conditional, .dkw])
    func calibrationCorrectionKeepsTheAnytimeGuaranteeWithAFixedCalibrationSet(method: CalibrationCorrection.Method) {
        var g = SeededRandom(seed: 2)
        let streams = 100
        var withSlack = 0
        var without = 0
        for _ in 0..<streams {
            let cal = EmpiricalDistribution(scores: Self.normals(200, &g))
            var a = ShiftDetector.calibrated(mode: .anytime(delta: 0.01), calibrationCount: cal.count, method: method)
            var b = ShiftDetector(mode: .anytime(delta: 0.01))
            var firedA = false
            var firedB = false
            for _ in 0..<10_000 {
                let p = cal.pValue(g.normal())
                if a.update(p) { firedA = true }
                if b.update(p) { firedB = true }
                if firedA && firedB { break }
            }
            if firedA { withSlack += 1 }
            if firedB { without += 1 }
        }
        print(
            "anytime, m = 200, \(streams) streams of 10,000: false alarms \(withSlack) with the \(method) correction, \(without) without"
        )
        #expect(Double(withSlack) / Double(streams) <= 0.02)
    }

    /// Shiryaev-Roberts: the mean run length to a false alarm is at least the one asked for, with every betting option.
    @Test(arguments: ShiftBetting.allCases)
    func changeDetectionMeanRunLengthIsAtLeastTheConfiguredOne(betting: ShiftBetting) {
        var g = SeededRandom(seed: 3)
        let target = 200.0
        var lengths: [Int] = []
        for _ in 0..<200 {
            var det = ShiftDetector(mode: .changeDetection(meanRunLength: target), betting: betting)
            var n = 0
            repeat { n += 1 } while !det.update(g.uniform()) && n < 100_000
            lengths.append(n)
        }
        let mean = Double(lengths.reduce(0, +)) / Double(lengths.count)
        print(
            "change detection, \(betting) betting, ARL asked \(target): measured mean run length \(mean) over \(lengths.count) runs"
        )
        #expect(mean >= target)
    }

    /// A real shift (scores moved up by 1.5 standard deviations at a known index) raises the alarm soon after.
    @Test(arguments: [ShiftDetector.Mode.anytime(delta: 0.01), .changeDetection(meanRunLength: 10_000)])
    func shiftIsDetectedWithADelay(mode: ShiftDetector.Mode) {
        var g = SeededRandom(seed: 4)
        let cal = EmpiricalDistribution(scores: Self.normals(2_000, &g))
        var det = ShiftDetector.calibrated(mode: mode, calibrationCount: cal.count)
        let start = 1_000
        var firstAlarm: Int?
        for i in 0..<3_000 {
            let s = g.normal() + (i >= start ? 1.5 : 0)
            if det.update(cal.pValue(s)) && firstAlarm == nil { firstAlarm = i }
        }
        let alarm = try! #require(firstAlarm)
        print("\(mode): shift at \(start), first alarm at \(alarm), delay \(alarm - start)")
        #expect(alarm >= start)
        #expect(alarm - start <= 150)
    }

    @Test func windowThresholdIsTheBinomialQuantile() {
        // Binomial(200, 0.01): P(X >= 9) = 2.13e-4 > 1e-4 >= P(X >= 10) = 4.01e-5 (scipy.stats.binom.sf(8 and 9, 200, 0.01)).
        #expect(WindowRateDetector.binomialThreshold(n: 200, p: 0.01, level: 1e-4) == 10)
        // Binomial(10, 0.5): P(X >= 10) = 1/1024 <= 0.001 < P(X >= 9) = 11/1024.
        #expect(WindowRateDetector.binomialThreshold(n: 10, p: 0.5, level: 0.001) == 10)
    }

    /// The window's calibrated null rate against scipy.stats.beta.ppf (Tests/Reference/make_window_bounds.py):
    /// relative error at most 1e-7 (the log-space tail sum over k terms loses about 1e-8 at m = 10^6, k = 1,000),
    /// up to the largest count a model file can hold (m = 2^32 - 1, k = 42,949,672). Every case also runs with
    /// the sum from the top (lgamma terms) forced, which large calibration sets use.
    @Test func calibratedRateMatchesTheBetaQuantile() throws {
        struct Case: Decodable {
            let threshold: Double
            let m: Int
            let beta: Double
            let bound: Double
        }
        let url = Fixtures.reference.appendingPathComponent("window_rate_bounds.json")
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: url))
        #expect(cases.count >= 10)
        for c in cases {
            for limit in [WindowRateDetector.directSumLimit, 0] {
                let ours = WindowRateDetector.calibratedRate(
                    threshold: c.threshold,
                    calibrationCount: c.m,
                    failureProbability: c.beta,
                    directSumLimit: limit
                )
                #expect(
                    abs(ours - c.bound) <= 1e-7 * max(c.bound, 1e-300),
                    "t \(c.threshold), m \(c.m), direct sum up to \(limit): \(ours) vs \(c.bound)"
                )
            }
        }
    }

    /// The bound is exact, not just valid: over 3,000 calibration sets of m = 300 normal scores, the conditional rate
    /// of p <= 0.02 (computed from the set's order statistic, which the real p-value code must agree with) exceeds
    /// the bound for a share beta = 0.1 of sets, within 4 binomial standard deviations (0.022). The DKW rate
    /// alpha + slack is printed beside it.
    @Test func calibratedRateHoldsWithTheStatedProbability() throws {
        var g = SeededRandom(seed: 11)
        let (m, t, beta, sets) = (300, 0.02, 0.1, 3_000)
        let bound = WindowRateDetector.calibratedRate(threshold: t, calibrationCount: m, failureProbability: beta)
        let dkw = t + ShiftDetector.calibrationSlack(calibrationCount: m, failureProbability: beta)
        let k = Int((t * Double(m + 1)).rounded(.down))  // 6: p <= 0.02 means at most 5 calibration scores >= s
        var over = 0
        var overDKW = 0
        for _ in 0..<sets {
            let scores = Self.normals(m, &g)
            let cal = EmpiricalDistribution(scores: scores)
            let stored = Float(scores.sorted(by: >)[k - 1])  // the k-th largest, as the distribution stores it
            let edge = Double(stored)
            #expect(cal.pValue(Double(stored.nextUp)) <= t && cal.pValue(edge) > t)
            let rate = 0.5 * erfc(edge / 2.0.squareRoot())  // P(S > edge) for a new standard normal score
            if rate > bound { over += 1 }
            if rate > dkw { overDKW += 1 }
        }
        let share = Double(over) / Double(sets)
        print(
            "calibrated window rate, m = \(m), t = \(t): bound \(bound) exceeded on \(share) of sets (beta \(beta)); "
                + "DKW alpha + slack \(dkw) exceeded on \(Double(overDKW) / Double(sets))"
        )
        #expect(abs(share - beta) <= 4 * (beta * (1 - beta) / Double(sets)).squareRoot())
        #expect(bound < dkw)
    }

    /// The conditional correction's grid bounds against scipy.stats.beta.ppf (Tests/Reference/make_conditional_bounds.py):
    /// the same grid ranks, bounds within 1e-7 relative, the DKW slack within 1e-12.
    @Test func conditionalCorrectionMatchesTheBetaQuantiles() throws {
        struct Case: Decodable {
            let m: Int
            let beta: Double
            let ranks: [Int]
            let bounds: [Double]
            let slack: Double
        }
        let url = Fixtures.reference.appendingPathComponent("conditional_bounds.json")
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: url))
        #expect(cases.count >= 7)
        for c in cases {
            let ours = CalibrationCorrection(method: .conditional, calibrationCount: c.m, failureProbability: c.beta)
            #expect(ours.ranks == c.ranks, "m \(c.m)")
            #expect(ours.bounds.count == c.bounds.count)
            for (a, b) in zip(ours.bounds, c.bounds) { #expect(abs(a - b) <= 1e-7 * b, "m \(c.m): \(a) vs \(b)") }
            #expect(abs(ours.slack - c.slack) <= 1e-12)
            // The smallest p-value maps to the first bound; p = 1 stays 1; a rank between two grid ranks takes the
            // next one's bound unless the DKW bound is smaller.
            let n = Double(c.m + 1)
            #expect(ours.corrected(1 / n) == min(ours.bounds[0], 1 / n + ours.slack))
            #expect(ours.corrected(1) == 1)
            if c.ranks.count > 17 {
                let j = c.ranks[16] + 1
                #expect(ours.corrected(Double(j) / n) == min(ours.bounds[17], Double(j) / n + ours.slack))
            }
        }
    }

    /// A NaN score's p-value (0) is never taken below the smallest conformal p-value: 1 / (m + 1) uncorrected, the
    /// first grid bound with the conditional correction. Without a calibration count nothing is floored.
    @Test func nanAndZeroPValuesAreBounded() {
        let raw = CalibrationCorrection.uncorrected(calibrationCount: 99)
        #expect(raw.corrected(0) == 0.01 && raw.corrected(.nan) == 0.01 && raw.corrected(0.5) == 0.5)
        let conditional = CalibrationCorrection(method: .conditional, calibrationCount: 99, failureProbability: 0.005)
        #expect(conditional.corrected(.nan) == conditional.corrected(0.01))
        #expect(conditional.corrected(0) == min(conditional.bounds[0], conditional.slack))
        #expect(CalibrationCorrection.none.corrected(0) == 0)
        // The off switch of a policy keeps the floor.
        let off = AlertPolicy(correctForCalibrationSet: false).calibrationCorrections(calibrationCounts: [99])
        #expect(off.shift[0].corrected(.nan) == 0.01)
    }

    /// The conditional correction holds for every p-value at once with probability at least 1 - beta over the
    /// calibration set: over 2,000 sets of m = 300 normal scores, the share of sets where some rank j has
    /// V_j = P(new score > j-th largest) above corrected(j / (m + 1)) is at most beta = 0.1 (plus 4 binomial standard
    /// deviations). Printed beside it: the same for the DKW method.
    @Test func conditionalCorrectionHoldsForEveryPValueAtOnce() {
        var g = SeededRandom(seed: 12)
        let (m, beta, sets) = (300, 0.1, 2_000)
        var failed: [CalibrationCorrection.Method: Int] = [.conditional: 0, .dkw: 0]
        let corrections = failed.keys.map {
            CalibrationCorrection(method: $0, calibrationCount: m, failureProbability: beta)
        }
        for _ in 0..<sets {
            let descending = Self.normals(m, &g).sorted(by: >)
            for c in corrections {
                for j in 1...m {
                    let v = 0.5 * erfc(descending[j - 1] / 2.0.squareRoot())
                    if v > c.corrected(Double(j) / Double(m + 1)) {
                        failed[c.method]! += 1
                        break
                    }
                }
            }
        }
        let share = Double(failed[.conditional]!) / Double(sets)
        print(
            "conditional correction, m = \(m): some p-value under-corrected on \(share) of sets (beta \(beta)); DKW on "
                + "\(Double(failed[.dkw]!) / Double(sets))"
        )
        #expect(share <= beta + 4 * (beta * (1 - beta) / Double(sets)).squareRoot())
        #expect(Double(failed[.dkw]!) / Double(sets) <= beta + 4 * (beta * (1 - beta) / Double(sets)).squareRoot())
    }

    /// With one layer the layer mixture is exactly ShiftDetector, in both modes and with slack.
    @Test func layerMixtureOfOneLayerIsTheShiftDetector() {
        for mode in [ShiftDetector.Mode.anytime(delta: 0.01), .changeDetection(meanRunLength: 200)] {
            var g = SeededRandom(seed: 21)
            var single = ShiftDetector(mode: mode, pValueSlack: 0.02)
            var mixture = LayerMixtureShiftDetector(mode: mode, pValueSlack: [0.02])
            var alarms = 0
            for i in 0..<5_000 {
                let p = i < 3_000 ? g.uniform() : g.uniform() * 0.3
                let a = single.update(p)
                let b = [p].withUnsafeBufferPointer { mixture.update($0) }
                #expect(a == b && single.logEvidence == mixture.logEvidence, "\(mode) input \(i)")
                if a { alarms += 1 }
            }
            #expect(alarms > 0, "\(mode): the shifted part raised an alarm")
        }
    }

    /// Two strongly dependent layers (correlation 0.8), exactly uniform p-values: the mixture's anytime alarm at
    /// delta = 0.01 stays under delta / 2 in theory (400 streams of 2,000 allow a binomial margin: <= 0.02), and
    /// after a 1 sd shift of both layers it alarms sooner than one martingale on their Bonferroni fusion.
    @Test func layerMixtureKeepsTheBoundAndBeatsBonferroniFusion() {
        var g = SeededRandom(seed: 22)
        func pair(_ shift: Double) -> (Double, Double) {
            let z1 = g.normal()
            let z2 = 0.8 * z1 + 0.6 * g.normal()
            return (0.5 * erfc((z1 + shift) / 2.0.squareRoot()), 0.5 * erfc((z2 + shift) / 2.0.squareRoot()))
        }
        var falseAlarms = 0
        for _ in 0..<400 {
            var d = LayerMixtureShiftDetector(mode: .anytime(delta: 0.01), pValueSlack: [0, 0])
            for _ in 0..<2_000 {
                let (a, b) = pair(0)
                if [a, b].withUnsafeBufferPointer({ d.update($0) }) {
                    falseAlarms += 1
                    break
                }
            }
        }
        var mixtureDelay = 0
        var fusedDelay = 0
        let runs = 50
        for _ in 0..<runs {
            var mixture = LayerMixtureShiftDetector(mode: .anytime(delta: 0.01), pValueSlack: [0, 0])
            var fused = ShiftDetector(mode: .anytime(delta: 0.01))
            var mixtureAt: Int?
            var fusedAt: Int?
            for i in 0..<4_000 where mixtureAt == nil || fusedAt == nil {
                let (a, b) = pair(i >= 500 ? 1 : 0)
                if mixtureAt == nil && [a, b].withUnsafeBufferPointer({ mixture.update($0) }) { mixtureAt = i }
                if fusedAt == nil && fused.update(min(1, 2 * min(a, b))) { fusedAt = i }
            }
            mixtureDelay += (mixtureAt ?? 4_000) - 500
            fusedDelay += (fusedAt ?? 4_000) - 500
        }
        print(
            "layer mixture: \(falseAlarms) of 400 null streams alarmed; mean delay after a 1 sd shift "
                + "\(Double(mixtureDelay) / Double(runs)) against \(Double(fusedDelay) / Double(runs)) on Bonferroni-fused p"
        )
        #expect(Double(falseAlarms) / 400 <= 0.02)
        #expect(mixtureDelay < fusedDelay)
    }

    /// A monitor's corrections for its calibration sets: the conditional correction at (delta / 2) / L per layer
    /// for the shift detector, and alpha plus each layer's exact-bound excess over alpha / L for the window; none
    /// when off.
    @Test func calibrationCorrectionsSplitBetaAcrossLayers() {
        let one = AlertPolicy().calibrationCorrections(calibrationCounts: [7_000])
        #expect(one.shift.map(\.method) == [.conditional])
        #expect(one.shift.map(\.failureProbability) == [0.005])
        #expect(
            one.shift[0].slack
                == ShiftDetector.calibrationSlack(
                    calibrationCount: 7_000,
                    failureProbability: CalibrationCorrection.dkwShare * 0.005
                )
        )
        #expect(
            one.windowNullRate
                == WindowRateDetector.calibratedRate(
                    threshold: 0.01,
                    calibrationCount: 7_000,
                    failureProbability: 0.005
                )
        )
        // The demo's two layers of m = 217: 0.0544655 by scipy (0.01 + 2 (beta.ppf(0.9975, 1, 217) - 0.005)).
        let two = AlertPolicy().calibrationCorrections(calibrationCounts: [217, 217])
        #expect(abs(two.windowNullRate - 0.05446550322333153) < 1e-9)
        #expect(two.shift.count == 2 && two.shift.allSatisfy { $0.failureProbability == 0.0025 })
        let dkw = AlertPolicy().calibrationCorrections(calibrationCounts: [217, 217], method: .dkw)
        #expect(
            dkw.shift[0].slack == ShiftDetector.calibrationSlack(calibrationCount: 217, failureProbability: 0.0025)
        )
        let off = AlertPolicy(correctForCalibrationSet: false).calibrationCorrections(calibrationCounts: [217, 217])
        #expect(off.shift.map(\.method) == [.none, .none] && off.windowNullRate == 0.01)
    }

    /// The window alarm fires once per episode and reports it resolved after the stream returns to normal.
    @Test func windowAlarmFiresOncePerEpisodeAndResolves() {
        var g = SeededRandom(seed: 5)
        let cal = EmpiricalDistribution(scores: Self.normals(5_000, &g))
        var det = WindowRateDetector(window: 200, alpha: 0.01, windowLevel: 1e-4)
        var events: [(Int, WindowRateDetector.Event)] = []
        for i in 0..<6_000 {
            let shifted = i >= 2_000 && i < 3_000
            let e = det.update(cal.pValue(g.normal() + (shifted ? 2.5 : 0)))
            if e != .none { events.append((i, e)) }
        }
        print("window events: \(events.map { "\($0.0):\($0.1)" }.joined(separator: ", "))")
        #expect(events.count == 2)
        if events.count == 2 {
            #expect(events[0].0 >= 2_000 && events[0].0 < 2_100)
            #expect(events[1].1 == .resolved && events[1].0 > 3_000)
        }
    }
}
