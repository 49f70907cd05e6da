import ArgumentParser
import Foundation
import LatentWatch

/// Which per-input value `score` writes.
enum ScoreColumn: String, CaseIterable, ExpressibleByArgument {
    case surprise
    case pValue = "p-value"
    case surprisePValue = "surprise-p-value"
    case neighbour
    case neighbourPValue = "neighbour-p-value"
    case entropy
    case entropyPValue = "entropy-p-value"
    case mahalanobis
    case relativeMahalanobis = "relative-mahalanobis"
    case logDensity = "log-density"
    case predicted
    case prediction
    case spread
    case spreadPValue = "spread-p-value"
    case intervalLow = "interval-low"
    case intervalHigh = "interval-high"

    /// Whether the column exists only for regression models.
    var needsTargetBins: Bool { [.prediction, .spread, .spreadPValue, .intervalLow, .intervalHigh].contains(self) }

    func value(_ s: LatentScores, model: LatentModel, level: Double = 0.9) -> Double {
        switch self {
        case .surprise: return s.surprise
        case .pValue: return model.epistemicPValue(s) ?? .nan
        case .surprisePValue: return model.calibration.pValue(.surprise, s.surprise) ?? .nan
        case .neighbour: return s.neighbourDistance ?? .nan
        case .neighbourPValue: return s.neighbourDistance.flatMap { model.calibration.pValue(.neighbour, $0) } ?? .nan
        case .entropy: return s.entropy
        case .entropyPValue: return model.calibration.pValue(.entropy, s.entropy) ?? .nan
        case .mahalanobis: return s.mahalanobis
        case .relativeMahalanobis: return s.relativeMahalanobis
        case .logDensity: return s.logDensity
        case .predicted: return Double(s.predictedLabel ?? s.predictedComponent)
        case .prediction: return s.prediction ?? .nan
        case .spread: return s.predictiveSpread ?? .nan
        case .spreadPValue: return s.predictiveSpread.flatMap { model.calibration.pValue(.spread, $0) } ?? .nan
        case .intervalLow: return model.predictionInterval(s, level: level)?.lowerBound ?? .nan
        case .intervalHigh: return model.predictionInterval(s, level: level)?.upperBound ?? .nan
        }
    }
}

/// Scores every row of a file with one model, in batches.
func scoreFile(
    _ model: LatentModel,
    file: TensorFile,
    key: String?,
    _ body: (Int, Result<LatentScores, LatentWatchError>) throws -> Void
) throws {
    let t = try file.tensor(key)
    guard t.rowElements == model.preparation.inputCount else {
        throw CLIError(
            "\(file.path): array '\(t.name)' has rows of shape \(t.rowShape) (\(t.rowElements) values); the model of layer '\(model.metadata.layer)' expects \(model.preparation.inputShape)"
        )
    }
    let ws = model.makeWorkspace()
    try file.forEachChunk(t.name, rowsPerChunk: 1024) { values, rows in
        let results = model.scoreBatch(values, count: rows.count, workspace: ws)
        for (i, r) in results.enumerated() { try body(rows.lowerBound + i, r) }
    }
}

/// One ranking value and its p-value for every row of a file that can be scored, and the count of rows that cannot.
func rowValues(
    _ m: LatentModel,
    file: TensorFile,
    key: String?,
    _ value: (LatentScores) -> (value: Double, pValue: Double)
) throws -> (values: [Double], pValues: [Double], failed: Int) {
    var v: [Double] = []
    var p: [Double] = []
    var failed = 0
    try scoreFile(m, file: file, key: key) { _, r in
        if case .success(let s) = r {
            let x = value(s)
            v.append(x.value)
            p.append(x.pValue)
        } else {
            failed += 1
        }
    }
    return (v, p, failed)
}

/// The values of one score kind and their conformal p-values.
func scoreValues(
    _ m: LatentModel,
    file: TensorFile,
    key: String?,
    kind: ScoreKind
) throws
    -> (values: [Double], pValues: [Double], failed: Int)
{
    try rowValues(m, file: file, key: key) { s in (s.value(kind), m.calibration.pValue(kind, s.value(kind)) ?? .nan) }
}

/// The epistemic ranking score (``LatentModel/epistemicRankingScore(_:)``) and p-value of every row of a file.
func epistemicValues(
    _ m: LatentModel,
    file: TensorFile,
    key: String?
) throws
    -> (values: [Double], pValues: [Double], failed: Int)
{
    try rowValues(m, file: file, key: key) { s in
        (m.epistemicRankingScore(s) ?? s.surprise, m.epistemicPValue(s) ?? .nan)
    }
}

/// `latentwatch score`: one score per input row, row-aligned with the input.
struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score every row of an activation file with a model; write .npy or CSV, row-aligned with the input.",
        discussion: """
            Rows that cannot be scored (NaN/Inf, for example) get NaN and are counted on stderr.
            Example: latentwatch score --model h1.lwm --input test_h1.npy --output surprise.npy
            """
    )

    @Option(help: "Model file (.lwm).")
    var model: String

    @Option(help: "Activations (.npy, .npz, safetensors or recording).")
    var input: String

    @Option(help: "Array to read when the input holds several (default: the model's layer name, if present).")
    var key: String?

    @Option(
        help: ArgumentHelp(
            "Score to write (repeat for several CSV columns): \(ScoreColumn.allCases.map(\.rawValue).joined(separator: ", "))."
        )
    )
    var score: [ScoreColumn] = []

    @Option(help: "Coverage of interval-low and interval-high (regression models), in (0, 1).")
    var intervalLevel: Double = 0.9

    @Option(help: "Output file: .npy (one score) or .csv (any number); chosen by --format or the extension.")
    var output: String

    @Option(help: "npy or csv (default: from the output's extension).")
    var format: ScoreFileFormat?

    func run() throws {
        let m = try Files.readModel(model)
        let file = try userFacing("input") { try TensorFile(path: input) }
        for w in file.warnings { stderrLine("warning: \(w)") }
        let key = self.key ?? (file.tensors.contains { $0.name == m.metadata.layer } ? m.metadata.layer : nil)
        let columns = score.isEmpty ? [ScoreColumn.surprise] : score
        guard intervalLevel > 0, intervalLevel < 1 else { throw ValidationError("--interval-level must be in (0, 1)") }
        if m.targetBinCount == nil, let c = columns.first(where: \.needsTargetBins) {
            throw ValidationError("--score \(c.rawValue) needs a regression model; \(model) is \(m.family)")
        }
        if !m.hasPredictionInterval, let c = columns.first(where: { $0 == .intervalLow || $0 == .intervalHigh }) {
            throw ValidationError(
                "--score \(c.rawValue): \(model) has no calibrated interval (it was fitted without calibration targets)"
            )
        }
        let fmt = format ?? (output.lowercased().hasSuffix(".csv") ? .csv : .npy)
        if fmt == .npy && columns.count != 1 {
            throw ValidationError("a .npy output holds one score; use .csv for several")
        }
        var values: [[Double]] = Array(repeating: [], count: columns.count)
        var failed = 0
        var firstError: String?
        try userFacing("scoring") {
            try scoreFile(m, file: file, key: key) { _, r in
                switch r {
                case .success(let s):
                    for (c, col) in columns.enumerated() {
                        values[c].append(col.value(s, model: m, level: intervalLevel))
                    }
                case .failure(let e):
                    failed += 1
                    if firstError == nil { firstError = e.description }
                    for c in columns.indices { values[c].append(.nan) }
                }
            }
        }
        if fmt == .npy {
            try userFacing("writing \(output)") {
                try NumpyArray.write(values[0], shape: [values[0].count], to: output)
            }
        } else {
            var text = "row," + columns.map(\.rawValue).joined(separator: ",") + "\n"
            for i in 0..<values[0].count {
                text += "\(i)," + columns.indices.map { "\(values[$0][i])" }.joined(separator: ",") + "\n"
            }
            try Files.write(text, to: output)
        }
        print(
            "scored \(values[0].count) rows with \(model) -> \(output) (\(columns.map(\.rawValue).joined(separator: ", ")))"
        )
        if failed > 0 {
            stderrLine("warning: \(failed) rows could not be scored and are NaN; first: \(firstError ?? "")")
        }
    }
}
