import Foundation
import LatentWatch
import Testing

/// The classifier's outputs passed beside the activations: summaries against scipy, disagreement with
/// p(y | z), and clear errors for bad outputs.
@Suite struct ModelOutputTests {
    /// Maximum softmax probability, softmax entropy and energy of 50 real logits against scipy
    /// (Tests/Fixtures/readers/outputs.json), tolerance 1e-5 relative (logits are float32).
    @Test func summariesMatchScipy() throws {
        let url = Fixtures.root.appendingPathComponent("Tests/Fixtures/readers/outputs.json")
        let j = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let logits = (j["logits"] as! [[Double]]).map { $0.map { Float($0) } }
        for (i, row) in logits.enumerated() {
            let s = try #require(row.withUnsafeBufferPointer { OutputSummary.summarise($0, kind: .logits) })
            #expect(s.predicted == (j["predicted"] as! [Int])[i])
            #expect(abs(s.confidence - (j["confidence"] as! [Double])[i]) <= 1e-5 * (j["confidence"] as! [Double])[i])
            #expect(abs(s.entropy - (j["entropy"] as! [Double])[i]) <= 1e-5 * max(1e-3, (j["entropy"] as! [Double])[i]))
            #expect(abs(s.energy! - (j["energy"] as! [Double])[i]) <= 1e-5 * abs((j["energy"] as! [Double])[i]))
            // The same distribution given as probabilities: same prediction, confidence and entropy.
            let top = row.max()!
            let e = row.map { exp(Double($0 - top)) }
            let p = e.map { Float($0 / e.reduce(0, +)) }
            let q = try #require(p.withUnsafeBufferPointer { OutputSummary.summarise($0, kind: .probabilities) })
            #expect(q.predicted == s.predicted && abs(q.confidence - s.confidence) < 1e-6 && q.energy == nil)
            #expect(abs(q.entropy - s.entropy) < 1e-5)
        }
        #expect([Float.nan, 1].withUnsafeBufferPointer { OutputSummary.summarise($0, kind: .logits) } == nil)
        #expect(
            [Float(-0.1), 1.1].withUnsafeBufferPointer { OutputSummary.summarise($0, kind: .probabilities) } == nil
        )
    }

    /// On the bundled stream, the disagreement flag marks exactly the inputs where the MLP's argmax differs
    /// from the GDA's predicted class; wrong counts and NaN are refused without affecting later inputs.
    @Test func disagreementAndBadOutputs() throws {
        let model = try ModelFile.read(
            contentsOf: Fixtures.golden.appendingPathComponent("digits-h2-gda-v1.0.lwm").path
        )
        let monitor = try Monitor(
            configuration: MonitorConfiguration(layers: [MonitoredLayer(model: model)], outputs: (.logits, 6))
        )
        let x = try Fixtures.activations("test", "h2")
        let logits = try Fixtures.array(Fixtures.data.appendingPathComponent("test_logits.npy")).floats()
        var disagreements = 0
        var expected = 0
        var result = Assessment()
        for i in 0..<x.rows {
            try x.values.withUnsafeBufferPointer { v in
                try logits.withUnsafeBufferPointer { l in
                    try monitor.assess(
                        .float32([UnsafeBufferPointer(rebasing: v[(i * 64)..<((i + 1) * 64)])]),
                        outputs: UnsafeBufferPointer(rebasing: l[(i * 6)..<((i + 1) * 6)]),
                        into: &result
                    )
                }
            }
            let argmax = (0..<6).max { logits[i * 6 + $0] < logits[i * 6 + $1] }!
            if argmax != result.predictedLabel { expected += 1 }
            if result.flags.contains(.disagreement) { disagreements += 1 }
            #expect(result.output?.predicted == argmax)
        }
        #expect(disagreements == expected)
        // The MLP is 99.5 % accurate and the GDA on h2 agrees with it almost always.
        #expect(expected < x.rows / 20)
        let row = Array(x.values[0..<64])
        let before = result.index
        try row.withUnsafeBufferPointer { v in
            #expect(throws: LatentWatchError.self) {
                try [Float](repeating: 0, count: 5).withUnsafeBufferPointer {
                    try monitor.assess(.float32([v]), outputs: $0)
                }
            }
            #expect(throws: LatentWatchError.self) {
                try [Float.nan, 0, 0, 0, 0, 0].withUnsafeBufferPointer {
                    try monitor.assess(.float32([v]), outputs: $0)
                }
            }
            let a = try [Float](repeating: 0, count: 6).withUnsafeBufferPointer {
                try monitor.assess(.float32([v]), outputs: $0)
            }
            #expect(a.index == before + 1 && abs((a.output?.confidence ?? 0) - 1.0 / 6) < 1e-12)
        }
    }
}
