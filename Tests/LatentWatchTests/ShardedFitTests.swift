import Foundation
import Testing

@testable import LatentWatch

@Suite struct ShardedFitTests {
    /// Two replicas each gather statistics on their half; merged, they fit the same model as one pass.
    @Test(arguments: [DensityFamilyName.gda, .tied])
    func mergedShardsFitLikeOnePass(family: DensityFamilyName) throws {
        let train = try Fixtures.activations("train", "h1")
        let labels = try Fixtures.labels("train")
        let cal = try Fixtures.activations("calibration", "h1")
        let calibration = InMemoryActivations(values: cal.values, shape: [128])
        let cfg = FitConfiguration(family: family, preparation: PreparationOptions(projection: .components(32)))
        let whole = try LatentModelFitter.fit(
            InMemoryActivations(values: train.values, shape: [128], labels: labels),
            calibration: calibration,
            configuration: cfg
        )
        let half = 300
        var a = try LatentModelFitter.statistics(
            of: InMemoryActivations(
                values: Array(train.values[0..<(half * 128)]),
                shape: [128],
                labels: Array(labels[0..<half])
            ),
            configuration: cfg
        )
        let b = try LatentModelFitter.statistics(
            of: InMemoryActivations(
                values: Array(train.values[(half * 128)...]),
                shape: [128],
                labels: Array(labels[half...])
            ),
            configuration: cfg,
            firstIndex: half
        )
        try a.merge(b)
        #expect(a.fitSamples == train.rows)
        let sharded = try LatentModelFitter.fit(statistics: a, calibration: calibration, configuration: cfg)
        #expect(sharded.density.regularization.map(\.shrinkage) == whole.density.regularization.map(\.shrinkage))
        let s1 = try ModelFileTests.allScores(whole, "test", "h1")
        let s2 = try ModelFileTests.allScores(sharded, "test", "h1")
        for (x, y) in zip(s1, s2) {
            #expect(abs(x.logDensity - y.logDensity) <= 1e-5 * max(1, abs(x.logDensity)))
        }
        // Statistics of another configuration do not merge.
        let other = try LatentModelFitter.statistics(
            of: InMemoryActivations(
                values: Array(train.values[0..<(10 * 128)]),
                shape: [128],
                labels: Array(labels[0..<10])
            ),
            configuration: FitConfiguration(family: family, preparation: PreparationOptions(l2Normalize: true))
        )
        #expect(throws: LatentWatchError.self) { try a.merge(other) }
        #expect(throws: LatentWatchError.self) {
            try LatentModelFitter.fit(
                statistics: a,
                calibration: calibration,
                configuration: FitConfiguration(family: .gmmFull, preparation: cfg.preparation)
            )
        }
    }

    /// Three shards' statistics written as files and read back hold the same moments bit for bit; merged, they fit
    /// the model one pass fits. Overlapping shards, another layer's shards and the wrong kind of file are refused with a message that says so.
    @Test func statisticsFilesRoundTripAndMerge() throws {
        let train = try Fixtures.activations("train", "h1")
        let labels = try Fixtures.labels("train")
        let cal = try Fixtures.activations("calibration", "h1")
        let calibration = InMemoryActivations(
            values: cal.values,
            shape: [128],
            labels: try Fixtures.labels("calibration")
        )
        let cfg = FitConfiguration(family: .gda, layerName: "h1")
        func shard(_ r: Range<Int>, _ c: FitConfiguration = cfg) throws -> ActivationStatistics {
            try LatentModelFitter.statistics(
                of: InMemoryActivations(
                    values: Array(train.values[(r.lowerBound * 128)..<(r.upperBound * 128)]),
                    shape: [128],
                    labels: Array(labels[r])
                ),
                configuration: c,
                firstIndex: r.lowerBound
            )
        }
        let cuts = [0, 200, 450, train.rows]
        var merged: ActivationStatistics?
        for i in 0..<3 {
            let s = try shard(cuts[i]..<cuts[i + 1])
            let back = try StatisticsFile.decode(try StatisticsFile.encode(s))
            #expect(back.rows == [cuts[i]..<cuts[i + 1]])
            #expect(back.fitSamples == s.fitSamples)
            #expect(back.classLabels == s.classLabels)
            for label in s.classLabels {
                let (a, b) = (s.classes[label]!, back.classes[label]!)
                for (x, y) in [(a.train, b.train), (a.validation, b.validation)] {
                    #expect(x.weight == y.weight && x.count == y.count && x.mean == y.mean)
                    let d = x.dimension
                    #expect(
                        (0..<d).allSatisfy { i in
                            (0...i).allSatisfy { x.scatterLower[i * d + $0] == y.scatterLower[i * d + $0] }
                        }
                    )
                }
            }
            #expect(back.configuration.family == .gda && back.configuration.layerName == "h1")
            #expect(back.configuration.regularization == cfg.regularization)
            if merged == nil { merged = back } else { try merged!.merge(back) }
        }
        let all = try #require(merged)
        #expect(all.rows == [0..<train.rows])
        let sharded = try LatentModelFitter.fit(
            statistics: all,
            calibration: calibration,
            configuration: all.configuration
        )
        var onePass = cfg
        onePass.calibrationFraction = 0
        let whole = try LatentModelFitter.fit(
            InMemoryActivations(values: train.values, shape: [128], labels: labels),
            calibration: calibration,
            configuration: onePass
        )
        #expect(sharded.density.regularization.map(\.shrinkage) == whole.density.regularization.map(\.shrinkage))
        let t1 = try #require(whole.posteriorTemperature)
        let t2 = try #require(sharded.posteriorTemperature)
        #expect(abs(t1 - t2) <= 1e-6 * t1)
        for (x, y) in zip(
            try ModelFileTests.allScores(whole, "test", "h1"),
            try ModelFileTests.allScores(sharded, "test", "h1")
        ) {
            #expect(abs(x.logDensity - y.logDensity) <= 1e-5 * max(1, abs(x.logDensity)))
        }
        // A shard merged twice, another layer's shard, and the wrong kind of file.
        var twice = try shard(0..<200)
        let overlap = #expect(throws: LatentWatchError.self) { try twice.merge(try shard(100..<300)) }
        #expect(overlap?.message.contains("rows 100..<200 are in two") == true, "\(overlap?.message ?? "")")
        var h2 = cfg
        h2.layerName = "h2"
        let layer = #expect(throws: LatentWatchError.self) { try twice.merge(try shard(200..<300, h2)) }
        #expect(layer?.message.contains("another fit") == true)
        let statsBytes = try StatisticsFile.encode(all)
        let asModel = #expect(throws: LatentWatchError.self) { try ModelFile.decode(statsBytes) }
        #expect(asModel?.message.contains("statistics file") == true, "\(asModel?.message ?? "")")
        let asStats = #expect(throws: LatentWatchError.self) { try StatisticsFile.decode(try ModelFile.encode(whole)) }
        #expect(asStats?.message.contains("model file") == true, "\(asStats?.message ?? "")")
    }

    /// Damaged statistics files are refused, never a crash: every truncation, and single-byte changes at 400
    /// seeded positions with the checksums switched off so that the metadata and tensor checks are reached.
    @Test func damagedStatisticsFilesAreRefused() throws {
        let train = try Fixtures.activations("train", "h2")
        let labels = try Fixtures.labels("train")
        let s = try LatentModelFitter.statistics(
            of: InMemoryActivations(
                values: Array(train.values[0..<(100 * 64)]),
                shape: [64],
                labels: Array(labels[0..<100])
            ),
            configuration: FitConfiguration(family: .tied, layerName: "h2")
        )
        let good = try StatisticsFile.encode(s)
        for n in stride(from: 0, to: good.count, by: max(1, good.count / 200)) {
            #expect(throws: LatentWatchError.self) { try StatisticsFile.decode(Array(good.prefix(n))) }
        }
        var seed: UInt64 = 0x5747_4154
        var accepted = 0
        for _ in 0..<400 {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            var b = good
            let i = Int(seed >> 33) % b.count
            b[i] ^= UInt8(truncatingIfNeeded: (seed >> 13) | 1)
            if (try? StatisticsFile.decode(b, verifyChecksums: false)) != nil { accepted += 1 }
            #expect(throws: LatentWatchError.self) { try StatisticsFile.decode(b) }
        }
        print("damaged statistics: \(400 - accepted) of 400 changes refused even without checksums")
    }

    /// Files with valid checksums whose metadata lies are refused, never a trap: no class, counts that overflow when
    /// added, counts the classes do not add up to, overlapping row ranges, a huge dimension in a small file. And
    /// unlabelled activations cannot make gda statistics.
    @Test func craftedStatisticsFilesAreRefused() throws {
        let train = try Fixtures.activations("train", "h2")
        let labels = try Fixtures.labels("train")
        let s = try LatentModelFitter.statistics(
            of: InMemoryActivations(
                values: Array(train.values[0..<(60 * 64)]),
                shape: [64],
                labels: Array(labels[0..<60])
            ),
            configuration: FitConfiguration(family: .tied, layerName: "h2")
        )
        let good = try StatisticsFile.encode(s)
        let file = try CraftedStatistics(good)
        let meta = file.meta
        var moments = meta["moments"] as! [[String: Any]]
        let globalOnly = moments.filter { $0["label"] == nil || $0["label"] is NSNull }
        let cases: [(String, ([String: Any]) -> [String: Any], String)] = [
            (
                "no class",
                {
                    var m = $0
                    m["moments"] = globalOnly
                    return m
                }, "no class"
            ),
            (
                "counts that overflow",
                {
                    var m = $0
                    m["rows"] = [[0, Int.max]]
                    m["samples"] = Int.max
                    return m
                }, "samples"
            ),
            (
                "classes that do not add up",
                {
                    var m = $0
                    var ms = m["moments"] as! [[String: Any]]
                    ms[0]["count"] = (ms[0]["count"] as! Int) + 1
                    m["moments"] = ms
                    return m
                }, "count"
            ),
            (
                "overlapping ranges",
                {
                    var m = $0
                    m["rows"] = [[0, 40], [30, 50]]
                    return m
                }, "overlap"
            ),
            (
                "a huge dimension",
                {
                    var m = $0
                    m["input_shape"] = [16000]
                    m["dimension"] = 16000
                    return m
                }, "MiB"
            ),
        ]
        for (name, change, says) in cases {
            let bytes = try file.bytes { m in m = change(m) }
            let e = #expect(throws: LatentWatchError.self, "\(name)") { try StatisticsFile.decode(bytes) }
            #expect(e?.message.contains(says) == true, "\(name): \(e?.message ?? "")")
        }
        moments.removeAll()
        #expect(throws: LatentWatchError.self) {
            try LatentModelFitter.statistics(
                of: InMemoryActivations(values: Array(train.values[0..<(60 * 64)]), shape: [64]),
                configuration: FitConfiguration(family: .gda)
            )
        }
        #expect(throws: LatentWatchError.self) {
            try LatentModelFitter.statistics(
                of: InMemoryActivations(
                    values: Array(train.values[0..<(60 * 64)]),
                    shape: [64],
                    labels: Array(labels[0..<60])
                ),
                configuration: FitConfiguration(family: .gda),
                firstIndex: Int.max - 10
            )
        }
    }
}
