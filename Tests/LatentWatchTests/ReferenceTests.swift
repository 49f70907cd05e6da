import Foundation
import LatentWatch
import Testing

/// Swift results held to numpy/scipy/scikit-learn values on real activations (Tests/Reference/make_fixtures.py).
/// Tolerances: log-densities 1e-4 relative, posteriors and entropies 1e-5 absolute, GMM mean log-likelihood
/// 1e-3 absolute, PCA subspace equal up to sign (|cos| >= 1 - 1e-5).
@Suite struct ReferenceTests {
    static let fixedRegularization = Regularization(shrinkage: .fixed(0.1), floorRatio: 1e-6, ridge: 0)

    func fit(
        _ family: DensityFamilyName,
        layer: String,
        preparation: PreparationOptions = .raw
    ) throws -> LatentModel {
        let train = try Fixtures.activations("train", layer)
        let cal = try Fixtures.activations("calibration", layer)
        let source = InMemoryActivations(
            values: train.values,
            shape: [train.dim],
            labels: try Fixtures.labels("train"),
            batchSize: 100
        )
        let calSource = InMemoryActivations(values: cal.values, shape: [cal.dim])
        let cfg = FitConfiguration(
            family: family,
            preparation: preparation,
            regularization: Self.fixedRegularization,
            layerName: layer
        )
        return try LatentModelFitter.fit(source, calibration: calSource, configuration: cfg)
    }

    func scores(
        _ model: LatentModel,
        split: String,
        layer: String
    ) throws -> (scores: [LatentScores], posteriors: [[Double]]) {
        let x = try Fixtures.activations(split, layer)
        let ws = model.makeWorkspace()
        var out: [LatentScores] = []
        var post: [[Double]] = []
        for i in 0..<x.rows {
            let row = Array(x.values[(i * x.dim)..<((i + 1) * x.dim)])
            out.append(try row.withUnsafeBufferPointer { try model.score($0, workspace: ws) })
            post.append(Array(ws.posterior))
        }
        return (out, post)
    }

    static func expectRelative(_ a: [Double], _ b: [Double], _ tol: Double, _ what: String) {
        #expect(a.count == b.count, "\(what): count")
        var worst = 0.0
        for (x, y) in zip(a, b) { worst = max(worst, abs(x - y) / max(abs(y), 1)) }
        #expect(worst <= tol, "\(what): worst relative error \(worst) > \(tol)")
    }

    static func expectAbsolute(_ a: [Double], _ b: [Double], _ tol: Double, _ what: String) {
        #expect(a.count == b.count, "\(what): count")
        var worst = 0.0
        for (x, y) in zip(a, b) { worst = max(worst, abs(x - y)) }
        #expect(worst <= tol, "\(what): worst absolute error \(worst) > \(tol)")
    }

    @Test(arguments: ["gda", "tied"], ["h1", "h2"])
    func classConditionalMatchesReference(family: String, layer: String) throws {
        let model = try fit(DensityFamilyName(family), layer: layer)
        for split in ["test", "ood_digits"] {
            let (s, post) = try scores(model, split: split, layer: layer)
            let p = "\(family)_\(layer)_\(split)"
            Self.expectRelative(s.map(\.logDensity), try Fixtures.ref("\(p)_logpx"), 1e-4, "\(p) log p(x)")
            Self.expectAbsolute(post.flatMap { $0 }, try Fixtures.ref("\(p)_posterior"), 1e-5, "\(p) posterior")
            Self.expectAbsolute(s.map(\.entropy), try Fixtures.ref("\(p)_entropy"), 1e-5, "\(p) entropy")
            Self.expectRelative(s.map(\.mahalanobis), try Fixtures.ref("\(p)_maha_min"), 1e-4, "\(p) Mahalanobis")
            Self.expectRelative(
                s.map(\.relativeMahalanobis),
                try Fixtures.ref("\(p)_rmd"),
                1e-4,
                "\(p) relative Mahalanobis"
            )
        }
    }

    @Test func pcaSubspaceMatchesReference() throws {
        let model = try fit(
            .gda,
            layer: "h1",
            preparation: PreparationOptions(l2Normalize: false, projection: .components(16))
        )
        let comps = model.preparation.projectionComponents!
        let ref = try Fixtures.ref("pca_h1_components")
        let refValues = try Fixtures.ref("pca_h1_eigenvalues")
        for c in 0..<16 {
            var dot = 0.0
            for j in 0..<128 { dot += Double(comps[c * 128 + j]) * ref[c * 128 + j] }
            #expect(abs(abs(dot) - 1) <= 1e-5, "component \(c): |cos| = \(abs(dot))")
            #expect(
                abs(model.preparation.projectionVariances![c] - refValues[c]) <= 1e-6 * max(1, refValues[c]),
                "eigenvalue \(c)"
            )
        }
        // Variance fraction picks the same count as numpy.
        let m95 = try fit(
            .gda,
            layer: "h1",
            preparation: PreparationOptions(l2Normalize: false, projection: .varianceFraction(0.95))
        )
        #expect(m95.preparation.outputDimension == Int(try Fixtures.ref("pca_h1_n95")[0]))
    }

    @Test func l2ThenPCAThenGDAMatchesReference() throws {
        let model = try fit(
            .gda,
            layer: "h1",
            preparation: PreparationOptions(l2Normalize: true, projection: .components(16))
        )
        for split in ["test", "ood_digits"] {
            let (s, _) = try scores(model, split: split, layer: "h1")
            Self.expectRelative(
                s.map(\.logDensity),
                try Fixtures.ref("l2pca16_gda_h1_\(split)_logpx"),
                1e-4,
                "l2pca16 \(split)"
            )
        }
    }

    @Test(arguments: [GaussianMixture.Covariance.full, .diagonal])
    func mixtureMatchesScikitLearn(covariance: GaussianMixture.Covariance) throws {
        let tag = covariance == .full ? "full" : "diag"
        let train = try Fixtures.activations("train", "h2")
        let init_ = MixtureOptions.Initialization.explicit(
            weights: try Fixtures.ref("gmm_\(tag)_h2_init_weights"),
            means: try Fixtures.ref("gmm_\(tag)_h2_init_means"),
            covariances: try Fixtures.ref("gmm_\(tag)_h2_init_covariances")
        )
        let cfg = FitConfiguration(
            family: covariance == .full ? .gmmFull : .gmmDiagonal,
            preparation: .raw,
            mixtureRegularization: Regularization(shrinkage: .fixed(0), floorRatio: 0, ridge: 1e-4),
            mixture: MixtureOptions(
                components: 5,
                tolerance: 1e-6,
                maxIterations: 1000,
                initialization: init_
            ),
            calibrationFraction: 0,
            fitBackground: false
        )
        let model = try LatentModelFitter.fit(
            InMemoryActivations(values: train.values, shape: [64], batchSize: 128),
            configuration: cfg
        )
        let ws = model.makeWorkspace()
        var total = 0.0
        for i in 0..<train.rows {
            total += try Array(train.values[(i * 64)..<((i + 1) * 64)]).withUnsafeBufferPointer {
                try model.score($0, workspace: ws)
            }.logDensity
        }
        let mean = total / Double(train.rows)
        let ref = try Fixtures.ref("gmm_\(tag)_h2_train_score")[0]
        #expect(abs(mean - ref) <= 1e-3, "mean log-likelihood \(mean) vs scikit-learn \(ref)")
        #expect(
            model.metadata.notes.contains("em: \(Int(try Fixtures.ref("gmm_\(tag)_h2_n_iter")[0])) iterations"),
            "\(model.metadata.notes)"
        )
        // Per-sample test scores agree too (float32 parameters: 1e-4 relative).
        let (s, _) = try scores(model, split: "test", layer: "h2")
        Self.expectRelative(
            s.map(\.logDensity),
            try Fixtures.ref("gmm_\(tag)_h2_test_score_samples"),
            1e-4,
            "gmm \(tag) test"
        )
    }
}
