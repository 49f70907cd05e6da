import Foundation
import LatentWatch
import LatentWatchTestSupport
import Testing

/// The C interface tested as hosts use it: `c/capi_check.c` and `c/cpp_check.cpp` are compiled with gcc and g++
/// against Sources/CLatentWatch/include/latentwatch.h, linked with the built liblatentwatch.so, and run as child
/// processes. The Swift side computes the same scores with the SDK and compares them bit for bit.
@Suite(.serialized)
struct CAPITests {
    static let root = LatentWatchBinary.root
    static let data = LatentWatchBinary.data

    /// A directory holding liblatentwatch.so (a link to the built library under the name hosts link) and the
    /// compiled checks.
    static let work: URL = {
        let d = LatentWatchBinary.temporaryDirectory()
        return d
    }()

    /// The shared library SwiftPM built for the LatentWatchC product.
    static var library: String { LatentWatchBinary.product("libLatentWatchC.so") }

    static func shell(
        _ arguments: [String],
        environment: [String: String] = [:]
    ) throws -> (
        status: Int32, out: String, err: String
    ) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        p.currentDirectoryURL = root
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let errData = LockedData()
        let reader = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        reader.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !errData.isSet { usleep(1000) }
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: errData.value, as: UTF8.self))
    }

    /// Compiles the C check once per test process.
    static let compiled: Result<String, CompileError> = {
        guard FileManager.default.fileExists(atPath: library) else {
            return .failure(
                CompileError(text: "\(library) is missing: `swift build --product LatentWatchC` builds it")
            )
        }
        let link = work.appendingPathComponent("liblatentwatch.so").path
        try? FileManager.default.removeItem(atPath: link)
        try? FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: library)
        let exe = work.appendingPathComponent("capi_check").path
        do {
            let r = try shell([
                "gcc", "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I", "Sources/CLatentWatch/include",
                "Tests/CAPITests/c/capi_check.c", "-L", work.path, "-llatentwatch", "-Wl,-rpath,\(work.path)",
                "-lpthread", "-lm", "-o", exe,
            ])
            guard r.status == 0 else { return .failure(CompileError(text: "gcc failed:\n\(r.err)")) }
        } catch {
            return .failure(CompileError(text: "gcc did not run: \(error)"))
        }
        return .success(exe)
    }()

    struct CompileError: Error, CustomStringConvertible {
        let text: String
        var description: String { text }
    }

    /// Fits the digits MLP's two layers with the SDK, writes and reads back their model files, and writes the
    /// stream's activations for the C program.
    static let fixtures: (models: [LatentModel], modelPaths: [String], raw: [String], rows: [[[Float]]]) = {
        var models: [LatentModel] = []
        var paths: [String] = []
        var raws: [String] = []
        var rows: [[[Float]]] = []
        let labels = try! TensorFile(path: data.appendingPathComponent("train_labels.npy").path).ints(nil)
        for layer in ["h1", "h2"] {
            let source = try! FileActivations(
                path: data.appendingPathComponent("train_\(layer).npy").path,
                labels: labels
            )
            let calibration = try! FileActivations(path: data.appendingPathComponent("calibration_\(layer).npy").path)
            let fitted = try! LatentModelFitter.fit(
                source,
                calibration: calibration,
                configuration: FitConfiguration(layerName: layer)
            )
            let path = work.appendingPathComponent("\(layer).lwm").path
            try! ModelFile.write(fitted, to: path)
            models.append(try! ModelFile.read(contentsOf: path))
            paths.append(path)
            let raw = data.appendingPathComponent("stream_\(layer).npy").path
            let values = try! TensorFile(path: raw).floats(nil)
            raws.append(raw)
            let n = fitted.inputCount
            rows.append(stride(from: 0, to: values.count, by: n).map { Array(values[$0..<($0 + n)]) })
        }
        return (models, paths, raws, rows)
    }()

    static func hex(_ s: Substring) -> Double {
        if s.hasSuffix("nan") { return .nan }
        return Double(String(s))!
    }

    static func same(_ a: Double, _ b: Double) -> Bool {
        a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN)
    }

    @Test("scores and assessments through the C interface equal the Swift SDK's bit for bit")
    func scoresEqualTheSDK() async throws {
        let exe = try Self.compiled.get()
        let f = Self.fixtures
        let r = try Self.shell([exe, "score", f.modelPaths[0], f.raw[0], f.modelPaths[1], f.raw[1]])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n")

        // The SDK: the same models, an inline monitor with the default policy, alerts collected.
        let sink = CollectingSink()
        let monitor = try Monitor(
            configuration: MonitorConfiguration(layers: f.models.map { MonitoredLayer(model: $0) }),
            sinks: [sink]
        )
        let service = Task { try await monitor.run() }
        let count = f.rows[0].count
        let flat = f.rows[0].flatMap { $0 }
        let batch = flat.withUnsafeBufferPointer {
            f.models[0].scoreBatch($0, count: count, workspace: f.models[0].makeWorkspace())
        }
        var scoreLines = 0
        var assessLines = 0
        var batchLines = 0
        var cAlerts: [[Substring]] = []
        var assessments: [Assessment] = []
        for row in 0..<count {
            var a = Assessment()
            try f.rows[0][row].withUnsafeBufferPointer { b0 in
                try f.rows[1][row].withUnsafeBufferPointer { b1 in
                    try monitor.assess(.float32([b0, b1]), requestID: "r\(row)", into: &a)
                }
            }
            assessments.append(a)
        }
        monitor.shutDown()
        try await service.value
        for line in lines {
            let w = line.split(separator: " ")
            switch w.first {
            case "score":
                let row = Int(w[1])!
                let l = Int(w[2])!
                let m = f.models[l]
                let s = try m.score(f.rows[l][row])
                let expected = [
                    s.surprise, m.pValue(.surprise, s.surprise) ?? .nan, s.entropy,
                    m.pValue(.entropy, s.entropy) ?? .nan,
                    s.mahalanobis, s.relativeMahalanobis, s.maxPosterior,
                ]
                for (k, e) in expected.enumerated() {
                    #expect(Self.same(Self.hex(w[3 + k]), e), "row \(row) layer \(l) field \(k): \(w[3 + k]) vs \(e)")
                }
                #expect(Int(w[10])! == (s.predictedLabel ?? -1))
                scoreLines += 1
            case "assess":
                let row = Int(w[1])!
                let a = assessments[row]
                #expect(Int(w[2])! == a.index)
                #expect(UInt8(w[3])! == a.flags.rawValue, "row \(row) flags")
                let expected = [a.fusedPValue, a.entropy, a.entropyPValue ?? .nan, a.shiftLogEvidence ?? .nan]
                for (k, e) in expected.enumerated() {
                    #expect(Self.same(Self.hex(w[4 + k]), e), "row \(row) field \(k): \(w[4 + k]) vs \(e)")
                }
                #expect(Int(w[8])! == (a.predictedLabel ?? -1))
                for (l, layer) in a.layers.enumerated() {
                    #expect(Self.same(Self.hex(w[9 + 2 * l]), layer.surprise))
                    #expect(Self.same(Self.hex(w[10 + 2 * l]), layer.pValue))
                }
                assessLines += 1
            case "batch":
                // The batch path (BLAS, float32 products) equals the SDK's batch path bit for bit.
                let row = Int(w[1])!
                #expect(w[2] == "0")
                let expected = try batch[row].get().surprise
                #expect(Self.same(Self.hex(w[3]), expected), "row \(row): \(w[3]) vs \(expected)")
                batchLines += 1
            case "alert":
                cAlerts.append(w)
            default:
                Issue.record("unexpected line: \(line)")
            }
        }
        #expect(scoreLines == 2 * count && assessLines == count && batchLines == count)
        let alerts = sink.alerts
        #expect(!alerts.isEmpty, "the stream turns out of distribution; it must raise alerts")
        #expect(cAlerts.count == alerts.count)
        for (c, s) in zip(cAlerts, alerts) {
            #expect(c[1] == Substring(s.kind.rawValue) && Int(c[2])! == s.index, "\(c) vs \(s)")
            #expect(Self.same(Self.hex(c[3]), s.pValue ?? .nan))
            #expect(c[4] == Substring(s.requestID ?? "-"))
        }
    }

    @Test("every bad input through the C interface returns its status; the process survives")
    func badInputsReturnStatuses() throws {
        let exe = try Self.compiled.get()
        let r = try Self.shell([exe, "errors", Self.fixtures.modelPaths[1]])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("all cases returned their status"))
    }

    @Test("8 threads assess and score at once, each result equal to the single-threaded one")
    func threads() throws {
        let exe = try Self.compiled.get()
        let r = try Self.shell([exe, "threads", Self.fixtures.modelPaths[1], Self.fixtures.raw[1], "8"])
        #expect(r.status == 0, "\(r.err)")
    }

    @Test("fit from C buffers, write, load back, a background monitor with submit and flush")
    func fitAndBackground() throws {
        let exe = try Self.compiled.get()
        let raw = Self.data.appendingPathComponent("train_h2.npy").path
        let labels = Self.data.appendingPathComponent("train_labels.npy").path
        let out = Self.work.appendingPathComponent("fitted-from-c.lwm").path
        let r = try Self.shell([exe, "fit", raw, labels, "64", out])
        #expect(r.status == 0, "\(r.err)")
        // The file the C program wrote is a model file the SDK reads.
        let m = try ModelFile.read(contentsOf: out)
        #expect(m.layer == "fitted-from-c" && m.precision == .float16)
    }

    @Test("a regression model fitted from C buffers with targets scores as the SDK's; bad targets are refused")
    func regressionFromBuffers() throws {
        let exe = try Self.compiled.get()
        let dir = Self.root.appendingPathComponent("Samples/Data/digits-rotation")
        func d(_ n: String) -> String { dir.appendingPathComponent(n).path }
        let r = try Self.shell([
            exe, "regression", d("train_h2.npy"), d("train_targets.npy"), d("calibration_h2.npy"),
            d("calibration_targets.npy"), d("test_h2.npy"), "32", d("calibration_predictions.npy"),
            d("test_predictions.npy"),
        ])
        #expect(r.status == 0, "\(r.err)")
        // The same fit through the SDK gives the same numbers bit for bit.
        var cfg = FitConfiguration(family: .regressionTied, layerName: "h2")
        cfg.targetBinCount = 8
        let model = try LatentModelFitter.fit(
            try FileActivations(path: d("train_h2.npy")),
            targets: try TensorFile(path: d("train_targets.npy")).doubles(nil),
            calibration: try FileActivations(path: d("calibration_h2.npy")),
            calibrationTargets: try TensorFile(path: d("calibration_targets.npy")).doubles(nil),
            configuration: cfg
        )
        let test = try TensorFile(path: d("test_h2.npy")).floats(nil)
        let all = r.out.split(separator: "\n")
        let lines = all.filter { !$0.hasPrefix("D ") }
        #expect(lines.count == test.count / 32)
        let ws = model.makeWorkspace()
        for (i, line) in lines.enumerated() {
            let v = line.split(separator: " ").map { Double(String($0))! }
            let s = try test.withUnsafeBufferPointer {
                try model.score(UnsafeBufferPointer(rebasing: $0[(i * 32)..<((i + 1) * 32)]), workspace: ws)
            }
            let interval = try #require(model.predictionInterval(s, level: 0.9))
            let expected = [
                s.prediction!, s.predictiveSpread!, model.pValue(.spread, s.predictiveSpread!)!, interval.lowerBound,
                interval.upperBound,
            ]
            #expect(v == expected, "row \(i): C \(v) vs SDK \(expected)")
        }
        // The disagreement with the host's predictions: the same distances and p-values as the SDK's monitor.
        let calibrated = try LatentModelFitter.calibrateDisagreement(
            model,
            calibration: try FileActivations(path: d("calibration_h2.npy")),
            hostPredictions: try TensorFile(path: d("calibration_predictions.npy")).doubles(nil)
        )
        let monitor = try Monitor(
            configuration: MonitorConfiguration(
                layers: [MonitoredLayer(model: calibrated)],
                policy: AlertPolicy(inputAlpha: 1e-9, aleatoricAlpha: nil, disagreementAlpha: 0.05),
                outputs: (.prediction, 1)
            )
        )
        let host = try TensorFile(path: d("test_predictions.npy")).doubles(nil)
        let disagreements = all.filter { $0.hasPrefix("D ") }
        #expect(disagreements.count == test.count / 32)
        for (i, line) in disagreements.enumerated() {
            let v = line.split(separator: " ").dropFirst().map { String($0) }
            let a = try test.withUnsafeBufferPointer { t in
                try [Float(host[i])].withUnsafeBufferPointer {
                    try monitor.assess(
                        .float32([UnsafeBufferPointer(rebasing: t[(i * 32)..<((i + 1) * 32)])]),
                        outputs: $0
                    )
                }
            }
            #expect(Double(v[0]) == a.disagreement && Double(v[1]) == a.disagreementPValue, "row \(i): C \(v)")
            #expect(UInt8(v[2]) == a.flags.rawValue, "row \(i): flags C \(v[2]) vs SDK \(a.flags.rawValue)")
        }
        #expect(disagreements.contains { UInt8($0.split(separator: " ")[3])! & 16 != 0 })
    }

    /// The optimised library, when built (`.ci/run` builds it before the tests; `swift build -c release --product
    /// LatentWatchC` does). A debug build's code allocates where the optimiser removes it, so the allocation
    /// promise is checked on the library hosts ship.
    static let releaseLibrary = root.appendingPathComponent(".build/release/libLatentWatchC.so").path

    @Test(
        "steady-state lw_monitor_assess and lw_model_score allocate nothing (release library, malloc counted)",
        .enabled(if: FileManager.default.fileExists(atPath: releaseLibrary), "needs the release build of LatentWatchC")
    )
    func allocations() throws {
        _ = try Self.compiled.get()
        let dir = Self.work.appendingPathComponent("release")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let link = dir.appendingPathComponent("liblatentwatch.so").path
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: Self.releaseLibrary)
        let exe = dir.appendingPathComponent("capi_check").path
        let c = try Self.shell([
            "gcc", "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I", "Sources/CLatentWatch/include",
            "Tests/CAPITests/c/capi_check.c", "-L", dir.path, "-llatentwatch", "-Wl,-rpath,\(dir.path)", "-lpthread",
            "-lm", "-o", exe,
        ])
        #expect(c.status == 0, "\(c.err)")
        let r = try Self.shell([exe, "allocations", Self.fixtures.modelPaths[1], Self.fixtures.raw[1]])
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(r.out.contains("allocations: 0 in"), "\(r.out)")
    }

    @Test("the library exports exactly the header's functions, and needs at most glibc 2.35 and GLIBCXX_3.4.30")
    func exportsAndRequirements() throws {
        _ = try Self.compiled.get()
        let r = try Self.shell(["objdump", "-T", Self.library])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n")
        // Defined, global dynamic symbols: "ADDR g    DF .text SIZE VERSION NAME".
        let exported = lines.filter { $0.contains(" g ") && !$0.contains("*UND*") && !$0.contains("*ABS*") }
            .compactMap { $0.split(separator: " ").last.map(String.init) }
        // Exactly the functions the header declares.
        let header = try String(
            contentsOf: Self.root.appendingPathComponent("Sources/CLatentWatch/include/latentwatch.h"),
            encoding: .utf8
        )
        let declared = Set(
            header.split(separator: "\n").compactMap { line -> String? in
                guard !line.hasPrefix(" "), !line.hasPrefix("#"), !line.hasPrefix("typedef"),
                    let open = line.firstIndex(of: "("), let start = line[..<open].range(of: "lw_", options: .backwards)
                else { return nil }
                return String(line[start.lowerBound..<open])
            }
        )
        #expect(declared.count >= 26, "\(declared.sorted())")
        let extra = Set(exported).subtracting(declared).sorted()
        let missing = declared.subtracting(exported).sorted()
        #expect(
            extra.isEmpty && missing.isEmpty,
            "exported, not declared: \(extra); declared, not exported: \(missing)"
        )
        func newest(_ prefix: String) -> [Int] {
            lines.compactMap { line -> [Int]? in
                guard let r = line.range(of: "(\(prefix)") else { return nil }
                let v = line[r.upperBound...].prefix { $0.isNumber || $0 == "." }
                return v.split(separator: ".").compactMap { Int($0) }
            }.max { $0.lexicographicallyPrecedes($1) } ?? []
        }
        #expect(!([2, 35].lexicographicallyPrecedes(newest("GLIBC_"))), "needs GLIBC_\(newest("GLIBC_"))")
        #expect(!([3, 4, 30].lexicographicallyPrecedes(newest("GLIBCXX_"))), "needs GLIBCXX_\(newest("GLIBCXX_"))")
    }

    @Test("a C++ program compiles against the header and runs")
    func cplusplus() throws {
        _ = try Self.compiled.get()
        let exe = Self.work.appendingPathComponent("cpp_check").path
        let c = try Self.shell([
            "g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", "Sources/CLatentWatch/include",
            "Tests/CAPITests/c/cpp_check.cpp", "-L", Self.work.path, "-llatentwatch", "-Wl,-rpath,\(Self.work.path)",
            "-o", exe,
        ])
        #expect(c.status == 0, "\(c.err)")
        let r = try Self.shell([exe, Self.fixtures.modelPaths[0]])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("layer h1"))
    }
}

/// Data written by one thread and read by another once set.
final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private var done = false
    func set(_ d: Data) {
        lock.lock()
        data = d
        done = true
        lock.unlock()
    }
    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return done
    }
    var value: Data {
        lock.lock()
        defer { lock.unlock() }
        return data
    }
}
