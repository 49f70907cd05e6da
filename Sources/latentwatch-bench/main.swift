// Benchmark: LatentWatch beside numpy and scikit-learn on the same data, one thread each.
// Usage: swift run -c release latentwatch-bench [--quick]
import ArgumentParser
import CLatentWatch
import CMallocCounter
import Foundation
import LatentWatch
import LatentWatchCAPI
import LatentWatchLab
import LatentWatchNumerics

struct BenchOptions: ParsableArguments {
    @Flag(help: "Fewer repetitions (and the peer's quick mode).")
    var quick = false

    @Flag(help: "Do not run the Python peer benchmark.")
    var oursOnly = false

    @Flag(help: "Print the batch scoring rates and stop.")
    var batchOnly = false

    @Flag(help: "Print the fit times (held-out and fixed shrinkage) and stop.")
    var fitOnly = false
}

let tool = "latentwatch-bench"
let options = parseOptions(BenchOptions.self)
/// The single-layer argument every timed call reuses.
nonisolated(unsafe) let one = OneLayer()

let quick = options.quick
let oursOnly = options.oursOnly
let d = 512
let k = 10
let perClass = 2000
let queries = 1024

// Same data for both sides: class-specific low-rank structure plus noise, written as .npy for the peer.
let synthetic = Synthetic.lowRankClasses(seed: 7, dimension: d, classes: k, perClass: perClass, queries: queries)
let train = synthetic.train
let labels = synthetic.labels
let query = synthetic.queries
let dir = FileManager.default.temporaryDirectory.appendingPathComponent("latentwatch-bench-\(getpid())")
exitOnError(tool) {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try NumpyArray.write(train, shape: [k * perClass, d], to: dir.appendingPathComponent("train_x.npy").path)
    try NumpyArray.write(labels, shape: [k * perClass], to: dir.appendingPathComponent("train_y.npy").path)
    try NumpyArray.write(query, shape: [queries, d], to: dir.appendingPathComponent("query_x.npy").path)
}
defer { try? FileManager.default.removeItem(at: dir) }

/// The benchmark's tables report the upper middle of their repetitions.
func median(_ v: [Double]) -> Double { Quantile.upperMedian(v) ?? .nan }

// Fit (GDA, full covariance, K = 10, held-out shrinkage: includes the eigen-decompositions that choose lambda).
let source = InMemoryActivations(values: train, shape: [d], labels: labels)
var model: LatentModel!
let fitRuns = quick ? 1 : 3
let fitTimes = exitOnError(tool) {
    try (0..<fitRuns).map { _ in
        try seconds {
            model = try LatentModelFitter.fit(
                source,
                configuration: FitConfiguration(
                    family: .gda,
                    preparation: .raw,
                    calibrationFraction: 0,
                    fitBackground: false
                )
            )
        }
    }
}
let fitFixedTimes = exitOnError(tool) {
    try (0..<fitRuns).map { _ in
        try seconds {
            _ = try LatentModelFitter.fit(
                source,
                configuration: FitConfiguration(
                    family: .gda,
                    preparation: .raw,
                    regularization: Regularization(shrinkage: .fixed(0.1)),
                    calibrationFraction: 0,
                    fitBackground: false
                )
            )
        }
    }
}
// GMM, full covariance, K = 10, on 20,000 unlabelled rows of D = 128 and 384: seconds per EM iteration (the
// median of the lapses between the fit's progress reports, iterations 2 and later), as scikit-learn's verbose
// log gives its own.
let gmmDimensions = [128, 384]
let gmmIterations = quick ? 3 : 10
let gmmIterationSeconds: [Int: Double] = exitOnError(tool) {
    var out: [Int: Double] = [:]
    for gd in gmmDimensions {
        let data = Synthetic.lowRankClasses(seed: 11, dimension: gd, classes: k, perClass: perClass, queries: 1)
        try NumpyArray.write(
            data.train,
            shape: [k * perClass, gd],
            to: dir.appendingPathComponent("gmm\(gd)_x.npy").path
        )
        var stamps: [Double] = []
        _ = try LatentModelFitter.fit(
            InMemoryActivations(values: data.train, shape: [gd]),
            configuration: FitConfiguration(
                family: .gmmFull,
                preparation: .raw,
                mixture: MixtureOptions(components: k, tolerance: 0, maxIterations: gmmIterations),
                calibrationFraction: 0,
                fitBackground: false
            ),
            progress: { p in
                if p.stage == .expectationMaximization {
                    stamps.append(Double(DispatchTime.now().uptimeNanoseconds) / 1e9)
                }
            }
        )
        let lapses = zip(stamps.dropFirst(), stamps).map { $0 - $1 }.dropFirst()
        out[gd] = median(Array(lapses))
    }
    return out
}

if options.fitOnly {
    for gd in gmmDimensions {
        print(String(format: "GMM full K=%d D=%d: %.3f s per EM iteration", k, gd, gmmIterationSeconds[gd] ?? .nan))
    }
    print(
        String(
            format: "fit (held-out shrinkage): %.3f s; fit (fixed shrinkage): %.3f s",
            median(fitTimes),
            median(fitFixedTimes)
        )
    )
    try? FileManager.default.removeItem(at: dir)
    exit(0)
}
let tied = exitOnError(tool) {
    try LatentModelFitter.fit(
        source,
        configuration: FitConfiguration(family: .tied, preparation: .raw, calibrationFraction: 0, fitBackground: false)
    )
}
let half = model.converted(to: .float16)

/// Microseconds per query of one pass of `m.score` over the queries, one input per call (`sink` keeps the
/// results alive).
@MainActor func scorePassMicros(_ m: LatentModel, workspace ws: ScoringWorkspace, sink: inout Double) throws -> Double {
    try query.withUnsafeBufferPointer { q in
        try seconds {
            for i in 0..<queries {
                sink += try m.score(UnsafeBufferPointer(rebasing: q[(i * d)..<((i + 1) * d)]), workspace: ws).logDensity
            }
        } / Double(queries) * 1e6
    }
}

@MainActor func oneSampleMicros(_ m: LatentModel) throws -> Double {
    let ws = m.makeWorkspace()
    var sink = 0.0
    var times: [Double] = []
    for _ in 0..<(quick ? 3 : 9) { times.append(try scorePassMicros(m, workspace: ws, sink: &sink)) }
    if sink.isNaN { print("") }
    return median(times)
}

/// The machine's own limit for one input: the time to read the K float32 factors' packed bytes once (5.3 MB at
/// D = 512, K = 10), repeatedly, so they are as warm as a stream of one-input calls keeps them.
@MainActor func streamFactorsMicros() -> Double {
    let count = k * PackedTriangular.storedCount(d)
    let buffer = [Float](repeating: 1, count: count)
    var sink = 0.0
    var times: [Double] = []
    buffer.withUnsafeBufferPointer { b in
        for _ in 0..<(quick ? 3 : 9) {
            times.append(
                seconds { for _ in 0..<100 { sink += HalfConversion.streamRead(b.baseAddress!, count: count) } }
                    / 100 * 1e6
            )
        }
    }
    if sink.isNaN { print("") }
    return median(times)
}

@MainActor func batchPerSecond(_ m: LatentModel) -> Double {
    let ws = m.makeWorkspace()
    var times: [Double] = []
    query.withUnsafeBufferPointer { q in
        _ = m.scoreBatch(q, count: queries, workspace: ws)
        for _ in 0..<(quick ? 3 : 7) { times.append(seconds { _ = m.scoreBatch(q, count: queries, workspace: ws) }) }
    }
    return Double(queries) / median(times)
}

if options.batchOnly {
    // Repeated batch measurements, for tuning on a noisy machine.
    for _ in 0..<8 { print(String(format: "GDA batch of 1024: %.0f samples/s", batchPerSecond(model))) }
    try? FileManager.default.removeItem(at: dir)
    exit(0)
}

let ours: [String: Double] = exitOnError(tool) {
    [
        "gda_one_us": try oneSampleMicros(model),
        "gda_one_f16_us": try oneSampleMicros(half),
        "gda_batch_per_s": batchPerSecond(model),
        "tied_one_us": try oneSampleMicros(tied),
        "stream_factors_us": streamFactorsMicros(),
        "fit_s": median(fitTimes),
        "fit_fixed_s": median(fitFixedTimes),
    ]
}

// Neighbour index: one input scored with and without it, on a layer shaped like the evaluation's (D = 128, seven
// classes, 35,000 rows, L2-normalised, the default fit with 20 % held out), and its search alone beside exact
// search over the same fitting rows in numpy and scikit-learn (written for the peer as nb_*.npy).
struct NeighbourFigures {
    var plainUs = 0.0
    var indexedUs = 0.0
    var searchUs = 0.0
    var rows = 0
    var cells = 0
    var exactShare = 0.0
    var bytes = 0
}
let nbD = 128
let nbData = Synthetic.lowRankClasses(seed: 13, dimension: nbD, classes: 7, perClass: 5_000, queries: queries)
@MainActor func measureNeighbours() throws -> NeighbourFigures {
    let source = InMemoryActivations(values: nbData.train, shape: [nbD], labels: nbData.labels)
    var plainConfig = FitConfiguration(fitBackground: false)
    plainConfig.neighbours = nil
    let plain = try LatentModelFitter.fit(source, configuration: plainConfig)
    var config = FitConfiguration(fitBackground: false)
    config.neighbours = NeighbourOptions(required: true)
    let indexed = try LatentModelFitter.fit(source, configuration: config)
    guard let index = indexed.neighbours else { throw LatentWatchError(.fitFailed, "no neighbour index was built") }
    // The prepared (L2-normalised) queries and the fitting rows the peer searches exactly.
    var prepared = nbData.queries
    for i in 0..<queries {
        var s: Float = 0
        for j in 0..<nbD { s += prepared[i * nbD + j] * prepared[i * nbD + j] }
        let r = 1 / max(s.squareRoot(), 1e-12)
        for j in 0..<nbD { prepared[i * nbD + j] *= r }
    }
    // The peers search as many rows as the index holds.
    try NumpyArray.write(
        Array(nbData.train.prefix(index.count * nbD)),
        shape: [index.count, nbD],
        to: dir.appendingPathComponent("nb_train_x.npy").path
    )
    try NumpyArray.write(nbData.queries, shape: [queries, nbD], to: dir.appendingPathComponent("nb_query_x.npy").path)
    func perInput(_ m: LatentModel) throws -> Double {
        let ws = m.makeWorkspace()
        var sink = 0.0
        var times: [Double] = []
        try nbData.queries.withUnsafeBufferPointer { q in
            for _ in 0..<(quick ? 3 : 9) {
                times.append(
                    try seconds {
                        for i in 0..<queries {
                            sink += try m.score(
                                UnsafeBufferPointer(rebasing: q[(i * nbD)..<((i + 1) * nbD)]),
                                workspace: ws
                            )
                            .surprise
                        }
                    } / Double(queries) * 1e6
                )
            }
        }
        if sink.isNaN { print("") }
        return median(times)
    }
    var out = NeighbourFigures()
    // Alternate the two so that drift of the machine's speed falls on both.
    var plainTimes: [Double] = []
    var indexedTimes: [Double] = []
    for _ in 0..<3 {
        plainTimes.append(try perInput(plain))
        indexedTimes.append(try perInput(indexed))
    }
    out.plainUs = median(plainTimes)
    out.indexedUs = median(indexedTimes)
    var scratch = [Float](repeating: 0, count: index.scratchCount)
    var sink = 0.0
    var times: [Double] = []
    prepared.withUnsafeBufferPointer { q in
        scratch.withUnsafeMutableBufferPointer { sc in
            for _ in 0..<(quick ? 3 : 9) {
                times.append(
                    seconds {
                        for i in 0..<queries {
                            sink += index.nearestDistance(q.baseAddress! + i * nbD, scratch: sc.baseAddress!)
                        }
                    } / Double(queries) * 1e6
                )
            }
        }
    }
    if sink.isNaN { print("") }
    out.searchUs = median(times)
    // Exact share: the probed search against searching every cell of the same index.
    let all = index.probing(index.cellCount)
    var exact = 0
    prepared.withUnsafeBufferPointer { q in
        scratch.withUnsafeMutableBufferPointer { sc in
            for i in 0..<queries {
                let a = index.nearestDistance(q.baseAddress! + i * nbD, scratch: sc.baseAddress!)
                let b = all.nearestDistance(q.baseAddress! + i * nbD, scratch: sc.baseAddress!)
                if a == b { exact += 1 }
            }
        }
    }
    out.exactShare = Double(exact) / Double(queries)
    let sizes = zip(index.cellStarts.dropFirst(), index.cellStarts).map { $0 - $1 }
    print(
        "neighbour cells: largest \(sizes.max() ?? 0) rows; the cell of a random row holds \(sizes.map { $0 * $0 }.reduce(0, +) / max(index.count, 1)) on average"
    )
    out.rows = index.count
    out.cells = index.cellCount
    out.bytes = try ModelFile.encode(indexed).count - ModelFile.encode(plain).count
    return out
}
let neighbourFigures = exitOnError(tool) { try measureNeighbours() }

// Monitor: host-side cost of one background submit (copy into the queue) with the worker scoring on the
// other core, and inline assess latency, with heap allocations counted by the interposed malloc.
struct MonitorFigures {
    var submitNs = 0.0
    var submitAllocs = 0.0
    var inlineUs: [String: Double] = [:]
    /// The same model's one-input `score` (the kernel and the density's summary), timed in rounds alternating with
    /// the inline `assess` rounds, so the two share the machine's state.
    var kernelUs: [String: Double] = [:]
    var inlineAllocs = 0.0
    var inlineAllocsQuiet = 0.0
    var inlineAlertShare = 0.0
    /// The calibrated model behind the inline figures (the embedding figures use it too).
    var model: LatentModel?
}
@MainActor func measureMonitor() async throws -> MonitorFigures {
    var out = MonitorFigures()
    // The class Gaussians alone (the neighbour index's cost is its own row, measureNeighbours).
    var monitorConfig = FitConfiguration(
        family: .gda,
        preparation: .raw,
        calibrationFraction: 0.2,
        fitBackground: false,
        layerName: "bench"
    )
    monitorConfig.neighbours = nil
    let calibrated: LatentModel = try LatentModelFitter.fit(source, configuration: monitorConfig)
    let monitor = try Monitor(
        configuration: MonitorConfiguration(
            layers: [MonitoredLayer(model: calibrated)],
            policy: AlertPolicy(window: nil, shift: nil),
            mode: .background(capacity: 8192, batchSize: 64)
        )
    )
    let service = Task.detached { try await monitor.run() }
    var times: [Double] = []
    var allocs: [Double] = []
    try query.withUnsafeBufferPointer { q in
        for round in 0..<(quick ? 3 : 8) {
            // Wait for the worker to empty the queue, so the round measures the copy, not the drop path.
            while monitor.queuedInputs > 0 { usleep(1000) }
            let n = 4096
            let a0 = lw_thread_allocation_count()
            let t = try seconds {
                for i in 0..<n {
                    let r = (i + round) % queries
                    try monitor.submit(one(UnsafeBufferPointer(rebasing: q[(r * d)..<((r + 1) * d)])))
                }
            }
            allocs.append(Double(lw_thread_allocation_count() - a0) / Double(n))
            times.append(t / Double(n) * 1e9)
        }
    }
    out.submitNs = median(times)
    out.submitAllocs = allocs.max() ?? 0
    monitor.shutDown()
    try await service.value
    for (name, m) in [("float32", calibrated), ("float16", calibrated.converted(to: .float16))] {
        let inline = try Monitor(
            configuration: MonitorConfiguration(layers: [MonitoredLayer(model: m)], policy: AlertPolicy())
        )
        var lat: [Double] = []
        var kernel: [Double] = []
        var al: [Double] = []
        // One assessment per thread, reused: the host-side pattern that allocates nothing in steady state.
        var result = Assessment()
        let ws = m.makeWorkspace()
        var sink = 0.0
        try query.withUnsafeBufferPointer { q in
            for _ in 0..<(quick ? 3 : 7) {
                kernel.append(try scorePassMicros(m, workspace: ws, sink: &sink))
                let a0 = lw_thread_allocation_count()
                lat.append(
                    try seconds {
                        for i in 0..<queries {
                            try inline.assess(
                                one(UnsafeBufferPointer(rebasing: q[(i * d)..<((i + 1) * d)])),
                                into: &result
                            )
                        }
                    } / Double(queries) * 1e6
                )
                al.append(Double(lw_thread_allocation_count() - a0) / Double(queries))
            }
        }
        if sink.isNaN { print("") }
        out.inlineUs[name] = median(lat)
        out.kernelUs[name] = median(kernel)
        if name == "float32" { out.inlineAllocs = al.max() ?? 0 }
    }
    // Allocation only happens when an alert is raised (the Alert's strings). Count it with the default
    // policy (alerts at alpha = 0.01) and with a policy under which no query raises an alert (window and shift
    // detectors still running).
    for quiet in [false, true] {
        let policy =
            quiet
            ? AlertPolicy(inputAlpha: 1e-12, aleatoricAlpha: nil) : AlertPolicy()
        let inline = try Monitor(
            configuration: MonitorConfiguration(layers: [MonitoredLayer(model: calibrated)], policy: policy)
        )
        var result = Assessment()
        var flagged = 0
        // Warm-up: the first call creates the thread's workspaces and the assessment's layer storage.
        try query.withUnsafeBufferPointer { q in
            for i in 0..<8 {
                try inline.assess(one(UnsafeBufferPointer(rebasing: q[(i * d)..<((i + 1) * d)])), into: &result)
            }
        }
        let a0 = lw_thread_allocation_count()
        try query.withUnsafeBufferPointer { q in
            for i in 0..<queries {
                try inline.assess(one(UnsafeBufferPointer(rebasing: q[(i * d)..<((i + 1) * d)])), into: &result)
                if !result.flags.isEmpty { flagged += 1 }
            }
        }
        let per = Double(lw_thread_allocation_count() - a0) / Double(queries)
        if quiet { out.inlineAllocsQuiet = per } else { out.inlineAlertShare = Double(flagged) / Double(queries) }
        if !quiet { out.inlineAllocs = max(out.inlineAllocs, per) }
    }
    out.model = calibrated
    return out
}
let monitorFigures = await exitOnError(tool) { try await measureMonitor() }

// The peer, from the same run, on the same files.
let script = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(
    "Tests/Benchmarks/peer_bench.py"
)
var peer: [String: Any] = [:]
let proc = Process()
proc.executableURL = URL(fileURLWithPath: "/usr/bin/env")
proc.arguments =
    ["python3", script.path, "--data", dir.path] + (quick ? ["--quick"] : [])
    + gmmDimensions.flatMap { ["--gmm", dir.appendingPathComponent("gmm\($0)_x.npy").path] }
let pipe = Pipe()
proc.standardOutput = pipe
do {
    if oursOnly { throw CocoaError(.userCancelled) }
    try proc.run()
    let out = pipe.fileHandleForReading.readDataToEndOfFile()
    proc.waitUntilExit()
    if proc.terminationStatus == 0, let obj = try JSONSerialization.jsonObject(with: out) as? [String: Any] {
        peer = obj
    } else {
        print("peer benchmark failed (exit \(proc.terminationStatus)); numbers below are ours only")
    }
} catch {
    print(
        "could not run the peer benchmark (\(error)); run from the repository root with numpy, scipy and scikit-learn installed"
    )
}
@MainActor func p(_ key: String) -> Double? { (peer[key] as? NSNumber)?.doubleValue }
/// numpy's fixed-shrinkage fit in one precision (the peer's "variants" record both).
@MainActor func numpyFit(_ key: String) -> Double? {
    (((peer["variants"] as? [String: Any])?["numpy_fit_s"] as? [String: Any])?[key] as? NSNumber)?.doubleValue
}

print(
    "LatentWatch \(LatentWatchVersion.string) vs numpy \(peer["numpy_version"] ?? "?") / scikit-learn \(peer["sklearn_version"] ?? "?"), 1 thread each, D=\(d), K=\(k), full covariance, \(k * perClass) fit samples\(quick ? " (quick)" : "")"
)
print(ComputeEnvironment.summary + (ComputeEnvironment.blasFallbackWarning.map { "\nwarning: " + $0 } ?? ""))
print("numpy's OpenBLAS core: \(peer["blas_core"] ?? "not reported")")
@MainActor func row(
    _ what: String,
    _ ourValue: Double,
    _ unit: String,
    _ peerName: String,
    _ peerValue: Double?,
    lowerIsBetter: Bool,
    target: String
) {
    let ratio = peerValue.map { lowerIsBetter ? $0 / ourValue : ourValue / $0 }
    /// Seconds get three decimals; rates and microseconds one.
    let format = unit == "s" ? "%10.3f" : "%10.1f"
    let pv = peerValue.map { String(format: format, $0) } ?? "         -"
    let r = ratio.map { String(format: "%6.2fx", $0) } ?? "     -"
    print(
        String(
            format: "%@ %@ %@  %@ %@ %@  %@",
            what.padding(toLength: 40, withPad: " ", startingAt: 0),
            String(format: format, ourValue),
            unit.padding(toLength: 9, withPad: " ", startingAt: 0),
            peerName.padding(toLength: 26, withPad: " ", startingAt: 0),
            pv,
            r,
            target
        )
    )
}
print(
    "measure                                    ours      unit      peer                        peer  speedup  target"
)
row(
    "GDA one sample, float32",
    ours["gda_one_us"]!,
    "us",
    "numpy best",
    p("numpy_gda_one_us"),
    lowerIsBetter: true,
    target: "<= 100 us"
)
row(
    "GDA one sample, float32",
    ours["gda_one_us"]!,
    "us",
    "scikit-learn",
    p("sklearn_gda_one_us"),
    lowerIsBetter: true,
    target: ""
)
row(
    "GDA one sample, float32",
    ours["gda_one_us"]!,
    "us",
    "reading its factors once",
    ours["stream_factors_us"]!,
    lowerIsBetter: true,
    target: ">= 0.80x (within 1.25x)"
)
row(
    "GDA one sample, float16 factors",
    ours["gda_one_f16_us"]!,
    "us",
    "numpy best",
    p("numpy_gda_one_us"),
    lowerIsBetter: true,
    target: "<= 70 us"
)
row(
    "GDA batch of 1024",
    ours["gda_batch_per_s"]!,
    "samples/s",
    "numpy best (strmm)",
    p("numpy_gda_batch_per_s"),
    lowerIsBetter: false,
    target: ">= 25,000/s"
)
row(
    "GDA batch of 1024",
    ours["gda_batch_per_s"]!,
    "samples/s",
    "scikit-learn",
    p("sklearn_gda_batch_per_s"),
    lowerIsBetter: false,
    target: ""
)
row(
    "tied Mahalanobis one sample",
    ours["tied_one_us"]!,
    "us",
    "numpy best",
    p("numpy_tied_one_us"),
    lowerIsBetter: true,
    target: "<= 25 us"
)
let nb = neighbourFigures
row(
    "GDA one input D=128 K=7, + neighbours",
    nb.indexedUs,
    "us",
    "the same fit without them",
    nb.plainUs,
    lowerIsBetter: true,
    target: ">= 0.50x (at most 2x)"
)
row(
    "neighbour search alone (approximate)",
    nb.searchUs,
    "us",
    "numpy exact, all rows",
    p("numpy_nn_one_us"),
    lowerIsBetter: true,
    target: ""
)
row(
    "neighbour search alone (approximate)",
    nb.searchUs,
    "us",
    "scikit-learn exact (brute)",
    p("sklearn_nn_one_us"),
    lowerIsBetter: true,
    target: ""
)
print(
    String(
        format:
            "  neighbour index: %d of %d fitting rows in %d cells, 2 searched; exact nearest on %.1f %% of queries; +%.2f MB in the model file; the peers search %d rows exactly",
        nb.rows,
        nbData.labels.count * 4 / 5,
        nb.cells,
        nb.exactShare * 100,
        Double(nb.bytes) / 1e6,
        (p("nn_rows") ?? 0).isFinite ? Int(p("nn_rows") ?? 0) : 0
    )
)
row(
    "fit 20,000 x 512 (held-out shrinkage)",
    ours["fit_s"]!,
    "s",
    "scikit-learn QDA",
    p("sklearn_fit_s"),
    lowerIsBetter: true,
    target: "no slower than sklearn"
)
row(
    "fit 20,000 x 512 (fixed shrinkage)",
    ours["fit_fixed_s"]!,
    "s",
    "numpy f32 (means, cov, chol)",
    numpyFit("fit_f32"),
    lowerIsBetter: true,
    target: "no slower than numpy"
)
row(
    "fit 20,000 x 512 (fixed shrinkage)",
    ours["fit_fixed_s"]!,
    "s",
    "numpy f64 (as ours)",
    numpyFit("fit_f64"),
    lowerIsBetter: true,
    target: ""
)
for gd in gmmDimensions {
    row(
        "GMM full K=\(k) D=\(gd): s per EM iteration",
        gmmIterationSeconds[gd] ?? .nan,
        "s",
        "scikit-learn",
        p("sklearn_gmm_iter_s_\(gd)"),
        lowerIsBetter: true,
        target: "no slower than sklearn"
    )
}
print(
    String(
        format:
            "monitor background submit, host side, D=512    %8.0f ns  allocations/call %.2f  (target <= 1 us, none)",
        monitorFigures.submitNs,
        monitorFigures.submitAllocs
    )
)
for name in ["float32", "float16"] {
    let inline = monitorFigures.inlineUs[name] ?? .nan
    let kernel = monitorFigures.kernelUs[name] ?? .nan
    print(
        String(
            format:
                "monitor inline assess, \(name) factors         %8.1f us  the model's own score %.1f us, %+.1f%% (target within 10 %%)",
            inline,
            kernel,
            100 * (inline / kernel - 1)
        )
    )
}
print(
    String(
        format: "monitor inline assess allocations/call %.2f (%.1f%% of inputs raised alerts); %.2f when none does",
        monitorFigures.inlineAllocs,
        100 * monitorFigures.inlineAlertShare,
        monitorFigures.inlineAllocsQuiet
    )
)

// Embedding: the same model and queries through the C interface (called from here, so only the boundary differs
// from the Swift figure above) and through the Python package (Tests/Benchmarks/python_bench.py, a child process
// loading liblatentwatch.so), each one input per call, default policy.
@MainActor func cInterfaceMicros(_ m: LatentModel) throws -> [String: Double] {
    let path = dir.appendingPathComponent("embed.lwm").path
    try ModelFile.write(m, to: path)
    var handle: OpaquePointer?
    guard lw_model_load(path, &handle) == LW_OK, let handle else {
        throw LabError("lw_model_load: \(String(cString: lw_last_error()))")
    }
    defer { _ = lw_model_free(handle) }
    var config = lw_monitor_config()
    lw_monitor_config_init_sized(&config, MemoryLayout<lw_monitor_config>.size)
    config.layer_count = 1
    var monitor: OpaquePointer?
    let models: [OpaquePointer?] = [handle]
    let status = models.withUnsafeBufferPointer {
        config.models = $0.baseAddress
        return lw_monitor_create(&config, &monitor)
    }
    guard status == LW_OK, let monitor else { throw LabError("lw_monitor_create: \(String(cString: lw_last_error()))") }
    defer { _ = lw_monitor_close(monitor) }
    var inputs = lw_inputs()
    lw_inputs_init(&inputs)
    var out = lw_assessment()
    out.struct_size = UInt32(MemoryLayout<lw_assessment>.size)
    var stats = lw_monitor_stats()
    stats.struct_size = UInt32(MemoryLayout<lw_monitor_stats>.size)
    let layers = UnsafeMutablePointer<UnsafeRawPointer?>.allocate(capacity: 1)
    let lengths = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    defer {
        layers.deallocate()
        lengths.deallocate()
    }
    lengths[0] = d
    inputs.layer_count = 1
    inputs.layers = UnsafePointer(layers)
    inputs.lengths = UnsafePointer(lengths)
    var assess: [Double] = []
    var floor: [Double] = []
    var boundary: [Double] = []
    try query.withUnsafeBufferPointer { q in
        for _ in 0..<(quick ? 3 : 7) {
            assess.append(
                try seconds {
                    for i in 0..<queries {
                        layers[0] = UnsafeRawPointer(q.baseAddress! + i * d)
                        guard lw_monitor_assess(monitor, &inputs, nil, &out) == LW_OK else {
                            throw LabError("lw_monitor_assess: \(String(cString: lw_last_error()))")
                        }
                    }
                } / Double(queries) * 1e6
            )
            var sink: UInt32 = 0
            floor.append(try seconds { for _ in 0..<100_000 { sink &+= lw_abi_version() } } / 100_000 * 1e6)
            if sink == 0 { print("") }
            boundary.append(
                try seconds { for _ in 0..<100_000 { _ = lw_monitor_get_stats(monitor, &stats) } } / 100_000 * 1e6
            )
        }
    }
    return ["assess": median(assess), "floor": median(floor), "boundary": median(boundary)]
}

if let embedModel = monitorFigures.model {
    let c = exitOnError(tool) { try cInterfaceMicros(embedModel) }
    let swiftUs = monitorFigures.inlineUs["float32"] ?? .nan
    // The release library beside this executable, for the Python package.
    let library = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("libLatentWatchC.so").path
    var python: [String: Any] = [:]
    var pythonNote = ""
    if oursOnly {
        pythonNote = "not run (--ours-only)"
    } else if !FileManager.default.fileExists(atPath: library) {
        pythonNote = "not run: \(library) is missing (swift build -c release --product LatentWatchC)"
    } else {
        let py = Process()
        py.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        py.arguments = [
            "python3", "Tests/Benchmarks/python_bench.py", "--json", "--model",
            dir.appendingPathComponent("embed.lwm").path, "--queries", dir.appendingPathComponent("query_x.npy").path,
            "--rounds", quick ? "3" : "7",
        ]
        var env = ProcessInfo.processInfo.environment
        env["LATENTWATCH_LIBRARY"] = library
        py.environment = env
        let pipe = Pipe()
        py.standardOutput = pipe
        do {
            try py.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            py.waitUntilExit()
            if py.terminationStatus == 0, let o = try JSONSerialization.jsonObject(with: data) as? [String: Any] {
                python = o
            } else {
                pythonNote = "python_bench.py failed (exit \(py.terminationStatus))"
            }
        } catch {
            pythonNote = "python3 did not run: \(error)"
        }
    }
    let us = python["microseconds"] as? [String: [String: Any]] ?? [:]
    func py(_ key: String) -> Double? { (us[key]?["median"] as? NSNumber)?.doubleValue }
    print("")
    print("embedding: one input per call, D=512 K=10 GDA, default policy, the same model file and 1,024 queries")
    print("| call | µs per input | minus Swift Monitor.assess | target |")
    print("|---|---|---|---|")
    func line(_ name: String, _ v: Double?, target: String = "") {
        guard let v else {
            print("| \(name) | \(pythonNote.isEmpty ? "not measured" : pythonNote) | | \(target) |")
            return
        }
        print(String(format: "| %@ | %.1f | %+.1f | %@ |", name, v, v - swiftUs, target))
    }
    print(String(format: "| Swift `Monitor.assess(_:into:)`, this process | %.1f | | |", swiftUs))
    line("C `lw_monitor_assess`, called from this process", c["assess"], target: "")
    line("Python: `lw_monitor_assess` through ctypes, prebuilt arguments", py("raw lw_monitor_assess (ctypes)"))
    line("Python: `latentwatch.Monitor.assess`", py("Monitor.assess"), target: "within 10 µs of Swift")
    if let paired = py("Monitor.assess minus raw call, paired") {
        print(
            String(
                format: "Python `Monitor.assess` minus the raw ctypes call, paired in one process: %+.1f µs",
                paired
            )
        )
    }
    print(
        String(
            format: "C interface fixed costs: a call that does nothing (`lw_abi_version`) %.3f µs; a handle lookup "
                + "with per-thread state (`lw_monitor_get_stats`) %.3f µs",
            c["floor"] ?? .nan,
            c["boundary"] ?? .nan
        )
    )
    if let info = python["info"] as? [String: Any] {
        print(
            "Python side: python \(info["python"] ?? "?"), numpy \(info["numpy"] ?? "?"), torch \(info["torch"] ?? "?")"
        )
    }
    for bs in [1, 32] {
        let key = "torch hook, batch \(bs): µs per input added to forward (copy + enqueue)"
        if let v = py(key) {
            print(
                String(
                    format: "PyTorch forward hook, batch %d: %.1f µs per input added to the forward pass%@",
                    bs,
                    v,
                    bs == 1 ? " (target <= 20 µs)" : ""
                )
            )
        }
    }
}
