import Foundation
import Testing

@testable import LatentWatch

/// Mixtures fitted in EM rounds across shards (``MixtureRound``, ``MixtureStep``), every round and step through its
/// file, against the one-pass fit of the same data.
@Suite struct ShardedMixtureTests {
    static let cuts = [0, 180, 430]

    static func shards(_ layer: String) throws -> (values: [Float], rows: Int, dim: Int, parts: [InMemoryActivations]) {
        let t = try Fixtures.activations("train", layer)
        let cuts = Self.cuts + [t.rows]
        let parts = (0..<3).map { i in
            InMemoryActivations(
                values: Array(t.values[(cuts[i] * t.dim)..<(cuts[i + 1] * t.dim)]),
                shape: [t.dim]
            )
        }
        return (t.values, t.rows, t.dim, parts)
    }

    /// Round 0 from statistics given another configuration.
    static func round(_ statistics: ActivationStatistics, _ cfg: FitConfiguration) throws -> MixtureRound {
        var s = statistics
        s.configuration = cfg
        return try MixtureRound(statistics: s)
    }

    /// Every shard's E-step against a round, merged.
    static func step(_ round: MixtureRound, _ parts: [InMemoryActivations]) throws -> MixtureStep {
        var all = try round.expectation(of: parts[0])
        for i in 1..<parts.count { try all.merge(try round.expectation(of: parts[i], firstIndex: cuts[i])) }
        return all
    }

    static func configuration(_ family: DensityFamilyName) -> FitConfiguration {
        var cfg = FitConfiguration(
            family: family,
            preparation: PreparationOptions(projection: .components(16)),
            layerName: "h1"
        )
        cfg.mixture.components = 4
        cfg.mixture.reservoirSize = 200
        cfg.calibrationFraction = 0
        return cfg
    }

    /// Round 0 from the shards' statistics (as files), then E-steps per shard and merges (as files) until EM is
    /// finished: the same iterations and log-likelihoods as one pass (to 1e-12 relative), the same reservoir sample
    /// bit for bit, and scores equal to 1e-9 relative.
    @Test(arguments: [DensityFamilyName.gmmFull, .gmmDiagonal])
    func roundsAcrossShardsFitLikeOnePass(family: DensityFamilyName) throws {
        let (values, rows, dim, parts) = try Self.shards("h1")
        let cfg = Self.configuration(family)
        let calibration = InMemoryActivations(
            values: try Fixtures.activations("calibration", "h1").values,
            shape: [dim]
        )
        let whole = try LatentModelFitter.fit(
            InMemoryActivations(values: values, shape: [dim]),
            calibration: calibration,
            configuration: cfg
        )
        let onePass = try LatentModelFitter.statistics(
            of: InMemoryActivations(values: values, shape: [dim]),
            configuration: cfg
        )
        var merged: ActivationStatistics?
        for (i, part) in parts.enumerated() {
            let s = try LatentModelFitter.statistics(of: part, configuration: cfg, firstIndex: Self.cuts[i])
            let back = try StatisticsFile.decode(try StatisticsFile.encode(s))
            #expect(back.reservoirKeys == s.reservoirKeys && back.reservoir == s.reservoir)
            if merged == nil { merged = back } else { try merged!.merge(back) }
        }
        let all = try #require(merged)
        #expect(all.rows == [0..<rows])
        #expect(all.reservoirKeys.count == 200)
        #expect(all.reservoirKeys == onePass.reservoirKeys && all.reservoir == onePass.reservoir)

        var round = try MixtureRound(statistics: all)
        while !round.finished {
            var step: MixtureStep?
            for (i, part) in parts.enumerated() {
                let e = try round.expectation(of: part, firstIndex: Self.cuts[i])
                let back = try #require(
                    {
                        if case .mixtureStep(let s) = try StatisticsFile.decodeContents(try StatisticsFile.encode(e)) {
                            return s
                        }
                        return nil
                    }()
                )
                if step == nil { step = back } else { try step!.merge(back) }
            }
            let next = try round.advanced(by: try #require(step))
            guard case .mixtureRound(let back) = try StatisticsFile.decodeContents(try StatisticsFile.encode(next))
            else {
                Issue.record("a round does not decode as a round")
                return
            }
            #expect(back.fingerprint == next.fingerprint && back.logLikelihoods == next.logLikelihoods)
            round = back
        }
        #expect(round.converged)
        let sharded = try LatentModelFitter.fit(mixture: round, calibration: calibration)
        let notes = sharded.metadata.notes
        let wholeNotes = whole.metadata.notes
        #expect(
            notes.prefix(while: { $0 != "," }) == wholeNotes.prefix(while: { $0 != "," }),
            "\(notes) / \(wholeNotes)"
        )
        let l1 = Double(wholeNotes.components(separatedBy: "mean log-likelihood ").last!.prefix { $0 != ";" })!
        #expect(abs(round.logLikelihoods.last! - l1) <= 1e-12 * abs(l1), "\(round.logLikelihoods) / \(wholeNotes)")
        #expect(sharded.metadata.fitSamples == whole.metadata.fitSamples)
        #expect(sharded.metadata.calibrationSamples == whole.metadata.calibrationSamples)
        var worst = 0.0
        for (x, y) in zip(
            try ModelFileTests.allScores(whole, "test", "h1"),
            try ModelFileTests.allScores(sharded, "test", "h1")
        ) {
            worst = max(worst, abs(x.logDensity - y.logDensity) / max(1, abs(x.logDensity)))
            worst = max(worst, abs(x.relativeMahalanobis - y.relativeMahalanobis) / max(1, abs(x.relativeMahalanobis)))
        }
        #expect(worst <= 1e-9, "largest relative score difference \(worst)")
        print("sharded \(family): \(round.round) rounds, largest relative score difference \(worst)")
    }

    /// Mistakes a driver loop can make are refused with a message that says what happened: a step of an older round,
    /// a shard missing or counted twice, another layer's step, a model from an unfinished round, a step after EM
    /// finished, several restarts, activations of another shape.
    @Test func roundMistakesAreRefused() throws {
        let (_, _, dim, parts) = try Self.shards("h1")
        var cfg = Self.configuration(.gmmDiagonal)
        var merged = try LatentModelFitter.statistics(of: parts[0], configuration: cfg)
        for i in 1..<3 {
            try merged.merge(
                try LatentModelFitter.statistics(of: parts[i], configuration: cfg, firstIndex: Self.cuts[i])
            )
        }
        let r0 = try MixtureRound(statistics: merged)
        let steps = try parts.enumerated().map { i, p in try r0.expectation(of: p, firstIndex: Self.cuts[i]) }
        let all = try Self.step(r0, parts)
        let r1 = try r0.advanced(by: all)
        #expect(r1.round == 1 && r1.fingerprint != r0.fingerprint)

        let stale = #expect(throws: LatentWatchError.self) { try r1.advanced(by: all) }
        #expect(stale?.message.contains("against round 0") == true, "\(stale?.message ?? "")")
        var missing = steps[0]
        try missing.merge(steps[2])
        let gap = #expect(throws: LatentWatchError.self) { try r0.advanced(by: missing) }
        #expect(gap?.message.contains("cover rows") == true, "\(gap?.message ?? "")")
        var twice = steps[0]
        let overlap = #expect(throws: LatentWatchError.self) { try twice.merge(steps[0]) }
        #expect(overlap?.message.contains("in two") == true, "\(overlap?.message ?? "")")
        let unfinished = #expect(throws: LatentWatchError.self) {
            try LatentModelFitter.fit(mixture: r1, calibration: parts[0])
        }
        #expect(unfinished?.message.contains("not converged") == true, "\(unfinished?.message ?? "")")
        let shape = #expect(throws: LatentWatchError.self) {
            try r0.expectation(of: InMemoryActivations(values: [Float](repeating: 0, count: 2 * 7), shape: [7]))
        }
        #expect(shape?.message.contains("shape") == true)
        let nan = #expect(throws: LatentWatchError.self) {
            try r0.expectation(of: InMemoryActivations(values: [Float](repeating: .nan, count: dim), shape: [dim]))
        }
        #expect(nan?.message.contains("nan") == true, "\(nan?.message ?? "")")

        // A step of another dimension or component count that claims this round (a crafted file could) is refused
        // by the M-step's own checks, and does not merge with a step of this round.
        for (k, pca) in [(4, 8), (3, 16)] {
            var other = cfg
            other.mixture.components = k
            other.preparation.projection = .components(pca)
            var s = try LatentModelFitter.statistics(of: parts[0], configuration: other)
            for i in 1..<3 {
                try s.merge(
                    try LatentModelFitter.statistics(of: parts[i], configuration: other, firstIndex: Self.cuts[i])
                )
            }
            let foreignSteps = try Self.step(try MixtureRound(statistics: s), parts)
            let crafted = #expect(throws: LatentWatchError.self) {
                try r0.advanced(by: foreignSteps.relabelled(for: r0))
            }
            #expect(crafted?.message.contains("components of dimension") == true, "\(crafted?.message ?? "")")
            var mixed = steps[0]
            #expect(throws: LatentWatchError.self) { try mixed.merge(foreignSteps.relabelled(for: r0)) }
        }

        var h2 = cfg
        h2.layerName = "h2"
        let otherLayer = try Self.round(merged, h2)
        var foreign = try otherLayer.expectation(of: parts[0])
        #expect(throws: LatentWatchError.self) { try foreign.merge(steps[1]) }

        var done = cfg
        done.mixture.maxIterations = 1
        let oneRound = try Self.round(merged, done)
        let finished = try oneRound.advanced(by: try Self.step(oneRound, parts))
        #expect(finished.finished && !finished.converged)
        #expect(throws: LatentWatchError.self) { try finished.expectation(of: parts[0]) }
        _ = try LatentModelFitter.fit(mixture: finished, calibration: parts[0])

        cfg.mixture.restarts = 3
        let restarts = #expect(throws: LatentWatchError.self) { try Self.round(merged, cfg) }
        #expect(restarts?.message.contains("one start") == true)
        #expect(throws: LatentWatchError.self) {
            try MixtureRound(
                statistics: try LatentModelFitter.statistics(of: parts[0], configuration: Self.configuration(.gda))
            )
        }
    }

    /// Damaged round and E-step files are refused, never a crash: every truncation, and single-byte changes at 300
    /// seeded positions each with the checksums switched off so that the metadata and tensor checks are reached. A
    /// statistics reader given a round or a step says what it was given.
    @Test func damagedRoundFilesAreRefused() throws {
        let (_, _, _, parts) = try Self.shards("h1")
        let cfg = Self.configuration(.gmmFull)
        let r0 = try MixtureRound(statistics: try LatentModelFitter.statistics(of: parts[0], configuration: cfg))
        let r1 = try r0.advanced(by: try r0.expectation(of: parts[0]))
        let files = [
            ("round", try StatisticsFile.encode(r1)),
            ("step", try StatisticsFile.encode(try r1.expectation(of: parts[0]))),
            (
                "statistics",
                try StatisticsFile.encode(try LatentModelFitter.statistics(of: parts[1], configuration: cfg))
            ),
        ]
        for (name, good) in files {
            _ = try StatisticsFile.decodeContents(good)
            for n in stride(from: 0, to: good.count, by: max(1, good.count / 150)) {
                #expect(throws: LatentWatchError.self, "\(name) cut at \(n)") {
                    try StatisticsFile.decodeContents(Array(good.prefix(n)))
                }
            }
            var seed: UInt64 = 0x524F_554E
            var accepted = 0
            for _ in 0..<300 {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                var b = good
                let i = Int(seed >> 33) % b.count
                b[i] ^= UInt8(truncatingIfNeeded: (seed >> 13) | 1)
                if let c = try? StatisticsFile.decodeContents(b, verifyChecksums: false) {
                    accepted += 1
                    // What decodes must not crash the next step either.
                    if case .mixtureRound(let r) = c, !r.finished { _ = try? r.expectation(of: parts[1]) }
                }
                #expect(throws: LatentWatchError.self) { try StatisticsFile.decodeContents(b) }
            }
            print("damaged \(name) files: \(300 - accepted) of 300 changes refused even without checksums")
        }
        let asStatistics = #expect(throws: LatentWatchError.self) { try StatisticsFile.decode(files[0].1) }
        #expect(asStatistics?.message.contains("round 1 of a sharded mixture fit") == true)
        let asModel = #expect(throws: LatentWatchError.self) { try ModelFile.decode(files[1].1) }
        #expect(asModel != nil)
    }
}
