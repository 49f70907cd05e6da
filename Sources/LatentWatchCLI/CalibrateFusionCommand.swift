import ArgumentParser
import Foundation
import LatentWatch

/// `latentwatch calibrate-fusion`: calibrates the fused p-value of several layers' models on the inputs they were
/// all calibrated on, and writes each model back carrying the joint calibration.
struct CalibrateFusionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate-fusion",
        abstract: "Calibrate the fused p-value of several layers' models on their shared calibration inputs.",
        discussion: """
            Each --model was fitted on one layer's activations of the same inputs; give each its calibration \
            activations with --calibration, in the same order, row i being the same input on every layer: the \
            --calibration file its fit was given or, with --carved, the --activations its fit carved the \
            calibration inputs off (same --seed). Each layer's scores are checked against its model's calibration. \
            The models are written back (or into --output-directory) carrying one joint calibration; a monitor of \
            exactly these layers (serve, replay, the SDK) then fuses their p-values into a conformal p-value, \
            valid at every level (Docs/Statistics.md, "Jointly calibrated fusion").
            Example: latentwatch calibrate-fusion --model h1.lwm --calibration calibration_h1.npy \
            --model h2.lwm --calibration calibration_h2.npy
            """
    )

    @Option(name: .customLong("model"), help: "A layer's model file (two or more, in the order of --calibration).")
    var models: [String] = []

    @Option(name: .customLong("calibration"), help: "The calibration activations of each --model, in the same order.")
    var calibrations: [String] = []

    @Option(
        name: .customLong("key"),
        help: "Array to read from each calibration file (npz member, safetensors tensor, recorded layer), in order."
    )
    var keys: [String] = []

    @Flag(
        help: "The fits carved their calibration inputs off these activations (their default, without --calibration)."
    )
    var carved = false

    @Option(help: "With --carved: the fits' --seed.")
    var seed: UInt64 = 0

    @Option(help: "How the layers' p-values combine: cauchy or fisher.")
    var statistic: JointCalibration.Statistic = .cauchy

    @Option(help: "Write the models here (same file names) instead of over the --model files.")
    var outputDirectory: String?

    func validate() throws {
        guard models.count >= 2 else { throw ValidationError("give two or more --model files") }
        guard calibrations.count == models.count else {
            throw ValidationError(
                "give one --calibration per --model (\(models.count) models, \(calibrations.count) files)"
            )
        }
        guard keys.isEmpty || keys.count == models.count else {
            throw ValidationError("give one --key per --model, or none")
        }
    }

    func run() throws {
        let loaded = try models.map { try Files.readModel($0) }
        let sources: [any ActivationSource] = try calibrations.enumerated().map { i, path in
            try userFacing("calibration activations \(path)") {
                try FileActivations(path: path, key: keys.isEmpty ? nil : keys[i])
            }
        }
        let carve = carved ? FitConfiguration(splitSeed: seed) : nil
        let joint = try userFacing("joint calibration") {
            try LatentModelFitter.calibrateJointly(loaded, calibration: sources, carvedBy: carve, statistic: statistic)
        }
        if let outputDirectory {
            try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
        }
        for (i, path) in models.enumerated() {
            let target =
                outputDirectory.map {
                    URL(fileURLWithPath: $0).appendingPathComponent(URL(fileURLWithPath: path).lastPathComponent).path
                } ?? path
            try userFacing("write \(target)") { try ModelFile.write(joint[i], to: target) }
            let written = try Files.readModel(target)
            print(
                "\(target): layer '\(written.layer)', fingerprint "
                    + "\(written.fingerprint.map { String(format: "%08x", $0) } ?? "-")"
            )
        }
        let j = joint[0].jointCalibration!
        print(
            "joint calibration: \(j.statistic.rawValue) statistic of "
                + zip(j.layers, j.kinds).map { $1 == .surprise ? $0 : "\($0) (neighbour distance)" }
                .joined(separator: ", ") + " on \(j.count) inputs"
        )
    }
}

extension JointCalibration.Statistic: ExpressibleByArgument {}
