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
        score: ScoreKind
    ) throws
        -> Scored
    {
        let dir = root.appendingPathComponent(scenario).path
        let labels = try TensorFile(path: "\(dir)/labels_train.npy").ints()
        let model = try LatentModelFitter.fit(
            FileActivations(path: "\(dir)/\(layer)_train.npy", labels: labels),
            calibration: FileActivations(path: "\(dir)/\(layer)_cal.npy"),
            configuration: FitConfiguration(
                family: family,
                preparation: PreparationOptions(l2Normalize: true),
                layerName: layer
            )
        )
        let ws = model.makeWorkspace()
        func scores(_ split: String) throws -> [Double] {
            let f = try TensorFile(path: "\(dir)/\(layer)_\(split).npy")
            let t = try f.tensor(nil)
            let x = try f.floats(t.name)
            return x.withUnsafeBufferPointer { model.scoreBatch($0, count: t.rows, workspace: ws) }.map {
                (try? $0.get().value(score)) ?? .infinity
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
