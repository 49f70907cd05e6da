// An embedded server: a small HTTP service (Hummingbird) that runs a real trained model's forward pass in Swift
// (the digits MLP whose weights are bundled in Samples/Data/digits-mlp/mlp_weights.npz), hooks a LatentWatch
// Monitor into it, logs alerts with swift-log and runs both as services of one ServiceGroup.
//
//   swift run -c release latentwatch-sample-server            # listens on 127.0.0.1:8080
//   curl -s localhost:8080/predict -d '{"pixels": [...64 values in 0...1...]}'
import Foundation
import Hummingbird
import LatentWatch
import Logging
import ServiceLifecycle
import UnixSignals

/// The digits MLP: 64 pixels -> 128 ReLU (h1) -> 64 ReLU (h2) -> 6 logits, weights from scikit-learn.
struct DigitsMLP: Sendable {
    let w1: [Float], b1: [Float], w2: [Float], b2: [Float], w3: [Float], b3: [Float]

    init(npz: NumpyArchive) throws {
        func get(_ k: String) throws -> [Float] {
            guard let a = npz.arrays[k] else { throw LatentWatchError(.malformedFile, "weights archive lacks \(k)") }
            return a.floats()
        }
        w1 = try get("W1")
        b1 = try get("b1")
        w2 = try get("W2")
        b2 = try get("b2")
        w3 = try get("W3")
        b3 = try get("b3")
    }

    static func dense(_ x: [Float], _ w: [Float], _ b: [Float], relu: Bool) -> [Float] {
        let n = b.count
        var out = b
        for i in 0..<x.count where x[i] != 0 {
            let row = i * n
            for j in 0..<n { out[j] += x[i] * w[row + j] }
        }
        return relu ? out.map { max($0, 0) } : out
    }

    /// The forward pass, returning the monitored activations and the class probabilities.
    func forward(_ pixels: [Float]) -> (h1: [Float], h2: [Float], probabilities: [Float]) {
        let h1 = Self.dense(pixels, w1, b1, relu: true)
        let h2 = Self.dense(h1, w2, b2, relu: true)
        let logits = Self.dense(h2, w3, b3, relu: false)
        let m = logits.max() ?? 0
        let e = logits.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return (h1, h2, e.map { $0 / s })
    }
}

struct PredictRequest: Decodable {
    var pixels: [Float]
    var requestID: String?
    enum CodingKeys: String, CodingKey {
        case pixels
        case requestID = "request_id"
    }
}

struct PredictResponse: ResponseEncodable {
    var predictedDigit: Int
    var probabilities: [Float]
    var surprise: [String: Double]
    var pValues: [String: Double]
    var fusedPValue: Double
    var entropyPValue: Double?
    var flags: [String]
    var index: Int
    enum CodingKeys: String, CodingKey {
        case predictedDigit = "predicted_digit"
        case probabilities, surprise
        case pValues = "p_values"
        case fusedPValue = "fused_p_value"
        case entropyPValue = "entropy_p_value"
        case flags, index
    }
}

func dataDirectory() throws -> URL {
    let candidates = [
        URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(
            "Samples/Data/digits-mlp"
        ),
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Data/digits-mlp"),
    ]
    for c in candidates where FileManager.default.fileExists(atPath: c.appendingPathComponent("mlp_weights.npz").path) {
        return c
    }
    throw LatentWatchError(.malformedFile, "Samples/Data/digits-mlp not found; run from the repository root")
}

/// Fits one layer's model on the bundled activations (a host would load a .lwm file made by `latentwatch fit`).
func fitLayer(_ layer: String, _ dir: URL) throws -> MonitoredLayer {
    let train = try NumpyArray(contentsOf: dir.appendingPathComponent("train_\(layer).npy").path)
    let cal = try NumpyArray(contentsOf: dir.appendingPathComponent("calibration_\(layer).npy").path)
    let labels = try NumpyArray(contentsOf: dir.appendingPathComponent("train_labels.npy").path).ints()
    let model = try LatentModelFitter.fit(
        InMemoryActivations(values: train.floats(), shape: [train.shape[1]], labels: labels),
        calibration: InMemoryActivations(values: cal.floats(), shape: [cal.shape[1]]),
        configuration: FitConfiguration(family: .gda, layerName: layer)
    )
    return MonitoredLayer(model: model)
}

LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
let logger = Logger(label: "latentwatch.sample")
let port = Int(ProcessInfo.processInfo.environment["PORT"] ?? "") ?? 8080

/// Runs a start-up step; a failure (a missing data directory, an unreadable or damaged model file) is logged with
/// what failed, and the process exits with status 1 instead of trapping.
func startUp<T>(_ what: String, _ body: () throws -> T) -> T {
    do { return try body() } catch {
        logger.critical("cannot start: \(what): \(error)")
        exit(1)
    }
}

let dir = startUp("the digits data") { try dataDirectory() }
let mlp = startUp("the MLP's weights") {
    try DigitsMLP(npz: NumpyArchive(contentsOf: dir.appendingPathComponent("mlp_weights.npz").path))
}
/// The layers' models: `MODEL_DIR/h1.lwm` and `MODEL_DIR/h2.lwm` when MODEL_DIR is set, else fitted here.
func loadLayers() throws -> [MonitoredLayer] {
    guard let models = ProcessInfo.processInfo.environment["MODEL_DIR"] else {
        return [try fitLayer("h1", dir), try fitLayer("h2", dir)]
    }
    return try ["h1", "h2"].map { (layer: String) in
        MonitoredLayer(name: layer, model: try ModelFile.read(contentsOf: "\(models)/\(layer).lwm"))
    }
}

let monitor = startUp("the models") {
    try Monitor(
        configuration: MonitorConfiguration(layers: try loadLayers()),
        sinks: [LoggerSink(logger: logger)],
        logger: logger
    )
}

// SIGHUP loads the models again and swaps them in while requests keep coming; a file that cannot be read, or does
// not fit its layer, leaves the old models serving.
let hangups = await UnixSignalsSequence(trapping: .sighup)
let reloader = Task.detached {
    for await _ in hangups {
        do {
            try monitor.replaceModels(try loadLayers())
            logger.info("models reloaded", metadata: ["generation": "\(monitor.modelGeneration)"])
        } catch {
            logger.error("reloading the models failed; the old models keep serving", metadata: ["error": "\(error)"])
        }
    }
}

let router = Router()
router.get("healthz") { _, _ in "ok\n" }
router.post("predict") { request, context -> PredictResponse in
    let body = try await request.decode(as: PredictRequest.self, context: context)
    guard body.pixels.count == 64, body.pixels.allSatisfy({ $0.isFinite }) else {
        throw HTTPError(.badRequest, message: "pixels must be 64 finite values (an 8 x 8 image scaled to 0...1)")
    }
    let (h1, h2, probabilities) = mlp.forward(body.pixels)
    let a = try h1.withUnsafeBufferPointer { b1 in
        try h2.withUnsafeBufferPointer { b2 in try monitor.assess(.float32([b1, b2]), requestID: body.requestID) }
    }
    var flags: [String] = []
    if a.flags.contains(.outOfDistribution) { flags.append("out-of-distribution") }
    if a.flags.contains(.ambiguous) { flags.append("ambiguous") }
    if a.flags.contains(.shiftAlarm) { flags.append("shift-alarm") }
    if a.flags.contains(.windowAlarm) { flags.append("window-alarm") }
    return PredictResponse(
        predictedDigit: probabilities.indices.max { probabilities[$0] < probabilities[$1] } ?? 0,
        probabilities: probabilities,
        surprise: Dictionary(uniqueKeysWithValues: a.layers.map { ($0.name, $0.surprise) }),
        pValues: Dictionary(uniqueKeysWithValues: a.layers.map { ($0.name, $0.pValue) }),
        fusedPValue: a.fusedPValue,
        entropyPValue: a.entropyPValue,
        flags: flags,
        index: a.index
    )
}

let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
let group = ServiceGroup(
    configuration: .init(
        services: [.init(service: app), .init(service: monitor)],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger
    )
)
logger.info("digits model with LatentWatch monitor on http://127.0.0.1:\(port) (POST /predict, GET /healthz)")
try await group.run()
reloader.cancel()
