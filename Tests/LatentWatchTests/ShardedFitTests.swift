import LatentWatch
import Testing

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
}
