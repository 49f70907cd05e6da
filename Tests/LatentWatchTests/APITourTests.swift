import Foundation
import LatentWatch
import Logging
import ServiceLifecycle
import Testing

/// Docs/API.md's example, as written there (the file paths moved to a scratch directory, no signal handler): it must compile
/// against the SDK and run.
@Suite struct APITourTests {
    @Test func theTourRuns() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lw-tour-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let modelPath = dir.appendingPathComponent("penultimate.lwm").path
        let alertsPath = dir.appendingPathComponent("alerts.jsonl").path

        // Stand-in training data: 2,000 activations of 512 floats in 10 classes (a host passes its layer's real ones).
        let trainLabels = (0..<2_000).map { $0 % 10 }
        let trainActivations: [Float] = trainLabels.flatMap { c -> [Float] in
            (0..<512).map { i -> Float in Float.random(in: -1...1) + (i % 10 == c ? 2 : 0) }
        }

        // Fit (20 % of the rows are held out for calibration), write the model file, read it back.
        let source = InMemoryActivations(values: trainActivations, shape: [512], labels: trainLabels)
        let fitted = try LatentModelFitter.fit(
            source,
            configuration: FitConfiguration(family: .gda, layerName: "penultimate")
        )
        try ModelFile.write(fitted, to: modelPath, options: .init(precision: .float16))
        let model = try ModelFile.read(contentsOf: modelPath)

        // A monitor of that layer whose alerts go to a JSON-lines file, run as a service of the host's ServiceGroup.
        let logger = Logger(label: "host")
        let monitor = try Monitor(
            configuration: MonitorConfiguration(layers: [MonitoredLayer(model: model)]),
            sinks: [JSONLinesSink(path: alertsPath)],
            logger: logger
        )
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: monitor)], gracefulShutdownSignals: [], logger: logger)
        )
        let services = Task { try await group.run() }

        // In the forward pass: assess one input, reusing one Assessment per thread.
        var assessment = Assessment()
        let activation = (0..<512).map { _ in Float.random(in: -1...1) }  // the layer's activation for this input
        try activation.withUnsafeBufferPointer { row in
            try monitor.assess(.float32([row]), requestID: "req-42", into: &assessment)
        }
        if assessment.flags.contains(.outOfDistribution) {
            logger.warning("unusual input", metadata: ["p": "\(assessment.fusedPValue)"])
        }

        await group.triggerGracefulShutdown()  // delivers the remaining alerts and flushes alerts.jsonl
        try await services.value

        #expect(model.fingerprint != nil && model.precision == .float16 && model.layer == "penultimate")
        #expect(assessment.index == 0 && assessment.requestID == "req-42")
    }
}
