import LatentWatch
import LatentWatchNumerics
import Testing

@Suite struct BatchScoringTests {
    /// The blocked BLAS batch path (several row blocks of W, so the GEMM part runs) equals single-sample scoring.
    @Test(arguments: [DensityFamilyName.gda, .gmmFull])
    func blockedBatchEqualsSingleSample(family: DensityFamilyName) throws {
        let d = 300
        let n = 900
        var g = SeededRandom(seed: 11)
        var values = [Float](repeating: 0, count: n * d)
        for i in 0..<(n * d) { values[i] = Float(g.normal()) + (i / d % 3 == 0 ? 1 : 0) }
        let labels = (0..<n).map { $0 % 3 }
        let model = try LatentModelFitter.fit(
            InMemoryActivations(values: values, shape: [d], labels: labels),
            configuration: FitConfiguration(family: family, mixture: MixtureOptions(components: 3, maxIterations: 5))
        )
        let ws = model.makeWorkspace()
        let rows = 40
        let batch = Array(values[0..<(rows * d)])
        let results = batch.withUnsafeBufferPointer { model.scoreBatch($0, count: rows, workspace: ws) }
        for (i, r) in results.enumerated() {
            let b = try r.get()
            let s = try Array(batch[(i * d)..<((i + 1) * d)]).withUnsafeBufferPointer {
                try model.score($0, workspace: ws)
            }
            // float32 products in different orders (BLAS vs the packed kernel): 1e-4 relative.
            #expect(abs(b.logDensity - s.logDensity) <= 1e-4 * max(1, abs(s.logDensity)), "row \(i)")
            #expect(abs(b.mahalanobis - s.mahalanobis) <= 1e-4 * max(1, s.mahalanobis), "row \(i)")
            #expect(abs(b.relativeMahalanobis - s.relativeMahalanobis) <= 1e-3 * max(1, abs(s.mahalanobis)), "row \(i)")
        }
    }
}
