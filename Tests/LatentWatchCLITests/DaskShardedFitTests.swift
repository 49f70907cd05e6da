import Foundation
import LatentWatch
import LatentWatchTestSupport
import Testing

/// Samples/Dask/sharded_fit.py on a real `dask.distributed` LocalCluster of 2 worker processes: three shards of the
/// digits MLP's training activations, one `fit --statistics-only` task each, merged on the workers, give the model
/// a single-pass `latentwatch fit --calibration` gives. dask and distributed come from PyPI (`.ci/run` installs
/// them); where they are missing the test says so and skips.
@Suite(.serialized) struct DaskShardedFitTests {
    /// python3 in the package root: exit status, and stdout followed by stderr.
    static func python(
        _ arguments: [String],
        environment: [String: String] = [:]
    ) throws -> (status: Int32, out: String) {
        let r = try CLI.runTool("/usr/bin/env", ["python3"] + arguments, environment: environment)
        return (r.status, r.out + r.err)
    }

    /// Largest |a - b| over largest |a| (0 when both are all zero).
    static func relative(_ a: [Double], _ b: [Double]) -> Double {
        let scale = a.map(abs).max() ?? 0
        let diff = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        return scale > 0 ? diff / scale : diff
    }

    /// Three shards of the digits MLP's h1 training activations and labels (x0..x2.npy, y0..y2.npy) in a new
    /// directory, or nil (the test skips) when dask.distributed is not installed.
    static func shards() throws -> URL? {
        guard try python(["-c", "import dask.distributed"]).status == 0 else {
            print("dask.distributed is not installed: the Dask recipe test is skipped (.ci/run installs it)")
            return nil
        }
        let dir = CLI.temporaryDirectory()
        let data = CLI.data.path
        let split = try python([
            "-c",
            """
            import numpy as np
            x = np.load('\(data)/train_h1.npy'); y = np.load('\(data)/train_labels.npy')
            cuts = [0, 200, 450, len(x)]
            for i in range(3):
                np.save('\(dir.path)/x%d.npy' % i, x[cuts[i]:cuts[i + 1]])
                np.save('\(dir.path)/y%d.npy' % i, y[cuts[i]:cuts[i + 1]])
            """,
        ])
        #expect(split.status == 0, "\(split.out)")
        return dir
    }

    /// `cli`: the executable on the workers; `python`: the Python package in process (Sources/Python with the
    /// library this build made), its Statistics pickled between workers.
    @Test(arguments: ["cli", "python"]) func daskRecipeFitsWhatOnePassFits(engine: String) throws {
        guard let dir = try Self.shards() else { return }
        let data = CLI.data.path
        let recipe = try Self.python(
            [
                "Samples/Dask/sharded_fit.py", "--latentwatch", CLI.executable, "--workers", "2", "--engine", engine,
                "--calibration", "\(data)/calibration_h1.npy", "--calibration-labels", "\(data)/calibration_labels.npy",
                "--layer", "h1", "--output", dir.appendingPathComponent("dask.lwm").path,
                "--statistics-output", dir.appendingPathComponent("dask.lws").path,
            ] + (0..<3).flatMap { ["--shard", "\(dir.path)/x\($0).npy:\(dir.path)/y\($0).npy"] },
            environment: [
                "PYTHONPATH": CLI.root.appendingPathComponent("Sources/Python").path,
                "LATENTWATCH_LIBRARY": CLI.product("libLatentWatchC.so"),
            ]
        )
        #expect(recipe.status == 0, "\(recipe.out)")
        #expect(recipe.out.contains("3 shards on a LocalCluster of 2 workers (\(engine) engine)"), "\(recipe.out)")
        // One pass over the same rows: statistics, and the model.
        let common = ["--activations", "\(data)/train_h1.npy", "--labels", "\(data)/train_labels.npy", "--layer", "h1"]
        let stats = try CLI.run(
            ["fit"] + common + ["--statistics-only", "--output", dir.appendingPathComponent("whole.lws").path]
        )
        #expect(stats.status == 0, "\(stats.err)")
        let inspected = try CLI.run(["inspect", dir.appendingPathComponent("whole.lws").path])
        #expect(inspected.out.contains("rows:        649 (0..<649)"), "\(inspected.out)")
        let fit = try CLI.run(
            ["fit"] + common + [
                "--calibration", "\(data)/calibration_h1.npy", "--calibration-labels", "\(data)/calibration_labels.npy",
                "--output", dir.appendingPathComponent("single.lwm").path,
            ]
        )
        #expect(fit.status == 0, "\(fit.err)")

        // The merged statistics equal one pass's to 1e-9 relative (the weights and counts exactly).
        let merged = try StatisticsFile.read(contentsOf: dir.appendingPathComponent("dask.lws").path)
        let whole = try StatisticsFile.read(contentsOf: dir.appendingPathComponent("whole.lws").path)
        #expect(merged.rows == [0..<649] && whole.rows == [0..<649])
        #expect(merged.classLabels == whole.classLabels)
        var worst = 0.0
        for label in whole.classLabels {
            let (a, b) = (whole.classes[label]!, merged.classes[label]!)
            for (x, y) in [(a.train, b.train), (a.validation, b.validation)] {
                #expect(x.weight == y.weight && x.count == y.count, "class \(label)")
                worst = max(worst, Self.relative(x.mean, y.mean), Self.relative(x.scatterSymmetric, y.scatterSymmetric))
            }
        }
        print("dask (\(engine)): merged statistics within \(worst) relative of one pass")
        #expect(worst <= 1e-9)

        // The models: the same shrinkage per class, posterior temperature and scores (1e-6 relative).
        let m1 = try ModelFile.read(contentsOf: dir.appendingPathComponent("single.lwm").path)
        let m2 = try ModelFile.read(contentsOf: dir.appendingPathComponent("dask.lwm").path)
        #expect(m1.density.regularization.map(\.shrinkage) == m2.density.regularization.map(\.shrinkage))
        let t1 = try #require(m1.posteriorTemperature)
        let t2 = try #require(m2.posteriorTemperature)
        #expect(abs(t1 - t2) <= 1e-6 * t1)
        let test = try TensorFile(path: "\(data)/test_h1.npy")
        let x = try test.floats(test.tensor(nil).name)
        var scoreDiff = 0.0
        for r in 0..<(x.count / 128) {
            let row = Array(x[(r * 128)..<((r + 1) * 128)])
            let (s1, s2) = (try m1.score(row), try m2.score(row))
            scoreDiff = max(
                scoreDiff,
                abs(s1.surprise - s2.surprise) / max(1, abs(s1.surprise)),
                abs(s1.entropy - s2.entropy) / max(1e-12, s1.entropy)
            )
        }
        print("dask (\(engine)): scores of \(x.count / 128) test inputs within \(scoreDiff) relative")
        #expect(scoreDiff <= 1e-6)
    }

    /// A mixture by EM rounds on the cluster (one E-step task per shard and round, the M-step on a worker), with the
    /// executable and with the Python package: the same rounds as one pass's iterations, and scores equal to 1e-6
    /// relative.
    @Test(arguments: [("gmm-full", "cli"), ("gmm-diag", "python")])
    func daskRecipeFitsMixturesInRounds(family: String, engine: String) throws {
        guard let dir = try Self.shards() else { return }
        let data = CLI.data.path
        let options = ["--components", "4", "--pca", "16", "--layer", "h1"]
        let recipe = try Self.python(
            [
                "Samples/Dask/sharded_fit.py", "--latentwatch", CLI.executable, "--workers", "2", "--family", family,
                "--engine", engine, "--calibration", "\(data)/calibration_h1.npy",
                "--output", dir.appendingPathComponent("dask.lwm").path,
                "--fit-option=--components=4", "--fit-option=--pca=16", "--layer", "h1",
            ] + (0..<3).flatMap { ["--shard", "\(dir.path)/x\($0).npy"] },
            environment: [
                "PYTHONPATH": CLI.root.appendingPathComponent("Sources/Python").path,
                "LATENTWATCH_LIBRARY": CLI.product("libLatentWatchC.so"),
            ]
        )
        #expect(recipe.status == 0, "\(recipe.out)")
        let fit = try CLI.run(
            ["fit", "--activations", "\(data)/train_h1.npy", "--family", family] + options + [
                "--calibration", "\(data)/calibration_h1.npy", "--output",
                dir.appendingPathComponent("single.lwm").path,
            ]
        )
        #expect(fit.status == 0, "\(fit.err)")
        let m1 = try ModelFile.read(contentsOf: dir.appendingPathComponent("single.lwm").path)
        let m2 = try ModelFile.read(contentsOf: dir.appendingPathComponent("dask.lwm").path)
        let iterations = m1.metadata.notes.split(separator: ",").first.map(String.init) ?? ""
        #expect(recipe.out.contains("fit notes: \(iterations)"), "\(recipe.out) / \(m1.metadata.notes)")
        let test = try TensorFile(path: "\(data)/test_h1.npy")
        let x = try test.floats(test.tensor(nil).name)
        var scoreDiff = 0.0
        for r in 0..<(x.count / 128) {
            let row = Array(x[(r * 128)..<((r + 1) * 128)])
            let (s1, s2) = (try m1.score(row), try m2.score(row))
            scoreDiff = max(scoreDiff, abs(s1.surprise - s2.surprise) / max(1, abs(s1.surprise)))
        }
        print("dask (\(family) in rounds, \(engine)): \(iterations); scores within \(scoreDiff) relative of one pass")
        #expect(scoreDiff <= 1e-6)
    }

    /// A regression model's layer (the digits-rotation MLP's h2, three shards with their targets), with both
    /// engines: every shard bins on all the shards' targets, the last task calibrates the interval and the
    /// disagreement with the host's predictions; predictions, spreads, intervals and disagreement p-values equal
    /// one pass's `fit` with the same calibration to 1e-6 relative.
    @Test(arguments: ["cli", "python"]) func daskRecipeFitsRegressionModels(engine: String) throws {
        guard try Self.python(["-c", "import dask.distributed"]).status == 0 else { return }
        let dir = CLI.temporaryDirectory()
        let data = CLI.root.appendingPathComponent("Samples/Data/digits-rotation").path
        let split = try Self.python([
            "-c",
            """
            import numpy as np
            x = np.load('\(data)/train_h2.npy'); y = np.load('\(data)/train_targets.npy')
            cuts = [0, 300, 700, len(x)]
            for i in range(3):
                np.save('\(dir.path)/x%d.npy' % i, x[cuts[i]:cuts[i + 1]])
                np.save('\(dir.path)/t%d.npy' % i, y[cuts[i]:cuts[i + 1]])
            """,
        ])
        #expect(split.status == 0, "\(split.out)")
        let calibration = [
            "--calibration", "\(data)/calibration_h2.npy", "--calibration-targets", "\(data)/calibration_targets.npy",
            "--calibration-predictions", "\(data)/calibration_predictions.npy",
        ]
        let recipe = try Self.python(
            [
                "Samples/Dask/sharded_fit.py", "--latentwatch", CLI.executable, "--workers", "2", "--engine", engine,
                "--family", "regression", "--layer", "h2", "--output", dir.appendingPathComponent("dask.lwm").path,
            ] + calibration + (0..<3).flatMap { ["--shard", "\(dir.path)/x\($0).npy:\(dir.path)/t\($0).npy"] },
            environment: [
                "PYTHONPATH": CLI.root.appendingPathComponent("Sources/Python").path,
                "LATENTWATCH_LIBRARY": CLI.product("libLatentWatchC.so"),
            ]
        )
        #expect(recipe.status == 0, "\(recipe.out)")
        let fit = try CLI.run(
            [
                "fit", "--activations", "\(data)/train_h2.npy", "--targets", "\(data)/train_targets.npy", "--layer",
                "h2",
                "--output", dir.appendingPathComponent("single.lwm").path,
            ] + calibration
        )
        #expect(fit.status == 0, "\(fit.err)")
        let m1 = try ModelFile.read(contentsOf: dir.appendingPathComponent("single.lwm").path)
        let m2 = try ModelFile.read(contentsOf: dir.appendingPathComponent("dask.lwm").path)
        #expect(m2.family == "regression" && m2.disagreementCalibrationCount == 359 && m2.hasPredictionInterval)
        let x = try TensorFile(path: "\(data)/test_h2.npy").floats(nil)
        let host = try TensorFile(path: "\(data)/test_predictions.npy").doubles(nil)
        var worst = 0.0
        for r in 0..<(x.count / 32) {
            let row = Array(x[(r * 32)..<((r + 1) * 32)])
            let (s1, s2) = (try m1.score(row), try m2.score(row))
            let (i1, i2) = (m1.predictionInterval(s1, level: 0.9)!, m2.predictionInterval(s2, level: 0.9)!)
            let (y1, y2) = (s1.prediction!, s2.prediction!)
            let (p1, p2) = (m1.pValue(.disagreement, abs(host[r] - y1))!, m2.pValue(.disagreement, abs(host[r] - y2))!)
            worst = max(
                worst,
                abs(y1 - y2) / max(1, abs(y1)),
                abs(s1.predictiveSpread! - s2.predictiveSpread!) / s1.predictiveSpread!,
                abs(i1.lowerBound - i2.lowerBound) / max(1, abs(i1.lowerBound)),
                abs(p1 - p2)
            )
        }
        print(
            "dask (regression, \(engine)): predictions, spreads, intervals, disagreement p within \(worst) of one pass"
        )
        #expect(worst <= 1e-6)
    }
}
