import ArgumentParser
import Foundation
import LatentWatch

#if canImport(Glibc)
import Glibc
#endif

/// Errors a command reports to the user: one line, and exit status 2 for bad input (a missing or damaged file,
/// a wrong shape), 1 for anything else.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    let status: Int32
    init(_ message: String, status: Int32 = 1) {
        description = message
        self.status = status
    }
}

/// Runs `body`, turning library errors into one clear line; the SDK's refusals of input are exit status 2.
func userFacing<T>(_ what: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ValidationError { throw e } catch let e as ExitCode { throw e } catch {
        throw CLIError("\(what): \(error)", status: error is LatentWatchError ? 2 : 1)
    }
}

enum Files {
    /// Reads labels: a whole file (one integer array), or array `key` of it.
    static func labels(_ path: String, key: String?) throws -> [Int] {
        try userFacing("labels") {
            let f = try TensorFile(path: path)
            if let key { return try f.ints(key) }
            let ints = f.tensors.filter { $0.dtype == .int64 || $0.dtype == .int32 }
            if f.tensors.count == 1 { return try f.ints(f.tensors[0].name) }
            if ints.count == 1 { return try f.ints(ints[0].name) }
            if let l = f.tensors.first(where: { $0.name == "labels" }) { return try f.ints(l.name) }
            throw CLIError("\(path) holds several arrays; choose the labels with --labels-key")
        }
    }

    /// Regression targets, one number per input: the file's only array, or the one named by `key`.
    /// Targets from a file: the array `key`, the only array, or one named "targets"; `keyOption` is the option that
    /// picks the array (for the message), when there is one.
    static func targets(_ path: String, key: String?, keyOption: String? = nil) throws -> [Double] {
        try userFacing("targets") {
            let f = try TensorFile(path: path)
            if let key { return try f.doubles(key) }
            if f.tensors.count == 1 { return try f.doubles(f.tensors[0].name) }
            if let t = f.tensors.first(where: { $0.name == "targets" }) { return try f.doubles(t.name) }
            throw CLIError(
                "\(path) holds several arrays and none named 'targets'; "
                    + (keyOption.map { "choose one with \($0)" } ?? "give a file holding only the targets")
            )
        }
    }

    /// Labels stored beside the activations (an integer array named "labels" in the same archive), if any.
    static func embeddedLabels(_ file: TensorFile, rows: Int) -> [Int]? {
        guard let t = file.tensors.first(where: { $0.name == "labels" }), t.rows == rows else { return nil }
        return try? file.ints(t.name)
    }

    static func readModel(_ path: String) throws -> LatentModel {
        try userFacing("model \(path)") { try ModelFile.read(contentsOf: path) }
    }

    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) != 0 }

    static func write(_ text: String, to path: String) throws {
        try userFacing("writing \(path)") { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }
    }
}

/// Progress lines on stderr: one updating line on a terminal, plain lines (at most a few per second)
/// otherwise.
final class ProgressPrinter {
    let terminal = Files.isTerminal(2)
    var last = Date.distantPast
    let start = Date()
    var open = false

    func update(_ text: String, force: Bool = false) {
        let now = Date()
        guard force || now.timeIntervalSince(last) >= (terminal ? 0.1 : 2) else { return }
        last = now
        let line = String(format: "[%6.1fs] ", now.timeIntervalSince(start)) + text
        if terminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            open = true
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    func finish() {
        if open { FileHandle.standardError.write(Data("\n".utf8)) }
        open = false
    }
}

func stderrLine(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// Refuses per-row values (`what`: "calibration targets", ...) whose count is not the calibration rows'.
func checkCalibrationCount(_ values: [Double]?, _ what: String, rows: Int) throws {
    if let values, values.count != rows {
        throw ValidationError("\(values.count) \(what) for \(rows) calibration activations")
    }
}

/// What `fit` and `merge` print about a regression model's targets: its bins, and whether its prediction
/// interval and its disagreement with the host's prediction are calibrated; nil for other models.
func targetsSummary(_ model: LatentModel) -> String? {
    guard let bins = model.targetBinCount else { return nil }
    return "targets: \(bins) bins; prediction interval "
        + (model.hasPredictionInterval ? "calibrated" : "not calibrated (no calibration targets)")
        + "; disagreement with the host's prediction "
        + (model.disagreementCalibrationCount > 0
            ? "calibrated on \(model.disagreementCalibrationCount) inputs"
            : "not calibrated (no --calibration-predictions)")
}

/// The stream-alert flags shared by replay and demo.
struct AlertOptions: ParsableArguments {
    @Option(
        help:
            "Per-input alert level: alert when the fused epistemic p-value (the layers' surprise, or surprise and neighbour distance) is at most this."
    )
    var alpha: Double = 0.01

    @Option(
        help:
            "Aleatoric alert level on the entropy p-value (on the predictive spread's p-value for regression models; 0 turns it off)."
    )
    var aleatoricAlpha: Double = 0.01

    @Option(
        help:
            "Coverage level of the prediction interval each assessment of a regression model carries (models fitted with calibration targets; 0 turns it off)."
    )
    var intervalLevel: Double = 0.9

    @Option(
        help:
            "Disagreement alert level: alert when the p-value of the distance between a regression host's own prediction and the model's is at most this (inputs that carry the host's prediction; models calibrated with fit --calibration-predictions; 0 turns it off)."
    )
    var disagreementAlpha: Double = 0.01

    @Option(help: "Sliding window length for the rate test (0 turns it off).")
    var window: Int = 200

    @Option(help: "Probability that one full in-distribution window fires.")
    var windowLevel: Double = 1e-4

    @Option(
        help: "Shift detector: anytime (alarm once; P(any false alarm) <= delta), change (restart after alarms), off."
    )
    var shift: ShiftChoice = .anytime

    @Option(help: "Anytime mode: bound on the probability of any false alarm.")
    var delta: Double = 0.01

    @Option(help: "Change mode: mean run length between false alarms.")
    var meanRunLength: Double = 10_000

    @Option(
        help:
            "Shift detector's betting functions: mixture (near and far shifts), power (far), linear (Vovk's simple jumper)."
    )
    var betting: ShiftBetting = .mixture

    @Option(help: "Shift detector's jump rate between its betting functions.")
    var jumpRate: Double = 0.001

    @Option(
        help:
            "Anytime shift detector's reference: calibration-and-stream (each input ranked among the calibration set and the stream's earlier inputs; P(any false alarm) <= delta on average over calibration sets) or calibration-set (the calibration set alone, corrected; the bound holds given the set, slower to alarm)."
    )
    var shiftReference: ShiftReference = .calibrationAndStream

    @Option(
        help:
            "Fusion of the layers' p-values: automatic (the models' joint calibration when they carry one for exactly these layers, from `latentwatch calibrate-fusion`; otherwise bonferroni), calibrated (the joint calibration, required), bonferroni, or cauchy."
    )
    var fusion: PValueFusion = .automatic

    @Flag(
        help:
            "Do not correct the window's null rate, and the shift detector's p-values against the calibration set alone, for the fixed calibration set (see Docs/Statistics.md)."
    )
    var noCalibrationCorrection = false

    func policy() throws -> AlertPolicy {
        guard alpha > 0, alpha < 1 else { throw ValidationError("--alpha must be in (0, 1)") }
        guard jumpRate >= 0, jumpRate <= 1 else { throw ValidationError("--jump-rate must be in [0, 1]") }
        guard intervalLevel >= 0, intervalLevel < 1 else {
            throw ValidationError("--interval-level must be in (0, 1), or 0 for no prediction intervals")
        }
        guard disagreementAlpha >= 0, disagreementAlpha < 1 else {
            throw ValidationError("--disagreement-alpha must be in (0, 1), or 0 for no disagreement alerts")
        }
        let shiftMode: ShiftDetection?
        switch shift {
        case .anytime: shiftMode = .anytime(delta: delta)
        case .change: shiftMode = .changeDetection(meanRunLength: meanRunLength)
        case .off: shiftMode = nil
        }
        return AlertPolicy(
            inputAlpha: alpha,
            aleatoricAlpha: aleatoricAlpha > 0 ? aleatoricAlpha : nil,
            window: window > 0 ? .init(length: window, windowLevel: windowLevel) : nil,
            shift: shiftMode,
            jumpRate: jumpRate,
            shiftBetting: betting,
            fusion: fusion,
            correctForCalibrationSet: !noCalibrationCorrection,
            shiftReference: shiftReference,
            predictionIntervalLevel: intervalLevel > 0 ? intervalLevel : nil,
            disagreementAlpha: disagreementAlpha > 0 ? disagreementAlpha : nil
        )
    }
}

extension ActivationStatistics {
    /// The row ranges held, for messages: "0..<200, 450..<649".
    var rowsText: String { rows.rowsText }
}

extension [Range<Int>] {
    /// Row ranges for messages: "0..<200, 450..<649".
    var rowsText: String { map(\.description).joined(separator: ", ") }
}

/// How a monitor of these models fuses their p-values, in words ("the joint calibration of the Cauchy statistic on
/// 217 inputs", "Bonferroni's correction").
enum FusionText {
    static func describe(_ fusion: PValueFusion, models: [LatentModel]) -> String {
        guard models.count >= 2 else { return "one layer, no fusion" }
        let layers = models.map { MonitoredLayer(name: $0.layer, model: $0) }
        if let j = try? fusion.jointCalibration(for: layers) {
            let name = j.statistic == .cauchy ? "Cauchy" : "Fisher"
            return "joint calibration of the \(name) statistic on \(j.count) inputs"
        }
        return fusion == .cauchy ? "Cauchy combination" : "Bonferroni's correction"
    }
}
