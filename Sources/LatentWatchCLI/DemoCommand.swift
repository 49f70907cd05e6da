import ArgumentParser
import Foundation
import LatentWatch

/// `latentwatch demo`: fits on bundled real activations, scores in- and out-of-distribution inputs and
/// replays a stream in which out-of-distribution inputs appear, printing per-input alerts.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Fit on the bundled digits-MLP activations, score ID and OOD inputs, and alert on a stream."
    )

    @Option(help: "Folder with the bundled data (default: Samples/Data/digits-mlp found from here or the source tree).")
    var data: String?

    @Option(help: "Layer to monitor (h1 or h2).")
    var layer: String = "h1"

    @Option(help: "Per-input alert level: alert when the surprise p-value is below it.")
    var alpha: Double = 0.01

    @Option(help: "Where to write the fitted model file.")
    var output: String = FileManager.default.temporaryDirectory.appendingPathComponent("latentwatch-demo.lwm").path

    func run() throws {
        let dir = try DemoData.locate(data)
        func load(_ name: String) throws -> NumpyArray {
            try NumpyArray(contentsOf: dir.appendingPathComponent(name).path)
        }
        let train = try load("train_\(layer).npy")
        let cal = try load("calibration_\(layer).npy")
        let dim = train.shape[1]
        let start = Date()
        let model = try LatentModelFitter.fit(
            InMemoryActivations(values: train.floats(), shape: [dim], labels: try load("train_labels.npy").ints()),
            calibration: InMemoryActivations(values: cal.floats(), shape: [dim]),
            configuration: FitConfiguration(family: .gda, layerName: layer)
        )
        let fitMs = Date().timeIntervalSince(start) * 1000
        try ModelFile.write(model, to: output, options: .init(precision: .float16))
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print(
            "LatentWatch demo: digits MLP (scikit-learn digits, classes 0-5 in distribution), layer \(layer), \(dim)-d"
        )
        print(
            String(
                format:
                    "fitted class-conditional Gaussians on %d activations in %.0f ms; calibrated on %d held-out; model file %@ (%d bytes, float16)",
                train.shape[0],
                fitMs,
                cal.shape[0],
                output,
                size
            )
        )
        print("regularisation: \(model.metadata.notes)")

        let ws = model.makeWorkspace()
        func surprises(_ a: NumpyArray) throws -> [Double] {
            let v = a.floats()
            return try (0..<a.shape[0]).map { i in
                try Array(v[(i * dim)..<((i + 1) * dim)]).withUnsafeBufferPointer {
                    try model.score($0, workspace: ws).surprise
                }
            }
        }
        let test = try surprises(load("test_\(layer).npy"))
        let threshold = model.calibration.threshold(.surprise, falsePositiveRate: alpha) ?? .infinity
        print("")
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        print(
            pad("set", 28)
                + String(format: " %8@ %10@ %12@", "inputs" as NSString, "AUROC" as NSString, "alert rate" as NSString)
        )
        print(
            pad("test (digits 0-5, ID)", 28)
                + String(
                    format: " %8d %10@ %11.1f%%",
                    test.count,
                    "-" as NSString,
                    100 * Double(test.filter { $0 > threshold }.count) / Double(test.count)
                )
        )
        for (name, file) in [
            ("digits 6-9 (near OOD)", "ood_digits"), ("inverted images (far OOD)", "ood_inverted"),
            ("uniform noise (far OOD)", "ood_noise"),
        ] {
            let s = try surprises(load("\(file)_\(layer).npy"))
            let rate = Double(s.filter { $0 > threshold }.count) / Double(s.count)
            print(
                pad(name, 28)
                    + String(
                        format: " %8d %10.4f %11.1f%%",
                        s.count,
                        ROC.auroc(negatives: test, positives: s),
                        100 * rate
                    )
            )
        }

        let stream = try load("stream_\(layer).npy")
        let oodStart = try load("stream_ood_start.npy").ints()[0]
        let sv = stream.floats()
        print("")
        print(
            "stream of \(stream.shape[0]) inputs; out-of-distribution inputs begin at index \(oodStart); alert when p < \(alpha):"
        )
        var before = 0
        var after = 0
        var shown = 0
        for i in 0..<stream.shape[0] {
            let s = try Array(sv[(i * dim)..<((i + 1) * dim)]).withUnsafeBufferPointer {
                try model.score($0, workspace: ws)
            }
            let p = model.calibration.pValue(.surprise, s.surprise) ?? 1
            if p < alpha {
                if i < oodStart { before += 1 } else { after += 1 }
                if shown < 12 {
                    print(
                        String(
                            format: "  ALERT input %3d  surprise %9.1f  p = %.4f  predicted %d  entropy %.3g",
                            i,
                            s.surprise,
                            p,
                            s.predictedLabel ?? -1,
                            s.entropy
                        )
                    )
                    shown += 1
                }
            }
        }
        if before + after > shown { print("  ... \(before + after - shown) more") }
        print(
            "alerts before index \(oodStart): \(before) of \(oodStart) (expected about \(Int((alpha * Double(oodStart)).rounded())) false alarms at alpha = \(alpha))"
        )
        print("alerts from index \(oodStart): \(after) of \(stream.shape[0] - oodStart)")
    }
}

enum DemoData {
    static func locate(_ explicit: String?) throws -> URL {
        var candidates: [URL] = []
        if let explicit { candidates.append(URL(fileURLWithPath: explicit)) }
        candidates.append(
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(
                "Samples/Data/digits-mlp"
            )
        )
        candidates.append(
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("Samples/Data/digits-mlp")
        )
        for c in candidates where FileManager.default.fileExists(atPath: c.appendingPathComponent("train_h1.npy").path)
        { return c }
        throw ValidationError(
            "bundled data not found; run from the repository root or pass --data Samples/Data/digits-mlp"
        )
    }
}
