import Foundation
import LatentWatch
import LatentWatchTestSupport
import Testing

/// `latentwatch-eval --streams` (Docs/Evaluation.md, the stream comparison) on the committed reduced text data: the
/// streams and manifest it writes for stream_baselines.py are complete and readable, and our detectors' summary
/// is consistent with the streams (no alarm on in-distribution streams, far-OOD changes detected after the change).
@Suite struct EvaluationStreamTests {
    /// Runs `latentwatch-eval --only-default --streams` into `dir`; returns the stream folder, the result JSON and
    /// the stream manifest.
    static func runEval(
        in dir: URL,
        _ arguments: [String]
    ) throws -> (streams: String, result: [String: Any], manifest: [String: Any]) {
        let out = dir.appendingPathComponent("lw.json").path
        let streams = dir.appendingPathComponent("streams").path
        let r = try LatentWatchBinary.run(
            arguments + ["--only-default", "--out", out, "--streams", streams],
            product: "latentwatch-eval"
        )
        try #require(r.status == 0, "latentwatch-eval failed: \(r.out) \(r.err)")
        func json(_ path: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        }
        return (streams, try json(out), try json("\(streams)/manifest.json"))
    }

    @Test func streamsAreWrittenAndOurDetectorsRunOnThem() throws {
        let dir = LatentWatchBinary.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (streams, result, manifest) = try Self.runEval(
            in: dir,
            [
                "--data", "Tests/Fixtures/eval-ci/text", "--scenario", "text-ci", "--layers", "emb_l6",
                "--id-streams", "4", "--id-length", "3000", "--change-runs", "3",
            ]
        )

        // The manifest lists 4 ID streams and 3 per OOD set; every file is a float64 .npy of p-values in (0, 1].
        let entries = manifest["streams"] as! [[String: Any]]
        let oodSets = [
            "foldoc", "fortune_en", "fortune_foreign", "random_words", "wn_body", "wn_substance", "wn_verb",
        ]
        #expect(entries.count == 4 + 3 * oodSets.count)
        #expect(manifest["calibration_count"] as? Int == 240)
        for e in entries {
            let file = try TensorFile(path: "\(streams)/\(e["file"] as! String)")
            let t = try file.tensor(nil)
            let p = try file.floats(t.name)
            let isID = e["change_at"] is NSNull
            #expect(t.rows == (isID ? 3000 : 2500))
            #expect(p.allSatisfy { $0 > 0 && $0 <= 1 })
            if !isID { #expect(e["change_at"] as? Int == 1000) }
        }

        // Our default detector: no alarm on the ID streams; far-OOD ramps (foreign fortunes) all detected after
        // the change. The recorded text AUROC of this set is 0.99 on these data.
        let summary =
            ((result["streams"] as! [String: Any])["results"] as! [String: Any])["lw_anytime"] as! [String: Any]
        let id = (summary["text-ci/none"] as! [String: Any])["id"] as! [String: Any]
        #expect(id["streams"] as? Int == 4)
        #expect(id["streams_with_alarm"] as? Int == 0)
        let far = (summary["text-ci/fortune_foreign"] as! [String: Any])["change"] as! [String: Any]
        #expect(far["streams"] as? Int == 3)
        #expect(far["missed"] as? Int == 0)
        #expect(far["false_alarm_streams"] as? Int == 0)
        let delay = try #require(far["median_delay"] as? Double)
        #expect(delay > 0 && delay < 1500)
    }

    /// `--stream-layer fc,conv3_gap` writes the Bonferroni-fused p-values of the two layers, as a two-layer Monitor
    /// fuses them: every value is min(1, 2 (1 + c) / (m + 1)) for an integer c, and our detectors are set up as a
    /// Monitor sets them up for two layers (the default shift detector against calibration set and stream; the
    /// calibration-set variant with a Monitor's per-layer corrections; 2 s for the fused martingale
    /// lw_anytime_bonferroni).
    @Test func fusedStreamsHoldBonferroniPValues() throws {
        let dir = LatentWatchBinary.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (streams, result, manifest) = try Self.runEval(
            in: dir,
            [
                "--data", "Tests/Fixtures/eval-ci/image", "--scenario", "image-ci", "--layers", "fc,conv3_gap",
                "--stream-layer", "fc,conv3_gap", "--id-streams", "2", "--id-length", "1000", "--change-runs", "2",
            ]
        )
        #expect(manifest["layer"] as? String == "fc+conv3_gap")
        let counts = try #require(manifest["calibration_counts"] as? [Int])
        #expect(counts.count == 2 && counts[0] == counts[1])
        let m = Double(counts[0])
        var values = 0
        for e in manifest["streams"] as! [[String: Any]] {
            for p in try NumpyArray(contentsOf: "\(streams)/\(e["file"] as! String)").doubles() {
                let steps = p * (m + 1) / 2  // 1 + c for Bonferroni over two layers
                #expect(p == 1 || (abs(steps - steps.rounded()) < 1e-6 && steps >= 1), "\(p) is not a fused p-value")
                values += 1
            }
        }
        #expect(values == 2 * 1000 + 5 * 2 * 2500)
        let params = ((result["streams"] as! [String: Any])["detectors"] as! [String: Any])
        let anytime = try #require(params["lw_anytime"] as? [String: Any])
        let expected = AlertPolicy().calibrationCorrections(calibrationCounts: counts)
        #expect(anytime["reference"] as? String == AlertPolicy().shiftReference.rawValue)
        #expect(anytime["correction"] as? String == "none")
        #expect(anytime["betting"] as? String == AlertPolicy().shiftBetting.rawValue)
        let fixed = try #require(params["lw_anytime_calibration_set"] as? [String: Any])
        #expect(fixed["correction"] as? String == "conditional", "the mixture's correction is the Monitor's")
        #expect(fixed["failure_probability"] as? [Double] == expected.shift.map(\.failureProbability))
        let fusedSlack = try #require(
            (params["lw_anytime_bonferroni"] as? [String: Any])?["calibration_slack"] as? Double
        )
        let dkw = AlertPolicy().calibrationCorrections(calibrationCounts: counts, method: .dkw).shift
        #expect(abs(fusedSlack - 2 * dkw[0].slack) < 1e-12)
        let rate = try #require((params["lw_window"] as? [String: Any])?["null_rate"] as? Double)
        #expect(abs(rate - expected.windowNullRate) < 1e-12)
    }
}
