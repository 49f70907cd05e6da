import Foundation
import LatentWatch
import Testing

/// The regression scenarios' reduced evaluation (Docs/Evaluation.md, "Regression models") on the committed subsets
/// in Tests/Fixtures/eval-ci/regression-* (float16 activations of the Fashion-MNIST rotation CNN's `fc` and `gap`
/// layers and of the diamonds MLP's `h2`, with targets; cut and recorded by
/// Tests/Evaluation/make_regression_ci_subset.py through the Python package): the Swift SDK refits each layer with
/// the default configuration and with `regression-tied` without L2, and fails when a surprise AUROC falls more
/// than 0.01 below the recorded value, the 90 % interval's coverage of the test targets moves by more than 0.02, or,
/// with the disagreement calibrated on the calibration rows' host predictions, the Spearman correlation of the
/// host-bins distance with the host's error drops by more than 0.02 or the share of test rows flagged at 0.05
/// moves by more than 0.02.
@Suite struct RegressionScenarioGuardTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/eval-ci")

    static func array(_ dir: String, _ name: String) throws -> NumpyArray {
        try NumpyArray(contentsOf: root.appendingPathComponent("\(dir)/\(name).npy").path)
    }

    @Test(arguments: [
        ("regression-fmnist", "fc"), ("regression-fmnist", "gap"), ("regression-diamonds", "h2"),
    ])
    func configurationsKeepTheirRecordedQuality(scenario: String, layer: String) throws {
        let recorded =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: Self.root.appendingPathComponent("\(scenario)/recorded.json"))
            ) as! [String: Any]
        let entries = (recorded["layers"] as! [String: Any])[layer] as! [String: Any]
        let configurations: [(String, DensityFamilyName, Bool)] = [
            ("default", .regression, true), ("regression-tied:no-l2", .regressionTied, false),
        ]
        for (name, family, l2) in configurations {
            let entry = entries[name] as! [String: Any]
            let train = try Self.array(scenario, "train_\(layer)")
            let cal = try Self.array(scenario, "calibration_\(layer)")
            let dim = train.shape[1]
            let model = try LatentModelFitter.fit(
                InMemoryActivations(values: train.floats(), shape: [dim]),
                targets: try Self.array(scenario, "train_targets").doubles(),
                calibration: InMemoryActivations(values: cal.floats(), shape: [dim]),
                calibrationTargets: try Self.array(scenario, "calibration_targets").doubles(),
                configuration: FitConfiguration(
                    family: family,
                    preparation: PreparationOptions(l2Normalize: l2),
                    layerName: layer
                )
            )
            let ws = model.makeWorkspace()
            func scores(_ split: String) throws -> [LatentScores] {
                let x = try Self.array(scenario, "\(split)_\(layer)")
                return try x.floats().withUnsafeBufferPointer {
                    model.scoreBatch($0, count: x.shape[0], workspace: ws)
                }.map { try $0.get() }
            }
            let test = try scores("test")
            let aurocs = entry["auroc"] as! [String: Double]
            for (set, value) in aurocs.sorted(by: { $0.key < $1.key }) {
                let ood = try scores(set)
                let now = ROC.auroc(negatives: test.map(\.surprise), positives: ood.map(\.surprise))
                print("eval-ci \(scenario) \(layer) \(name) \(set): AUROC \(now) (recorded \(value))")
                #expect(now >= value - 0.01, "\(scenario) \(layer) \(name) \(set): \(now) fell below \(value) - 0.01")
            }
            let y = try Self.array(scenario, "test_targets").doubles()
            var covered = 0
            for (s, t) in zip(test, y) where model.predictionInterval(s, level: 0.9)?.contains(t) == true {
                covered += 1
            }
            let coverage = Double(covered) / Double(y.count)
            let was = entry["coverage90"] as! Double
            print("eval-ci \(scenario) \(layer) \(name): coverage \(coverage) (recorded \(was))")
            #expect(abs(coverage - was) <= 0.02, "\(scenario) \(layer) \(name): coverage \(coverage), recorded \(was)")
            // The host's own predictions: the disagreement calibrated on the calibration rows'.
            let host = try Self.array(scenario, "test_predictions").doubles()
            let calibrated = try LatentModelFitter.calibrateDisagreement(
                model,
                calibration: InMemoryActivations(values: cal.floats(), shape: [dim]),
                hostPredictions: try Self.array(scenario, "calibration_predictions").doubles()
            )
            let distance = zip(test, host).map { abs($1 - $0.prediction!) }
            let rho = Self.spearman(distance, zip(host, y).map { abs($0 - $1) })
            let rate =
                Double(distance.filter { (calibrated.pValue(.disagreement, $0) ?? 1) <= 0.05 }.count)
                / Double(distance.count)
            let wasRho = entry["disagreement_spearman"] as! Double
            let wasRate = entry["disagreement_rate05"] as! Double
            print(
                "eval-ci \(scenario) \(layer) \(name): disagreement Spearman \(rho) (recorded \(wasRho)), "
                    + "share at 0.05 \(rate) (recorded \(wasRate))"
            )
            #expect(
                rho >= wasRho - 0.02,
                "\(scenario) \(layer) \(name): disagreement Spearman \(rho) < \(wasRho) - 0.02"
            )
            #expect(abs(rate - wasRate) <= 0.02, "\(scenario) \(layer) \(name): share \(rate), recorded \(wasRate)")
        }
    }

    /// Spearman's rank correlation (average ranks for ties).
    static func spearman(_ a: [Double], _ b: [Double]) -> Double {
        func ranks(_ v: [Double]) -> [Double] {
            let order = v.indices.sorted { v[$0] < v[$1] }
            var r = [Double](repeating: 0, count: v.count)
            var i = 0
            while i < order.count {
                var j = i
                while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
                for k in i...j { r[order[k]] = Double(i + j) / 2 + 1 }
                i = j + 1
            }
            return r
        }
        let (x, y) = (ranks(a), ranks(b))
        let n = Double(x.count)
        let (mx, my) = (x.reduce(0, +) / n, y.reduce(0, +) / n)
        var (sxy, sxx, syy) = (0.0, 0.0, 0.0)
        for (u, v) in zip(x, y) {
            sxy += (u - mx) * (v - my)
            sxx += (u - mx) * (u - mx)
            syy += (v - my) * (v - my)
        }
        return sxy / (sxx * syy).squareRoot()
    }
}
