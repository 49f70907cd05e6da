// Evaluation on real activations (Docs/Evaluation.md): LatentWatch's families on the same data the
// Python references (Tests/Evaluation/reference_eval.py) use, with the same metrics, written as JSON.
//
//   swift run -c release latentwatch-eval --data DIR --scenario image --layers fc,conv3_gap --out lw_image.json \
//       [--streams DIR [--stream-layer NAME[,NAME...] (several: their Bonferroni-fused p-values)] [--id-streams 100] [--id-length 10000] [--change-runs 20]] [--quick | --only-default]
//
// --streams DIR also writes the default configuration's p-values on one layer (default: the last of --layers) as
// streams for Tests/Evaluation/stream_baselines.py and runs our stream detectors on them (StreamComparison.swift).
//
// DIR holds <layer>_<split>.npy, labels_<split>.npy and logits_<split>.npy for the splits train, cal, test and
// ood_<name> (Tests/Evaluation/README.md). Models are fitted on train with labels, calibrated on cal, scored
// on test (in-distribution, negatives) and each OOD set (positives).
import ArgumentParser
import Foundation
import LatentWatch
import LatentWatchLab
import LatentWatchNumerics

struct EvalOptions: ParsableArguments {
    @Option(help: "Directory of evaluation arrays (Tests/Evaluation/README.md).")
    var data: String

    @Option(help: "Result JSON file.")
    var out: String

    @Option(help: "Scenario name in the results (default: the data directory's name).")
    var scenario: String?

    @Option(help: "Layers, comma-separated (default: every <layer>_train.npy).")
    var layers: CommaList?

    @Flag(help: "Mixtures only on the raw and l2 variants.")
    var quick = false

    @Flag(help: "Fit only the default configuration (for the streams, and for the CI check of this tool).")
    var onlyDefault = false

    @Option(help: "Write the default configuration's p-value streams here and run our stream detectors on them.")
    var streams: String?

    @Option(
        help:
            "Layer(s) of the streams, comma-separated; several: their Bonferroni-fused p-values (default: the last layer)."
    )
    var streamLayer: CommaList?

    @Option(help: "In-distribution streams.")
    var idStreams = 100

    @Option(help: "Length of each in-distribution stream.")
    var idLength = 10_000

    @Option(help: "Change streams per OOD set.")
    var changeRuns = 20

    func validate() throws {
        guard idStreams >= 1, idLength >= 1, changeRuns >= 1 else {
            throw ValidationError("--id-streams, --id-length and --change-runs must be at least 1")
        }
    }
}

let tool = "latentwatch-eval"
let options = parseOptions(EvalOptions.self)
let dataDir = options.data
let outPath = options.out
let data = exitOnError(tool) { try EvaluationData(dataDir) }
let scenario = options.scenario ?? URL(fileURLWithPath: dataDir).lastPathComponent
let quick = options.quick
// --only-default: fit only the default configuration (for the streams, and for the CI check of this tool).
let onlyDefault = options.onlyDefault
let alpha = 0.01
let oodSets = data.oodSetsWithLabels()
let layers: [String] = options.layers?.items ?? data.layers()

func path(_ layer: String, _ split: String) -> String { data.path(layer, split) }
// Every file the run reads is opened before anything is fitted, so a missing or damaged one is named, not a crash.
if layers.isEmpty || oodSets.isEmpty {
    let what = layers.isEmpty ? "no layers (no <layer>_train.npy)" : "no OOD sets (no labels_ood_<name>.npy)"
    stderrLine("\(tool): \(dataDir): \(what); Tests/Evaluation/README.md describes the layout")
    exit(2)
}
exitOnError(tool) {
    try data.requireReadable(
        ["labels_train", "labels_test", "logits_test"]
            + layers.flatMap { l in ["train", "cal", "test"].map { "\(l)_\($0)" } + oodSets.map { "\(l)_ood_\($0)" } }
    )
}
func rows(_ p: String) throws -> (values: [Float], count: Int) {
    let m = try ActivationMatrix(path: p)
    return (m.array, m.rows)
}
func now() -> Double { monotonicSeconds() }

let trainLabels = exitOnError(tool) { try data.labels("labels_train") }
// Labels of the calibration split, when the data has them: the fit calibrates the posterior p(y | z) on them.
let calLabels: [Int]? = try? data.labels("labels_cal")
let testLabels = exitOnError(tool) { try data.labels("labels_test") }
let testLogits = exitOnError(tool) { try rows(data.file("logits_test")) }
guard testLabels.count == testLogits.count else {
    stderrLine("\(tool): \(testLabels.count) test labels for \(testLogits.count) rows of test logits")
    exit(2)
}
let classes = testLogits.values.count / max(1, testLogits.count)
// Misclassified test inputs: the classifier's argmax differs from the label (class i of the logits is the
// i-th smallest training label, as the generators write them).
let labelSet = Array(Set(trainLabels)).sorted()
let misclassified: [Bool] = (0..<testLogits.count).map { r in
    var best = 0
    for c in 1..<classes where testLogits.values[r * classes + c] > testLogits.values[r * classes + best] { best = c }
    return (best < labelSet.count ? labelSet[best] : best) != testLabels[r]
}

/// Expected calibration error of a classifier's top-class probability: 15 equal-width bins of confidence,
/// sum over bins of (bin share) x |accuracy - mean confidence| (Guo et al. 2017).
func expectedCalibrationError(_ top: [(confidence: Double, correct: Bool)]) -> Double {
    let bins = 15
    var count = [Double](repeating: 0, count: bins)
    var hits = [Double](repeating: 0, count: bins)
    var confidence = [Double](repeating: 0, count: bins)
    for t in top {
        let b = min(bins - 1, max(0, Int(t.confidence * Double(bins))))
        count[b] += 1
        hits[b] += t.correct ? 1 : 0
        confidence[b] += t.confidence
    }
    var ece = 0.0
    for b in 0..<bins where count[b] > 0 { ece += abs(hits[b] - confidence[b]) / Double(top.count) }
    return ece
}

/// The classifier's own maximum softmax probability on the test inputs: how well 1 - MSP ranks its
/// misclassifications (AUROC), and its expected calibration error.
let classifierMSP: (auroc: Double, ece: Double, msp: [Double]) = {
    var msp: [Double] = []
    for r in 0..<testLogits.count {
        let row = testLogits.values[(r * classes)..<((r + 1) * classes)].map(Double.init)
        let m = row.max() ?? 0
        let z = row.reduce(0) { $0 + exp($1 - m) }
        msp.append(1 / z)
    }
    let neg = zip(msp, misclassified).filter { !$0.1 }.map { -$0.0 }
    let pos = zip(msp, misclassified).filter { $0.1 }.map { -$0.0 }
    let top = zip(msp, misclassified).map { (confidence: $0.0, correct: !$0.1) }
    return (ROC.auroc(negatives: neg, positives: pos), expectedCalibrationError(top), msp)
}()

/// Misclassification AUROC of a score (larger: more likely wrong) over the test inputs.
func misclassificationAUROC(_ score: [Double]) -> Double {
    ROC.auroc(
        negatives: zip(score, misclassified).filter { !$0.1 && $0.0.isFinite }.map(\.0),
        positives: zip(score, misclassified).filter { $0.1 && $0.0.isFinite }.map(\.0)
    )
}

/// One configuration of ours.
struct Config {
    var name: String
    var family: DensityFamilyName
    var preparation: PreparationOptions
    var regularization = Regularization()
    var score: ScoreKind = .surprise
    var mixtureRegularization: Regularization? = nil
}

func variants(dimension d: Int) -> [(String, PreparationOptions)] {
    var v: [(String, PreparationOptions)] = [
        ("raw", .raw), ("l2", PreparationOptions(l2Normalize: true)),
    ]
    for k in [16, 32] where k < d {
        v.append(("pca\(k)", PreparationOptions(l2Normalize: false, projection: .components(k))))
        v.append(("l2+pca\(k)", PreparationOptions(l2Normalize: true, projection: .components(k))))
    }
    return v
}

/// The default configuration (Docs/Evaluation.md): class Gaussians, L2, held-out shrinkage, no PCA.
let defaultConfig = "lw_gda:l2"

func configs(dimension d: Int) -> [Config] {
    if onlyDefault {
        return [Config(name: defaultConfig, family: .gda, preparation: PreparationOptions(l2Normalize: true))]
    }
    var out: [Config] = []
    for (vname, prep) in variants(dimension: d) {
        out.append(Config(name: "lw_gda:\(vname)", family: .gda, preparation: prep))
        out.append(Config(name: "lw_tied:\(vname)", family: .tied, preparation: prep))
        out.append(Config(name: "lw_tied_md:\(vname)", family: .tied, preparation: prep, score: .mahalanobis))
        out.append(Config(name: "lw_rmd:\(vname)", family: .tied, preparation: prep, score: .relativeMahalanobis))
        if !quick || vname == "raw" || vname == "l2" {
            out.append(Config(name: "lw_gmm:\(vname)", family: .gmmFull, preparation: prep))
        }
    }
    // Regularisation: held-out likelihood (default) against OAS, no shrinkage (floor only) and fixed ridges.
    for (rname, reg) in [
        ("oas", Regularization(shrinkage: .oracleApproximating)),
        ("none", Regularization(shrinkage: .fixed(0))),
        ("fixed0.01", Regularization(shrinkage: .fixed(0.01))),
        ("fixed0.1", Regularization(shrinkage: .fixed(0.1))),
        ("fixed0.5", Regularization(shrinkage: .fixed(0.5))),
    ] {
        for (vname, prep) in [("raw", PreparationOptions.raw), ("l2", PreparationOptions(l2Normalize: true))] {
            out.append(
                Config(name: "lw_gda_reg-\(rname):\(vname)", family: .gda, preparation: prep, regularization: reg)
            )
        }
    }
    // Mixture regularisation: our default (1e-2 of the average variance on the diagonal; lw_gmm) against
    // scikit-learn's (reg_covar = 1e-6, absolute) and smaller relative floors (1e-6 and 1e-3 of the average variance).
    for (rname, reg) in [
        ("ridge1e-6", Regularization(shrinkage: .fixed(0), floorRatio: 0, ridge: 1e-6)),
        ("floor1e-6", Regularization(shrinkage: .fixed(0), floorRatio: 1e-6)),
        ("floor1e-3", Regularization(shrinkage: .fixed(0), floorRatio: 1e-3)),
    ] {
        for (vname, prep) in [("raw", PreparationOptions.raw), ("l2", PreparationOptions(l2Normalize: true))] {
            out.append(
                Config(
                    name: "lw_gmm_reg-\(rname):\(vname)",
                    family: .gmmFull,
                    preparation: prep,
                    mixtureRegularization: reg
                )
            )
        }
    }
    return out
}

var results: [String: [String: Any]] = [:]
/// Per layer, the default configuration's p-values on test and each OOD set (for fusion and streams).
var defaultPValues: [String: [String: [Double]]] = [:]
var defaultCalibrationCount: [String: Int] = [:]
/// Per layer, the default configuration's model (for the joint calibration of the fused p-value).
var defaultModels: [String: LatentModel] = [:]

for layer in layers {
    let train = exitOnError(tool) { try rows(path(layer, "train")) }
    let d = train.values.count / max(1, train.count)
    var layerResults: [String: Any] = [:]
    let splits = ["test"] + oodSets.map { "ood_\($0)" }
    var data: [String: (values: [Float], count: Int)] = [:]
    for s in splits { data[s] = exitOnError(tool) { try rows(path(layer, s)) } }
    for cfg in configs(dimension: d) {
        let t0 = now()
        var fc = FitConfiguration(
            family: cfg.family,
            preparation: cfg.preparation,
            regularization: cfg.regularization,
            layerName: layer
        )
        if let r = cfg.mixtureRegularization { fc.mixtureRegularization = r }
        // These rows measure the densities' scores; the neighbour index beside them is measured by
        // Tests/Evaluation/neighbour_eval.py and neighbour_calibration_size.py (Docs/Evaluation.md, finding 9).
        fc.neighbours = nil
        let model: LatentModel
        do {
            model = try LatentModelFitter.fit(
                FileActivations(path: path(layer, "train"), labels: cfg.family == .gmmFull ? nil : trainLabels),
                calibration: FileActivations(
                    path: path(layer, "cal"),
                    labels: cfg.family == .gmmFull ? nil : calLabels
                ),
                configuration: fc
            )
        } catch {
            layerResults[cfg.name] = ["skipped": "\(error)"]
            continue
        }
        let fitSeconds = now() - t0
        let ws = model.makeWorkspace()
        var scores: [String: [Double]] = [:]
        var pvalues: [String: [Double]] = [:]
        var entropy: [Double] = []
        var posteriorTop: [(confidence: Double, correct: Bool)] = []
        var maxPosterior: [Double] = []
        var nonFinite = 0
        for s in splits {
            let x = data[s]!
            let res = x.values.withUnsafeBufferPointer { model.scoreBatch($0, count: x.count, workspace: ws) }
            var v: [Double] = []
            var p: [Double] = []
            for r in res {
                switch r {
                case .success(let sc):
                    let value = sc.value(cfg.score)
                    v.append(value.isFinite ? value : .infinity)
                    p.append(
                        model.calibration.pValue(cfg.score, value) ?? model.calibration.pValue(.surprise, sc.surprise)
                            ?? 1
                    )
                    if s == "test" {
                        entropy.append(sc.entropy)
                        maxPosterior.append(sc.maxPosterior)
                        if let label = sc.predictedLabel {
                            posteriorTop.append((sc.maxPosterior, label == testLabels[entropy.count - 1]))
                        }
                    }
                case .failure:
                    nonFinite += 1
                    v.append(.infinity)
                    p.append(0)
                    if s == "test" {
                        entropy.append(.nan)
                        maxPosterior.append(.nan)
                    }
                }
            }
            scores[s] = v
            pvalues[s] = p
        }
        var auroc: [String: Double] = [:]
        var fpr: [String: Double] = [:]
        for o in oodSets {
            auroc[o] = ROC.auroc(negatives: scores["test"]!, positives: scores["ood_\(o)"]!)
            fpr[o] = ROC.falsePositiveRate(negatives: scores["test"]!, positives: scores["ood_\(o)"]!)
        }
        let alertRate = Double(pvalues["test"]!.filter { $0 <= alpha }.count) / Double(pvalues["test"]!.count)
        var entry: [String: Any] = [
            "auroc": auroc, "fpr95": fpr,
            "mean_auroc": auroc.values.reduce(0, +) / Double(max(1, auroc.count)),
            "mean_fpr95": fpr.values.reduce(0, +) / Double(max(1, fpr.count)),
            "alert_rate": alertRate, "fit_seconds": fitSeconds, "nonfinite_scores": nonFinite,
            "regularization": model.density.regularization.map {
                ["shrinkage": $0.shrinkage, "method": $0.method] as [String: Any]
            },
        ]
        if cfg.family != .gmmFull, cfg.score == .surprise {
            let neg = zip(entropy, misclassified).filter { !$0.1 && $0.0.isFinite }.map(\.0)
            let pos = zip(entropy, misclassified).filter { $0.1 && $0.0.isFinite }.map(\.0)
            entry["misclassification_auroc"] = ROC.auroc(negatives: neg, positives: pos)
            if !posteriorTop.isEmpty {
                entry["posterior_ece"] = expectedCalibrationError(posteriorTop)
                entry["posterior_accuracy"] =
                    Double(posteriorTop.filter(\.correct).count) / Double(posteriorTop.count)
                entry["posterior_temperature"] = model.posteriorTemperature
                let sorted = entropy.filter(\.isFinite).sorted()
                entry["entropy_median"] = sorted.isEmpty ? Double.nan : sorted[sorted.count / 2]
                // With the classifier's outputs: the posterior's and the classifier's top-class probabilities
                // combined, (1 - max p(y | z)) + (1 - MSP), against each alone.
                let combined = zip(maxPosterior, classifierMSP.msp).map { (1 - $0.0) + (1 - $0.1) }
                entry["combined_misclassification_auroc"] = misclassificationAUROC(combined)
                entry["max_posterior_misclassification_auroc"] = misclassificationAUROC(maxPosterior.map { 1 - $0 })
                let entropyP = entropy.map { model.calibration.pValue(.entropy, $0) ?? 1 }
                entry["aleatoric_alert_rate"] =
                    Double(entropyP.filter { $0 <= alpha }.count) / Double(max(1, entropyP.count))
            }
            if cfg.name == defaultConfig, model.posteriorTemperature != nil {
                // The same fit with Bayes' posterior, for the comparison in Docs/Evaluation.md.
                var plain = fc
                plain.calibratePosterior = false
                if let bayes = try? LatentModelFitter.fit(
                    FileActivations(path: path(layer, "train"), labels: trainLabels),
                    calibration: FileActivations(path: path(layer, "cal")),
                    configuration: plain
                ) {
                    let x = data["test"]!
                    let res = x.values.withUnsafeBufferPointer { bayes.scoreBatch($0, count: x.count, workspace: ws) }
                    var h: [Double] = []
                    var top: [(confidence: Double, correct: Bool)] = []
                    for (r, result) in res.enumerated() {
                        guard case .success(let sc) = result else {
                            h.append(.nan)
                            continue
                        }
                        h.append(sc.entropy)
                        if let label = sc.predictedLabel { top.append((sc.maxPosterior, label == testLabels[r])) }
                    }
                    let neg = zip(h, misclassified).filter { !$0.1 && $0.0.isFinite }.map(\.0)
                    let pos = zip(h, misclassified).filter { $0.1 && $0.0.isFinite }.map(\.0)
                    let sorted = h.filter(\.isFinite).sorted()
                    entry["bayes_posterior"] = [
                        "misclassification_auroc": ROC.auroc(negatives: neg, positives: pos),
                        "posterior_ece": top.isEmpty ? Double.nan : expectedCalibrationError(top),
                        "entropy_median": sorted.isEmpty ? Double.nan : sorted[sorted.count / 2],
                    ]
                }
            }
        }
        layerResults[cfg.name] = entry
        if cfg.name == defaultConfig {
            defaultPValues[layer] = pvalues
            defaultModels[layer] = model
            defaultCalibrationCount[layer] = model.calibration.distributions[.surprise]?.count ?? 0
        }
        FileHandle.standardError.write(
            Data(
                String(
                    format: "%@ %@ %-28@ mean AUROC %.4f  alert %.4f  fit %.1f s\n",
                    scenario,
                    layer,
                    cfg.name,
                    entry["mean_auroc"] as! Double,
                    alertRate,
                    fitSeconds
                ).utf8
            )
        )
    }
    results[layer] = layerResults
}

// Fusion of the default configuration's p-values across all evaluated layers: Bonferroni and Cauchy on the layers'
// p-values, and the statistics calibrated jointly on the calibration split (as `LatentModelFitter.calibrateJointly`
// does for a monitor). AUROC on the fused p-value (smaller is more unusual); for the joint calibration also on the
// statistic itself, which does not tie at the calibration's resolution.
var fusion: [String: Any] = [:]
if defaultPValues.count >= 2 {
    let ls = layers.filter { defaultPValues[$0] != nil }
    let fusionName = { (rule: String) in "\(defaultConfig)+\(rule)(\(ls.joined(separator: ",")))" }
    func rates(_ test: [Double]) -> [String: Double] {
        var r: [String: Double] = [:]
        for level in [0.01, 0.001] {
            r["\(level)"] = Double(test.filter { $0 <= level }.count) / Double(test.count)
        }
        return r
    }
    func summary(_ fused: (String) -> [Double]) -> [String: Any] {
        let test = fused("test")
        var auroc: [String: Double] = [:]
        var fpr: [String: Double] = [:]
        for o in oodSets {
            let ood = fused("ood_\(o)")
            // Smaller fused p is more unusual: score = -p.
            auroc[o] = ROC.auroc(negatives: test.map { -$0 }, positives: ood.map { -$0 })
            fpr[o] = ROC.falsePositiveRate(negatives: test.map { -$0 }, positives: ood.map { -$0 })
        }
        return [
            "auroc": auroc, "fpr95": fpr, "mean_auroc": auroc.values.reduce(0, +) / Double(max(1, auroc.count)),
            "alert_rate": Double(test.filter { $0 <= alpha }.count) / Double(test.count), "alert_rates": rates(test),
            "test_count": test.count,
        ]
    }
    for rule in [PValueFusion.bonferroni, .cauchy] {
        fusion[fusionName(rule.rawValue)] = summary {
            StreamComparison.fuse(ls.map { defaultPValues[$0]! }, split: $0, rule: rule)
        }
    }
    for statistic in JointCalibration.Statistic.allCases {
        let joint = exitOnError(tool) {
            try LatentModelFitter.calibrateJointly(
                ls.map { defaultModels[$0]! },
                calibration: try ls.map { try FileActivations(path: path($0, "cal")) },
                statistic: statistic
            )
        }
        let j = joint[0].jointCalibration!
        func layerP(_ split: String, _ i: Int) -> [Double] { ls.map { defaultPValues[$0]![split]![i] } }
        func calibrated(_ split: String) -> [Double] {
            (0..<defaultPValues[ls[0]]![split]!.count).map { i in
                layerP(split, i).withUnsafeBufferPointer { j.pValue($0) }
            }
        }
        var entry = summary(calibrated)
        // Ranked by the statistic (larger is more unusual): score = -statistic as a "p-value".
        let byStatistic = summary { split in
            (0..<defaultPValues[ls[0]]![split]!.count).map { i in
                -layerP(split, i).withUnsafeBufferPointer { JointCalibration.value(statistic, $0) }
            }
        }
        entry["mean_auroc_statistic"] = byStatistic["mean_auroc"]
        entry["auroc_statistic"] = byStatistic["auroc"]
        entry["joint_count"] = j.count
        fusion[fusionName("joint-\(statistic.rawValue)")] = entry
    }
}

var output: [String: Any] = [
    "scenario": scenario, "data": dataDir, "alpha": alpha, "ood_sets": oodSets, "layers": results,
    "fusion": fusion, "default": defaultConfig, "latentwatch": LatentWatchVersion.string,
    "test_error_rate": Double(misclassified.filter { $0 }.count) / Double(max(1, misclassified.count)),
    "classifier_msp_misclassification_auroc": classifierMSP.auroc, "classifier_ece": classifierMSP.ece,
]
if let streamDir = options.streams {
    // One layer, or several fused as the Monitor fuses them by default (Bonferroni).
    let streamLayers = options.streamLayer?.items ?? [layers.last!]
    var pvs: [[String: [Double]]] = []
    var ms: [Int] = []
    for l in streamLayers {
        guard let pv = defaultPValues[l], let m = defaultCalibrationCount[l] else {
            stderrLine("\(tool): --stream-layer \(l): the default configuration was not fitted on it")
            exit(1)
        }
        pvs.append(pv)
        ms.append(m)
    }
    output["streams"] = exitOnError(tool) {
        try StreamComparison.run(
            layerPValues: pvs,
            oodSets: oodSets,
            calibrationCounts: ms,
            alpha: alpha,
            scenario: scenario,
            layer: streamLayers.joined(separator: "+"),
            configuration: pvs.count > 1 ? "\(defaultConfig)+bonferroni" : defaultConfig,
            directory: streamDir,
            idStreams: options.idStreams,
            idLength: options.idLength,
            changeRuns: options.changeRuns
        )
    }
}
exitOnError(tool) { try writeJSON(output, to: outPath) }
print("wrote \(outPath)")
