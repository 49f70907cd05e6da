import Foundation
import LatentWatchNumerics
import Testing

@testable import LatentWatch

/// The jointly calibrated fused p-value: its numerics against numpy, its validity by simulation, the model file, the
/// checks of `calibrateJointly`, and how a monitor chooses and uses it.
@Suite struct JointCalibrationTests {
    /// `Tests/Reference/make_joint_calibration.py` (numpy) computes the fused p-values of 400 test inputs over three
    /// correlated layers (one with ties) from 300 calibration inputs, for both statistics. Ours must agree exactly
    /// (they are ratios of counts; tolerance 1e-12).
    @Test func fusedPValuesMatchTheNumpyReference() throws {
        struct Reference: Decodable {
            let calibration: [[Double]]
            let test: [[Double]]
            let fused: [String: [Double]]
            let layer_p_test: [[Double]]
        }
        let url = Fixtures.reference.appendingPathComponent("joint_calibration.json")
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        let layers = ref.calibration.count
        #expect(layers == 3 && ref.calibration[0].count == 300 && ref.test[0].count == 400)
        let dists = ref.calibration.map { EmpiricalDistribution(scores: $0) }
        for statistic in JointCalibration.Statistic.allCases {
            let joint = JointCalibration.make(
                layers: ["a", "b", "c"],
                memberChecksums: [1, 2, 3],
                distributions: dists,
                surprises: ref.calibration,
                statistic: statistic
            )
            #expect(joint.count == 300)
            let expected = try #require(ref.fused[statistic.rawValue])
            var mismatches = 0
            for i in 0..<ref.test[0].count {
                let p = (0..<layers).map { dists[$0].pValue(ref.test[$0][i]) }
                for l in 0..<layers { #expect(abs(p[l] - ref.layer_p_test[l][i]) <= 1e-12) }
                let fused = p.withUnsafeBufferPointer { joint.pValue($0) }
                if abs(fused - expected[i]) > 1e-12 { mismatches += 1 }
            }
            #expect(mismatches == 0, "\(statistic): \(mismatches) of 400 fused p-values differ from numpy's")
        }
    }

    /// Validity by simulation, through real fits: 60 times, three classes of 6-d Gaussian activations on two
    /// correlated layers (the second a noisy linear map of the first), fitted on 600 inputs, calibrated separately
    /// and jointly on m = 200 other inputs, then 500 fresh in-distribution inputs are assessed. Over the 30,000
    /// inputs the fused p-value is at most alpha = 0.05 at a rate within [0.7 alpha, 1.1 alpha] widened by 0.006
    /// (about 2.6 standard errors of the rate, counting the spread over calibration sets of m = 200 and the 500
    /// test inputs of each), where Bonferroni on the same p-values falls below 0.7 alpha.
    @Test func fusedPValueIsValidAndNotConservative() throws {
        let alpha = 0.05
        var jointHits = 0
        var bonferroniHits = 0
        var total = 0
        for rep in 0..<60 {
            var rng = SeededRandom(seed: UInt64(1000 + rep))
            func draw(_ n: Int) -> (a: [Float], b: [Float], labels: [Int]) {
                var a: [Float] = []
                var b: [Float] = []
                var labels: [Int] = []
                for _ in 0..<n {
                    let k = Int(rng.next() % 3)
                    var x = [Double](repeating: 0, count: 6)
                    for j in 0..<6 { x[j] = (j == k ? 3.0 : 0) + rng.normal() }
                    for j in 0..<6 { a.append(Float(x[j])) }
                    for j in 0..<6 { b.append(Float(x[j] + 0.5 * x[(j + 1) % 6] + 0.7 * rng.normal())) }
                    labels.append(k)
                }
                return (a, b, labels)
            }
            let train = draw(600)
            let cal = draw(200)
            let test = draw(500)
            let config = FitConfiguration(preparation: PreparationOptions(l2Normalize: false), fitBackground: false)
            let models = try [train.a, train.b].enumerated().map { l, x in
                var c = config
                c.layerName = "l\(l)"
                return try LatentModelFitter.fit(
                    InMemoryActivations(values: x, shape: [6], labels: train.labels),
                    calibration: InMemoryActivations(values: l == 0 ? cal.a : cal.b, shape: [6]),
                    configuration: c
                )
            }
            let joint = try LatentModelFitter.calibrateJointly(
                models,
                calibration: [
                    InMemoryActivations(values: cal.a, shape: [6]), InMemoryActivations(values: cal.b, shape: [6]),
                ]
            )
            let j = try #require(joint[0].jointCalibration)
            #expect(j.count == 200 && joint[1].jointCalibration == j)
            let ws = joint.map { $0.makeWorkspace() }
            for i in 0..<500 {
                var p = [1.0, 1.0]
                for (l, x) in [test.a, test.b].enumerated() {
                    let s = try x[(i * 6)..<((i + 1) * 6)].withUnsafeBufferPointer {
                        try joint[l].score($0, workspace: ws[l]).surprise
                    }
                    p[l] = joint[l].pValue(.surprise, s)!
                }
                if p.withUnsafeBufferPointer({ j.pValue($0) }) <= alpha { jointHits += 1 }
                if p.withUnsafeBufferPointer({ PValueFusion.bonferroni.fuse($0) }) <= alpha { bonferroniHits += 1 }
                total += 1
            }
        }
        let rate = Double(jointHits) / Double(total)
        let bonferroni = Double(bonferroniHits) / Double(total)
        print("joint calibration at alpha 0.05: realised rate \(rate), Bonferroni \(bonferroni) (\(total) inputs)")
        #expect(rate >= 0.7 * alpha - 0.006 && rate <= 1.1 * alpha + 0.006)
        #expect(bonferroni < rate)
    }

    static func digitsJoint() throws -> [LatentModel] {
        let models = MonitorTests.models.map(\.model)
        let cal = try ["h1", "h2"].map { l -> any ActivationSource in
            let x = try Fixtures.activations("calibration", l)
            return InMemoryActivations(values: x.values, shape: [x.dim])
        }
        return try LatentModelFitter.calibrateJointly(models, calibration: cal)
    }

    /// The joint calibration survives the model file, a file without one loads without one, and a file naming an
    /// unknown statistic is refused with the feature named.
    @Test func modelFileCarriesTheJointCalibration() throws {
        let joint = try Self.digitsJoint()
        let bytes = try ModelFile.encode(joint[1])
        let back = try ModelFile.decode(bytes)
        #expect(back.jointCalibration == joint[1].jointCalibration)
        #expect(back.jointCalibration?.layers == ["h1", "h2"])
        #expect(try ModelFile.decode(ModelFile.encode(MonitorTests.models[1].model)).jointCalibration == nil)
        // Another statistic's name in the metadata: refused, not ignored.
        var (meta, sections) = ModelFile.layout(joint[1])
        meta.joint?.statistic = "harmonic"
        var payloads: [(kind: String, bytes: [UInt8], width: Int)] = [("META", try ModelFile.metadataBytes(meta), 1)]
        for t in sections.tensors { payloads.append(("TNSR", t.bytes, t.dtype.byteWidth)) }
        let odd = try ModelFile.container(payloads, level: 3)
        #expect {
            _ = try ModelFile.decode(odd)
        } throws: { e in
            (e as? LatentWatchError)?.code == .unsupportedFeature && "\(e)".contains("harmonic")
        }
    }

    /// `calibrateJointly` refuses inputs that are not the models' calibration inputs, a layer's activations of
    /// the wrong size, and unequal input counts, each with the reason.
    @Test func calibrateJointlyRefusesOtherInputs() throws {
        let models = MonitorTests.models.map(\.model)
        func source(_ split: String, _ layer: String, rows: Int? = nil) throws -> any ActivationSource {
            let x = try Fixtures.activations(split, layer)
            let n = rows ?? x.rows
            return InMemoryActivations(values: Array(x.values[0..<(n * x.dim)]), shape: [x.dim])
        }
        func refusal(_ sources: [any ActivationSource]) -> String? {
            do {
                _ = try LatentModelFitter.calibrateJointly(models, calibration: sources)
                return nil
            } catch { return "\(error)" }
        }
        let test = refusal([try source("test", "h1"), try source("test", "h2")])
        #expect(test?.contains("not the ones its model was calibrated on") == true, "\(test ?? "accepted")")
        let swapped = refusal([try source("calibration", "h2"), try source("calibration", "h1")])
        #expect(swapped?.contains("the model expects") == true, "\(swapped ?? "accepted")")
        let short = refusal([try source("calibration", "h1"), try source("calibration", "h2", rows: 100)])
        #expect(short?.contains("calibration inputs") == true, "\(short ?? "accepted")")
        #expect(refusal([try source("calibration", "h1")]) != nil)
    }

    /// A monitor of the jointly calibrated layers fuses with the joint calibration by default; with a member
    /// refitted it falls back to Bonferroni (automatic) or refuses (calibrated), and so does a replacement.
    @Test func monitorUsesTheJointCalibrationOnlyForItsMembers() throws {
        let joint = try Self.digitsJoint()
        let layers = joint.map { MonitoredLayer(model: $0) }
        let monitor = try Monitor(configuration: MonitorConfiguration(layers: layers))
        let j = try #require(monitor.jointCalibration)
        let h1 = try MonitorTests.rows("test", "h1")
        let h2 = try MonitorTests.rows("test", "h2")
        for i in 0..<20 {
            let a = try h1[i].withUnsafeBufferPointer { b1 in
                try h2[i].withUnsafeBufferPointer { b2 in try monitor.assess(.float32([b1, b2])) }
            }
            let p = a.layers.map(\.pValue)
            #expect(a.fusedPValue == p.withUnsafeBufferPointer { j.pValue($0) })
        }
        // The layers in the other order are still exactly the members.
        let reversed = try Monitor(configuration: MonitorConfiguration(layers: layers.reversed()))
        #expect(reversed.jointCalibration == j)
        // h2 refitted on another calibration (the test split): no longer a member.
        let x = try Fixtures.activations("train", "h2")
        let t = try Fixtures.activations("test", "h2")
        let refitted = try LatentModelFitter.fit(
            InMemoryActivations(values: x.values, shape: [x.dim], labels: try Fixtures.labels("train")),
            calibration: InMemoryActivations(values: t.values, shape: [t.dim]),
            configuration: FitConfiguration(layerName: "h2")
        )
        var foreign = refitted
        foreign.jointCalibration = j
        let mixed = [layers[0], MonitoredLayer(model: foreign)]
        #expect(try Monitor(configuration: MonitorConfiguration(layers: mixed)).jointCalibration == nil)
        // The fallback is logged: the monitor warns with this text.
        func warning(_ fusion: PValueFusion, _ layers: [MonitoredLayer]) throws -> String? {
            var said: String?
            _ = try fusion.jointCalibration(for: layers) { said = $0 }
            return said
        }
        let why = try warning(.automatic, mixed)
        #expect(why?.contains("Bonferroni") == true && why?.contains("h2") == true, "\(why ?? "no warning")")
        #expect(try warning(.automatic, layers) == nil)
        #expect(try warning(.bonferroni, mixed) == nil)
        var calibrated = MonitorConfiguration(layers: mixed)
        calibrated.policy.fusion = .calibrated
        #expect {
            _ = try Monitor(configuration: calibrated)
        } throws: { e in
            (e as? LatentWatchError)?.code == .invalidConfiguration && "\(e)".contains("calibrate-fusion")
        }
        var bonferroni = MonitorConfiguration(layers: layers)
        bonferroni.policy.fusion = .bonferroni
        #expect(try Monitor(configuration: bonferroni).jointCalibration == nil)
        // One layer: nothing to fuse.
        #expect(try Monitor(configuration: MonitorConfiguration(layers: [layers[1]])).jointCalibration == nil)
        // Replacement: automatic follows the replacement; calibrated refuses one without a joint calibration.
        try monitor.replaceModels(mixed)
        #expect(monitor.jointCalibration == nil)
        try monitor.replaceModels(layers)
        #expect(monitor.jointCalibration == j)
        var strictConfig = MonitorConfiguration(layers: layers)
        strictConfig.policy.fusion = .calibrated
        let strict = try Monitor(configuration: strictConfig)
        #expect(throws: LatentWatchError.self) { try strict.replaceModels(mixed) }
        #expect(strict.jointCalibration == j)
    }

    /// The window's null rate with a jointly calibrated fused p-value is the bound for one calibration set of the
    /// joint size (approximate for the leave-one-out statistic, Docs/Statistics.md), below the Bonferroni union's.
    @Test func windowNullRateUsesTheJointCalibrationSet() throws {
        let policy = AlertPolicy()
        let joint = policy.windowNullRate(jointCalibrationCount: 217)
        let union = policy.calibrationCorrections(calibrationCounts: [217, 217]).windowNullRate
        #expect(
            joint
                == WindowRateDetector.calibratedRate(threshold: 0.01, calibrationCount: 217, failureProbability: 0.005)
        )
        #expect(joint < union)
        var off = policy
        off.correctForCalibrationSet = false
        #expect(off.windowNullRate(jointCalibrationCount: 217) == 0.01)
    }
}
