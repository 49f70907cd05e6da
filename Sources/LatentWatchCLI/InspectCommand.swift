import ArgumentParser
import Foundation
import LatentWatch

/// `latentwatch inspect FILE`: what a model file holds, or why it is invalid.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a model file holds, or why it is invalid."
    )

    @Argument(help: "A .lwm model file.")
    var file: String

    func run() throws {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file))) } catch {
            throw ValidationError("cannot read \(file): \(error.localizedDescription)")
        }
        let decoded: (LatentModel, (version: String, sections: Int, metadataJSON: String))
        do {
            decoded = (try ModelFile.decode(bytes), try ModelFile.describe(bytes))
        } catch {
            print("invalid: \(error)")
            throw ExitCode(2)
        }
        do {
            let (model, info) = decoded
            print(
                "file:        \(file) (\(bytes.count) bytes, format \(info.version), \(info.sections) sections, checksums OK)"
            )
            print("layer:       \(model.metadata.layer), input shape \(model.preparation.inputShape)")
            print(
                "preparation: pooling \(model.preparation.options.pooling.rawValue), l2 \(model.preparation.options.l2Normalize), latent dimension \(model.preparation.outputDimension)"
            )
            print(
                "density:     \(model.density.family), \(model.density.componentCount) components, \(model.density.precision.rawValue)"
            )
            print(
                "calibration: "
                    + ScoreKind.allCases.compactMap { k in
                        model.calibration.distributions[k].map { "\(k.rawValue) (\($0.count))" }
                    }.joined(separator: ", ")
            )
            print("fit:         \(model.metadata.fitSamples) samples; \(model.metadata.notes)")
            print("written by:  LatentWatch \(model.metadata.libraryVersion) at \(model.metadata.created)")
        }
    }
}
