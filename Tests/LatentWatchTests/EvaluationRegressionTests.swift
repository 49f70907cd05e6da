import Foundation
import LatentWatch
import Testing

/// The reduced evaluation (Docs/Evaluation.md) on the committed real-activation subsets in
/// Tests/Fixtures/eval-ci (Fashion-MNIST CNN fc and conv3_gap; MiniLM emb_l6; float16):
/// - the default configuration (class Gaussians after L2 normalisation, held-out shrinkage) must not lose
///   more than 0.01 AUROC against the value `latentwatch-eval` recorded (recorded_*.json), per layer and OOD set;
/// - the tied-covariance Mahalanobis score must match the independent numpy reference (reference_*.json, made
///   by Tests/Evaluation/reference_eval.py on the same files) within 0.005 mean AUROC.
@Suite struct EvaluationRegressionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/eval-ci")

    struct Scored {
        var meanAUROC: Double
        var auroc: [String: Double]
    }

    static func evaluate(
        _ scenario: String,
        layer: String,
        family: DensityFamilyName,
        score: ScoreKind?,
        neighbours: NeighbourOptions? = nil
    ) throws
        -> Scored
    {
        let dir = root.appendingPathComponent(scenario).path
        let labels = try TensorFile(path: "\(dir)/labels_train.npy").ints()
        let model = try LatentModelFitter.fit(
            FileActivations(path: "\(dir)/\(layer)_train.npy", labels: labels),
            calibration: FileActivations(path: "\(dir)/\(layer)_cal.npy"),
            configuration: {
                var c = FitConfiguration(
                    family: family,
                    preparation: PreparationOptions(l2Normalize: true),
                    layerName: layer
                )
                c.neighbours = neighbours
                return c
            }()
        )
        let ws = model.makeWorkspace()
        func scores(_ split: String) throws -> [Double] {
            let f = try TensorFile(path: "\(dir)/\(layer)_\(split).npy")
            let t = try f.tensor(nil)
            let x = try f.floats(t.name)
            return x.withUnsafeBufferPointer { model.scoreBatch($0, count: t.rows, workspace: ws) }.map {
                guard let s = try? $0.get() else { return .infinity }
                // nil: what the monitor alerts on (the combined statistic with an index), as it ranks.
                return (score.map { s.value($0) } ?? model.epistemicRankingScore(s)) ?? .infinity
            }
        }
        let test = try scores("test")
        let sets = try FileManager.default.contentsOfDirectory(atPath: dir)
            .filter { $0.hasPrefix("\(layer)_ood_") }.map { String($0.dropFirst("\(layer)_ood_".count).dropLast(4)) }
        var auroc: [String: Double] = [:]
        for s in sets { auroc[s] = ROC.auroc(negatives: test, positives: try scores("ood_\(s)")) }
        return Scored(meanAUROC: auroc.values.reduce(0, +) / Double(auroc.count), auroc: auroc)
    }

    static func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent(name))) as! [String: Any]
    }

    @Test(arguments: [("image", "fc"), ("image", "conv3_gap"), ("text", "emb_l6")])
    func defaultKeepsItsRecordedAUROC(scenario: String, layer: String) throws {
        let now = try Self.evaluate(scenario, layer: layer, family: .gda, score: .surprise)
        let recorded = try Self.json("recorded_\(scenario).json")
        let entry = ((recorded["layers"] as! [String: Any])[layer] as! [String: Any])["lw_gda:l2"] as! [String: Any]
        let mean = entry["mean_auroc"] as! Double
        let perSet = entry["auroc"] as! [String: Double]
        print("eval-ci \(scenario) \(layer) default mean AUROC \(now.meanAUROC) (recorded \(mean))")
        #expect(now.meanAUROC >= mean - 0.01, "mean AUROC \(now.meanAUROC) fell more than 0.01 below \(mean)")
        #expect(Set(now.auroc.keys) == Set(perSet.keys))
        for (s, v) in perSet {
            #expect((now.auroc[s] ?? 0) >= v - 0.01, "\(s): \(now.auroc[s] ?? .nan) fell more than 0.01 below \(v)")
        }
    }

    /// The neighbour index (required here: these subsets calibrate on 350 and 240 inputs, fewer than the 1,000 the
    /// default asks for), ranked by the combined statistic the monitor alerts on, must not lose more than 0.01 mean
    /// AUROC against the values this test printed when the index became the default (Zen 3, AVX2 kernels). On these
    /// small subsets the index gains on `conv3_gap` (0.9492 against 0.9442 without) and loses on `fc` (0.9333 against
    /// 0.9342) and on text (0.8985 against 0.9064), where on the full data it gains on all three (Docs/Evaluation.md).
    @Test(arguments: [("image", "fc", 0.93334), ("image", "conv3_gap", 0.94924), ("text", "emb_l6", 0.89851)])
    func neighbourIndexKeepsItsRecordedAUROC(scenario: String, layer: String, recorded: Double) throws {
        let plain = try Self.evaluate(scenario, layer: layer, family: .gda, score: .surprise)
        let indexed = try Self.evaluate(
            scenario,
            layer: layer,
            family: .gda,
            score: nil,
            neighbours: NeighbourOptions(required: true)
        )
        print(
            "eval-ci \(scenario) \(layer) mean AUROC with the neighbour index \(indexed.meanAUROC) (recorded \(recorded)), without \(plain.meanAUROC)"
        )
        #expect(
            indexed.meanAUROC >= recorded - 0.01,
            "mean AUROC \(indexed.meanAUROC) fell more than 0.01 below \(recorded)"
        )
    }

    @Test(arguments: [("image", "fc"), ("image", "conv3_gap"), ("text", "emb_l6")])
    func tiedMahalanobisMatchesTheNumpyReference(scenario: String, layer: String) throws {
        let ours = try Self.evaluate(scenario, layer: layer, family: .tied, score: .mahalanobis)
        let reference = try Self.json("reference_\(scenario).json")
        let entry =
            ((reference["layers"] as! [String: Any])[layer] as! [String: Any])["tied_mahalanobis:l2"] as! [String: Any]
        let theirs = entry["mean_auroc"] as! Double
        print("eval-ci \(scenario) \(layer) tied Mahalanobis (L2) mean AUROC \(ours.meanAUROC), numpy \(theirs)")
        #expect(abs(ours.meanAUROC - theirs) <= 0.005)
    }
}

/// The calibrated class posterior on the same subsets (Docs/Evaluation.md, "The aleatoric score"): fitted with
/// the calibration labels, its expected calibration error on the test inputs stays at most 0.05 (0.03 is the
/// target on the full sets; these subsets have a few hundred test inputs), and its entropy ranks the classifier's
/// misclassifications within 0.03 AUROC of Bayes' posterior's. On the full sets it ranks them better on every
/// layer; on these subsets it does on the image layers (+0.05, +0.07) and not on the text one (0.025 below, with
/// 150 training inputs per class).
@Suite struct PosteriorRegressionTests {
    @Test(arguments: [("image", "fc"), ("image", "conv3_gap"), ("text", "emb_l6")])
    func calibratedPosteriorStaysCalibrated(scenario: String, layer: String) throws {
        let dir = EvaluationRegressionTests.root.appendingPathComponent(scenario).path
        func ints(_ name: String) throws -> [Int] { try TensorFile(path: "\(dir)/\(name).npy").ints() }
        let trainLabels = try ints("labels_train")
        let testLabels = try ints("labels_test")
        func fit(_ calibrate: Bool) throws -> LatentModel {
            var cfg = FitConfiguration(preparation: PreparationOptions(l2Normalize: true), layerName: layer)
            cfg.calibratePosterior = calibrate
            return try LatentModelFitter.fit(
                FileActivations(path: "\(dir)/\(layer)_train.npy", labels: trainLabels),
                calibration: FileActivations(path: "\(dir)/\(layer)_cal.npy", labels: try ints("labels_cal")),
                configuration: cfg
            )
        }
        let logits = try TensorFile(path: "\(dir)/logits_test.npy")
        let lt = try logits.tensor(nil)
        let lv = try logits.floats(lt.name)
        let k = lv.count / lt.rows
        let classes = Array(Set(trainLabels)).sorted()
        let misclassified = (0..<lt.rows).map { r -> Bool in
            let row = lv[(r * k)..<((r + 1) * k)]
            return classes[row.firstIndex(of: row.max()!)! - r * k] != testLabels[r]
        }
        let f = try TensorFile(path: "\(dir)/\(layer)_test.npy")
        let t = try f.tensor(nil)
        let x = try f.floats(t.name)
        func measure(_ m: LatentModel) throws -> (ece: Double, auroc: Double) {
            let ws = m.makeWorkspace()
            let s = try x.withUnsafeBufferPointer { m.scoreBatch($0, count: t.rows, workspace: ws) }.map {
                try $0.get()
            }
            var bins = [(hits: Double, confidence: Double)](repeating: (0, 0), count: 15)
            for (i, v) in s.enumerated() {
                let b = min(14, Int(v.maxPosterior * 15))
                bins[b].hits += v.predictedLabel == testLabels[i] ? 1 : 0
                bins[b].confidence += v.maxPosterior
            }
            let ece = bins.reduce(0.0) { $0 + abs($1.hits - $1.confidence) } / Double(s.count)
            let h = s.map(\.entropy)
            let auroc = ROC.auroc(
                negatives: zip(h, misclassified).filter { !$0.1 }.map(\.0),
                positives: zip(h, misclassified).filter { $0.1 }.map(\.0)
            )
            return (ece, auroc)
        }
        let calibrated = try measure(try fit(true))
        let bayes = try measure(try fit(false))
        print(
            "eval-ci \(scenario) \(layer) posterior ECE \(calibrated.ece) (Bayes \(bayes.ece)), misclassification AUROC \(calibrated.auroc) (Bayes \(bayes.auroc))"
        )
        #expect(calibrated.ece <= 0.05, "ECE \(calibrated.ece)")
        #expect(calibrated.auroc >= bayes.auroc - 0.03, "AUROC \(calibrated.auroc) vs Bayes \(bayes.auroc)")
    }
}

/// The jointly calibrated fusion of the image subset's two layers (Docs/Evaluation.md, finding 3): the default fitted
/// on `fc` and `conv3_gap`, calibrated jointly on the 350 calibration inputs, fused as a monitor fuses them. Its mean
/// AUROC over the five OOD sets must stay within 0.01 of the better single layer's and above Bonferroni's on the
/// same p-values, and its realised alert rate at alpha = 0.05 on the 350 test inputs must lie in the central 99.9 %
/// of Binomial(350, 0.05) (6 to 32 inputs). That range ignores the spread over calibration sets (about 4 inputs'
/// standard deviation here), so it is a plausibility guard on fixed data, not a test at a stated coverage.
@Suite struct JointFusionRegressionTests {
    @Test func jointFusionRanksAsTheBestLayerAndKeepsItsLevel() throws {
        let dir = EvaluationRegressionTests.root.appendingPathComponent("image").path
        let labels = try TensorFile(path: "\(dir)/labels_train.npy").ints()
        let layers = ["fc", "conv3_gap"]
        let models = try layers.map { layer in
            try LatentModelFitter.fit(
                FileActivations(path: "\(dir)/\(layer)_train.npy", labels: labels),
                calibration: FileActivations(path: "\(dir)/\(layer)_cal.npy"),
                configuration: FitConfiguration(layerName: layer)
            )
        }
        let joint = try LatentModelFitter.calibrateJointly(
            models,
            calibration: try layers.map { try FileActivations(path: "\(dir)/\($0)_cal.npy") }
        )
        let j = try #require(joint[0].jointCalibration)
        func pValues(_ split: String) throws -> [[Double]] {
            try layers.enumerated().map { l, layer in
                let f = try TensorFile(path: "\(dir)/\(layer)_\(split).npy")
                let t = try f.tensor(nil)
                let x = try f.floats(t.name)
                let ws = joint[l].makeWorkspace()
                return x.withUnsafeBufferPointer { joint[l].scoreBatch($0, count: t.rows, workspace: ws) }.map {
                    joint[l].pValue(.surprise, (try? $0.get().surprise) ?? .infinity) ?? 0
                }
            }
        }
        func fused(_ p: [[Double]], _ rule: (UnsafeBufferPointer<Double>) -> Double) -> [Double] {
            (0..<p[0].count).map { i in [p[0][i], p[1][i]].withUnsafeBufferPointer(rule) }
        }
        let sets = ["digits", "heldout", "inverted", "noise", "patches"]
        let test = try pValues("test")
        var mean = [0.0, 0.0, 0.0, 0.0]  // fc, conv3_gap, joint, Bonferroni
        for s in sets {
            let ood = try pValues("ood_\(s)")
            let columns: [([Double], [Double])] = [
                (test[0], ood[0]), (test[1], ood[1]), (fused(test, j.pValue), fused(ood, j.pValue)),
                (fused(test, PValueFusion.bonferroni.fuse), fused(ood, PValueFusion.bonferroni.fuse)),
            ]
            for (c, (t, o)) in columns.enumerated() {
                mean[c] += ROC.auroc(negatives: t.map { -$0 }, positives: o.map { -$0 }) / Double(sets.count)
            }
        }
        let alerts = fused(test, j.pValue).filter { $0 <= 0.05 }.count
        print(
            "eval-ci image joint fusion: mean AUROC fc \(mean[0]), conv3_gap \(mean[1]), joint \(mean[2]), Bonferroni \(mean[3]); \(alerts) of \(test[0].count) test inputs at p <= 0.05"
        )
        #expect(mean[2] >= max(mean[0], mean[1]) - 0.01)
        #expect(mean[2] > mean[3])
        #expect((6...32).contains(alerts))
    }
}
