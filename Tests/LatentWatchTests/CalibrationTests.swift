import Foundation
import LatentWatchNumerics
import Testing

@testable import LatentWatch

@Suite struct CalibrationTests {
    @Test func exactPValuesFollowTheConformalFormula() {
        let cal: [Double] = [1, 2, 2, 3, 5, 8, 13, 21, 34, 55]
        let dist = EmpiricalDistribution(scores: cal)
        for s in [-1.0, 1, 2, 2.5, 13, 55, 56] {
            let expected = (1 + Double(cal.filter { $0 >= s }.count)) / 11
            #expect(abs(dist.pValue(s) - expected) < 1e-12, "s = \(s)")
        }
        #expect(dist.pValue(.nan) == 0)
        // Smoothed p-values stay between the strict and the inclusive counts.
        let sm = dist.smoothedPValue(2, u: 0.5)
        #expect(sm > Double(cal.filter { $0 > 2 }.count) / 11 && sm <= dist.pValue(2))
    }

    /// A stored distribution restores exactly what `init(scores:)` writes, and refuses parts a writer never
    /// produces: a count that disagrees with the stored ranks, a missing score below the summarising limit, an
    /// empty store with a count, a count too large for the 32-bit ranks.
    @Test func restoringRefusesInconsistentCounts() {
        for m in [0, 1, 10, EmpiricalDistribution.exactLimit, EmpiricalDistribution.exactLimit + 3] {
            let d = EmpiricalDistribution(scores: (0..<m).map { Double($0 % 977) })
            #expect(EmpiricalDistribution(count: d.count, values: d.values, ranks: d.ranks) == d, "m \(m)")
        }
        let d = EmpiricalDistribution(scores: [1, 2, 3, 4])
        #expect(EmpiricalDistribution(count: 5, values: d.values, ranks: d.ranks) == nil, "top rank 4, count 5")
        #expect(EmpiricalDistribution(count: 0, values: [], ranks: []) != nil)
        #expect(EmpiricalDistribution(count: 3, values: [], ranks: []) == nil)
        #expect(EmpiricalDistribution(count: Int.max, values: [1], ranks: [1]) == nil)
        let big = Int(UInt32.max) + 1
        #expect(EmpiricalDistribution(count: big, values: [1], ranks: [UInt32.max]) == nil)
        // Summarised stores skip ranks, but only above the exact limit.
        #expect(EmpiricalDistribution(count: 3, values: [1, 3], ranks: [1, 3]) == nil)
        #expect(
            EmpiricalDistribution(count: EmpiricalDistribution.exactLimit + 1, values: [1, 3], ranks: [1, 16_385])
                != nil
        )
    }

    @Test func aurocCountsPairsWithTiesHalf() {
        // 3 x 3 pairs: positive 4 beats all 3; 2 beats 1 and ties 2 (0.5); 0 beats none -> 4.5 / 9.
        #expect(ROC.auroc(negatives: [1, 2, 3], positives: [4, 2, 0]) == 4.5 / 9)
        #expect(ROC.auroc(negatives: [0, 0], positives: [1, 1]) == 1)
        #expect(ROC.auroc(negatives: [], positives: [1]).isNaN)
    }

    @Test(arguments: [0.01, 0.05, 0.1, 0.3])
    func thresholdFlagsExactlyWhenPValueIsAtMostAlpha(alpha: Double) {
        var g = SeededRandom(seed: 9)
        let cal = (0..<999).map { _ in g.normal() }
        let dist = EmpiricalDistribution(scores: cal)
        let t = dist.threshold(falsePositiveRate: alpha)
        for _ in 0..<2000 {
            let s = g.normal() * 2
            #expect((s > t) == (dist.pValue(s) <= alpha) || abs(s - t) < 1e-6, "s \(s) t \(t) p \(dist.pValue(s))")
        }
        #expect(dist.threshold(falsePositiveRate: 0.0001) == .infinity, "alpha below 1/(m+1) cannot fire")
    }

    /// Above 16,384 scores the tail is exact and the body summarised: p-values agree with the exact ones to
    /// within the body spacing, and exactly below 8,192 / m.
    @Test func summarisedDistributionKeepsTailResolution() {
        var g = SeededRandom(seed: 5)
        let m = 100_000
        let cal = (0..<m).map { _ in g.normal() }
        let dist = EmpiricalDistribution(scores: cal)
        #expect(dist.values.count <= EmpiricalDistribution.tailCount + EmpiricalDistribution.bodyCount)
        let sorted = cal.sorted()
        for q in [0.5, 0.9, 0.95, 0.99, 0.999, 0.9999] {
            let s = sorted[Int(q * Double(m))] + 1e-9
            let exact = (1 + Double(cal.filter { $0 >= s }.count)) / Double(m + 1)
            let tol = 1 - q < 0.08 ? 1e-4 : 2e-3
            #expect(abs(dist.pValue(s) - exact) <= tol, "q \(q): \(dist.pValue(s)) vs \(exact)")
        }
    }

    /// On real held-out in-distribution activations the realised alert rate tracks alpha.
    @Test func realisedAlertRateOnRealHeldOutData() throws {
        let train = try Fixtures.activations("train", "h2")
        let cal = try Fixtures.activations("calibration", "h2")
        let model = try LatentModelFitter.fit(
            InMemoryActivations(values: train.values, shape: [64], labels: try Fixtures.labels("train")),
            calibration: InMemoryActivations(values: cal.values, shape: [64]),
            configuration: FitConfiguration(family: .gda)
        )
        let test = try ModelFileTests.allScores(model, "test", "h2")
        let alpha = 0.1
        let rate =
            Double(test.filter { model.calibration.pValue(.surprise, $0.surprise)! <= alpha }.count)
            / Double(test.count)
        // 217 test inputs: binomial standard deviation about 0.02 at alpha = 0.1; allow 3 sigma.
        #expect(abs(rate - alpha) <= 0.06, "realised rate \(rate) at alpha \(alpha)")
    }

    @Test func badInputIsAnErrorAndDoesNotPoisonLaterScores() throws {
        let model = try ModelFileTests.digitsModel(.gda, layer: "h2")
        let ws = model.makeWorkspace()
        let x = try Fixtures.activations("test", "h2")
        let row = Array(x.values[0..<64])
        let before = try row.withUnsafeBufferPointer { try model.score($0, workspace: ws) }
        var nan = row
        nan[3] = .nan
        #expect(throws: LatentWatchError.self) {
            try nan.withUnsafeBufferPointer { try model.score($0, workspace: ws) }
        }
        #expect(throws: LatentWatchError.self) {
            try Array(row.prefix(63)).withUnsafeBufferPointer { try model.score($0, workspace: ws) }
        }
        let after = try row.withUnsafeBufferPointer { try model.score($0, workspace: ws) }
        #expect(before == after)
        // Batch: the bad row fails alone; batch results equal single-sample results.
        var batch = Array(x.values[0..<(40 * 64)])
        batch[5 * 64] = .infinity
        let results = batch.withUnsafeBufferPointer { model.scoreBatch($0, count: 40, workspace: ws) }
        for (i, r) in results.enumerated() {
            switch r {
            case .failure: #expect(i == 5)
            case .success(let s):
                let single = try Array(batch[(i * 64)..<((i + 1) * 64)]).withUnsafeBufferPointer {
                    try model.score($0, workspace: ws)
                }
                #expect(abs(s.logDensity - single.logDensity) <= 1e-4 * max(1, abs(single.logDensity)))
            }
        }
    }

    @Test func mergedStatisticsGiveTheSameFitAsOnePass() throws {
        // Batch size changes how moments are merged; the fit must not change beyond rounding.
        let train = try Fixtures.activations("train", "h1")
        let labels = try Fixtures.labels("train")
        func fit(_ batch: Int) throws -> LatentModel {
            try LatentModelFitter.fit(
                InMemoryActivations(values: train.values, shape: [128], labels: labels, batchSize: batch),
                configuration: FitConfiguration(family: .gda, calibrationFraction: 0)
            )
        }
        let a = try fit(649)
        let b = try fit(17)
        let sa = try ModelFileTests.allScores(a, "test", "h1")
        let sb = try ModelFileTests.allScores(b, "test", "h1")
        for (x, y) in zip(sa, sb) { #expect(abs(x.logDensity - y.logDensity) <= 1e-4 * max(1, abs(x.logDensity))) }
        #expect(a.density.regularization.map(\.shrinkage) == b.density.regularization.map(\.shrinkage))
    }

    @Test func poolingShapesArePrepared() throws {
        // [C, H, W] global average pooling and [T, C] mean pooling against direct formulas.
        let prep = Preparation(
            inputShape: [2, 2, 3],
            options: PreparationOptions(pooling: .globalAverage, l2Normalize: false)
        )
        var out = [Float](repeating: 0, count: 2)
        let x: [Float] = [1, 2, 3, 4, 5, 6, 10, 10, 10, 10, 10, 16]
        x.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { prep.pool(xb.baseAddress!, into: $0.baseAddress!) }
        }
        #expect(out == [3.5, 11])
        let tok = Preparation(inputShape: [3, 2], options: PreparationOptions(pooling: .meanTokens, l2Normalize: true))
        x.withUnsafeBufferPointer { xb in
            out.withUnsafeMutableBufferPointer { tok.pool(xb.baseAddress!, into: $0.baseAddress!) }
        }
        let m: [Float] = [3, 4]
        let norm: Float = 5
        #expect(abs(out[0] - m[0] / norm) < 1e-6 && abs(out[1] - m[1] / norm) < 1e-6)
        #expect(Preparation.validate(shape: [5], options: PreparationOptions(pooling: .meanTokens)) != nil)
    }
}

@Suite struct NumpyArchiveTests {
    @Test func readsTheBundledWeightsAndRefusesBadArchives() throws {
        let npz = try NumpyArchive(contentsOf: Fixtures.data.appendingPathComponent("mlp_weights.npz").path)
        #expect(Set(npz.arrays.keys) == ["W1", "b1", "W2", "b2", "W3", "b3"])
        #expect(npz.arrays["W1"]?.shape == [64, 128] && npz.arrays["b3"]?.shape == [6])
        let bytes = Array(try Data(contentsOf: Fixtures.data.appendingPathComponent("mlp_weights.npz")))
        #expect(throws: LatentWatchError.self) { try NumpyArchive(bytes: Array(bytes.prefix(bytes.count / 2))) }
        #expect(throws: LatentWatchError.self) { try NumpyArchive(bytes: [0x50, 0x4B, 0x03, 0x04]) }
        #expect(throws: LatentWatchError.self) { try NumpyArchive(bytes: []) }
    }
}
