import Foundation
import LatentWatch
import LatentWatchTestSupport
import Testing

/// `latentwatch-eval --streams` (Docs/Evaluation.md, the stream comparison) on the committed reduced text data: the
/// streams and manifest it writes for stream_baselines.py are complete and readable, and our detectors' summary
/// is consistent with the streams (no alarm on in-distribution streams, far-OOD changes detected after the change).
@Suite struct EvaluationStreamTests {
    @Test func streamsAreWrittenAndOurDetectorsRunOnThem() throws {
        let dir = LatentWatchBinary.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("lw.json").path
        let streams = dir.appendingPathComponent("streams").path
        let r = try LatentWatchBinary.run(
            [
                "--data", "Tests/Fixtures/eval-ci/text", "--scenario", "text-ci", "--layers", "emb_l6",
                "--only-default",
                "--out", out, "--streams", streams, "--id-streams", "4", "--id-length", "3000", "--change-runs", "3",
            ],
            product: "latentwatch-eval"
        )
        try #require(r.status == 0, "latentwatch-eval failed: \(r.out) \(r.err)")

        // The manifest lists 4 ID streams and 3 per OOD set; every file is a float64 .npy of p-values in (0, 1].
        let manifest =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(streams)/manifest.json")))
            as! [String: Any]
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
        let result =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as! [String: Any]
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
}
