import Foundation
import LatentWatch
import LatentWatchNumerics
import Testing

/// The shift detector's reference of calibration set and stream (``ConformalUrn``): its p-values, and the anytime
/// guarantee of the martingales that bet on them. Each figure is printed.
@Suite struct ConformalUrnTests {
    /// The urn's p-value is the smoothed rank of the input among the calibration scores and the earlier stream
    /// scores, counted by calibration cell: checked against a direct count over the stored scores.
    @Test func pValueIsTheRankAmongCalibrationAndEarlierInputs() {
        var g = SeededRandom(seed: 11)
        let calibration = (0..<50).map { _ in g.normal() }
        let cal = EmpiricalDistribution(scores: calibration)
        var urn = ConformalUrn(calibrationCount: cal.count, seed: 3)
        var earlier: [Double] = []
        for i in 0..<400 {
            // A stream that drifts upwards, so later inputs land in the extreme cells where earlier ones are.
            let s = g.normal() + Double(i) / 100
            let p = urn.pValue(conformal: cal.pValue(s))
            // The cell of a score: 1 + #{calibration >= score}.
            func cell(_ x: Double) -> Int { 1 + calibration.filter { $0 >= x }.count }
            let j = cell(s)
            let more = (j - 1) + earlier.filter { cell($0) < j }.count
            let same = 1 + earlier.filter { cell($0) == j }.count
            let total = Double(calibration.count + 1 + earlier.count)
            #expect(p > Double(more) / total)
            #expect(p <= Double(more + same) / total)
            earlier.append(s)
        }
        #expect(urn.count == 400)
    }

    /// Under exchangeability (a fresh calibration set of m = 20 and a stream from the same distribution per trial),
    /// the p-values at every position are uniform and successive ones uncorrelated: the mean, the share below
    /// 0.05 and the lag-one correlation over 4,000 trials, at positions 1, 10 and 200.
    @Test func pValuesAreUniformAndUncorrelatedUnderExchangeability() {
        var g = SeededRandom(seed: 12)
        let trials = 4_000
        let positions = [0, 9, 199]
        var values = [[Double]](repeating: [], count: positions.count)
        var previous = [[Double]](repeating: [], count: positions.count)
        for t in 0..<trials {
            let cal = EmpiricalDistribution(scores: (0..<20).map { _ in g.normal() })
            var urn = ConformalUrn(calibrationCount: cal.count, seed: UInt64(t))
            var last = 0.5
            for n in 0...positions.last! {
                let p = urn.pValue(conformal: cal.pValue(g.normal()))
                if let k = positions.firstIndex(of: n) {
                    values[k].append(p)
                    previous[k].append(last)
                }
                last = p
            }
        }
        for (k, position) in positions.enumerated() {
            let v = values[k]
            let mean = v.reduce(0, +) / Double(trials)
            let small = Double(v.filter { $0 <= 0.05 }.count) / Double(trials)
            let pm = previous[k].reduce(0, +) / Double(trials)
            var cov = 0.0
            for (a, b) in zip(v, previous[k]) { cov += (a - mean) * (b - pm) }
            let correlation = cov / Double(trials) * 12
            print(
                "urn, m = 20, input \(position + 1): mean p \(mean), share <= 0.05 \(small), lag-one correlation \(correlation) over \(trials) trials"
            )
            // Standard errors: mean 0.0046, share 0.0034, correlation 0.016; the bounds are about 4 of them.
            #expect(abs(mean - 0.5) < 0.02)
            #expect(abs(small - 0.05) < 0.014)
            if position > 0 { #expect(abs(correlation) < 0.065) }
        }
    }

    /// The anytime guarantee against calibration set and stream: a fresh calibration set of m = 200 per stream,
    /// 200 streams of 10,000 inputs, delta = 0.01, one layer (threshold 1 / delta) and two dependent layers
    /// (threshold 2 / delta). The bound is delta; the test allows a binomial margin.
    @Test func anytimeGuaranteeHoldsWithAFreshCalibrationSetPerStream() {
        var g = SeededRandom(seed: 13)
        let streams = 200
        var one = 0
        var two = 0
        for s in 0..<streams {
            let a = EmpiricalDistribution(scores: (0..<200).map { _ in g.normal() })
            // The second layer's score shares half its variance with the first's.
            var pairs: [(Double, Double)] = []
            for _ in 0..<200 {
                let x = g.normal()
                pairs.append((x, 0.7 * x + 0.7 * g.normal()))
            }
            let b = EmpiricalDistribution(scores: pairs.map(\.1))
            let c = EmpiricalDistribution(scores: pairs.map(\.0))
            var single = ShiftDetector.exchangeable(
                mode: .anytime(delta: 0.01),
                calibrationCount: a.count,
                seed: UInt64(s)
            )
            var mixture = LayerMixtureShiftDetector(mode: .anytime(delta: 0.01), exchangeableWith: [c.count, b.count])
            #expect(abs(single.logThreshold - log(100)) < 1e-12)
            #expect(abs(mixture.logThreshold - log(200)) < 1e-12)
            var firedOne = false
            var firedTwo = false
            for _ in 0..<10_000 where !(firedOne && firedTwo) {
                if single.update(a.pValue(g.normal())) { firedOne = true }
                let x = g.normal()
                let y = 0.7 * x + 0.7 * g.normal()
                let p = [c.pValue(x), b.pValue(y)]
                if p.withUnsafeBufferPointer({ mixture.update($0) }) { firedTwo = true }
            }
            if firedOne { one += 1 }
            if firedTwo { two += 1 }
        }
        print(
            "anytime against calibration set and stream, m = 200, \(streams) streams of 10,000: false alarms \(one) (one layer), \(two) (two layers); bound delta = 0.01"
        )
        #expect(Double(one) / Double(streams) <= 0.03)
        #expect(Double(two) / Double(streams) <= 0.03)
    }

    /// On a clear shift the detector against calibration set and stream alarms no later than the one against the
    /// calibration set alone with its correction (the same stream, m = 2,000, scores up by 3 sd from input 1,000).
    @Test func detectsAShiftSoonerThanTheCorrectedCalibrationSet() throws {
        var g = SeededRandom(seed: 14)
        let cal = EmpiricalDistribution(scores: (0..<2_000).map { _ in g.normal() })
        var urn = ShiftDetector.exchangeable(mode: .anytime(delta: 0.01), calibrationCount: cal.count)
        var fixed = ShiftDetector.calibrated(mode: .anytime(delta: 0.01), calibrationCount: cal.count)
        var urnAlarm: Int?
        var fixedAlarm: Int?
        for i in 0..<2_000 {
            let p = cal.pValue(g.normal() + (i >= 1_000 ? 3 : 0))
            if urn.update(p) && urnAlarm == nil { urnAlarm = i }
            if fixed.update(p) && fixedAlarm == nil { fixedAlarm = i }
        }
        let u = try #require(urnAlarm)
        let f = try #require(fixedAlarm)
        print(
            "shift of 3 sd at input 1,000: alarm at \(u) against calibration set and stream, \(f) against the set alone"
        )
        #expect(u >= 1_000)
        #expect(u <= f)
    }

    /// The policy's threshold and detector: log(L / delta) against calibration set and stream, log(2 / delta)
    /// against the calibration set alone and in any change mode's reference; change mode's threshold is log(ARL).
    @Test func policyThresholdsFollowTheReferenceAndTheLayers() throws {
        let stream = AlertPolicy(shift: .anytime(delta: 0.01))
        #expect(abs(try #require(stream.shiftLogThreshold(layers: 1)) - log(100)) < 1e-12)
        #expect(abs(try #require(stream.shiftLogThreshold(layers: 3)) - log(300)) < 1e-12)
        let fixed = AlertPolicy(shift: .anytime(delta: 0.01), shiftReference: .calibrationSet)
        #expect(abs(try #require(fixed.shiftLogThreshold(layers: 3)) - log(200)) < 1e-12)
        let change = AlertPolicy(shift: .changeDetection(meanRunLength: 500))
        #expect(abs(try #require(change.shiftLogThreshold(layers: 2)) - log(500)) < 1e-12)
        #expect(AlertPolicy(shift: nil).shiftLogThreshold(layers: 1) == nil)
        let counts = [100, 200]
        let corrections = stream.calibrationCorrections(calibrationCounts: counts).shift
        #expect(stream.shiftDetector(calibrationCounts: counts, corrections: corrections)?.urns.count == 2)
        #expect(fixed.shiftDetector(calibrationCounts: counts, corrections: corrections)?.urns.isEmpty == true)
        #expect(change.shiftDetector(calibrationCounts: counts, corrections: corrections)?.urns.isEmpty == true)
    }

    /// A NaN p-value (from a NaN score) lands in the most extreme cell and gives a positive p-value.
    @Test func nanIsTheMostExtremeCell() {
        var urn = ConformalUrn(calibrationCount: 9)
        #expect(urn.cell(ofConformal: .nan) == 1)
        #expect(urn.cell(ofConformal: 0) == 1)
        #expect(urn.cell(ofConformal: 1) == 10)
        #expect(urn.cell(ofConformal: 0.35) == 4)
        let p = urn.pValue(conformal: .nan)
        #expect(p > 0 && p <= 0.1)
        #expect(urn.count == 1)
    }
}
