import ArgumentParser
import Foundation
import LatentWatch
import LatentWatchNumerics

/// `latentwatch inspect FILE`: what a model file holds, or why it is invalid.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a model, recording or activation file holds, or why it is invalid."
    )

    @Argument(help: "A .lwm model file, a .lwr recording, or .npy/.npz/safetensors activations.")
    var file: String?

    @Flag(help: "Show what computes here instead: the CPU, the scoring kernels and the OpenBLAS core in use.")
    var system = false

    func validate() throws {
        if system == (file != nil) {
            throw ValidationError(system ? "give either FILE or --system, not both" : "missing FILE (or --system)")
        }
    }

    func run() throws {
        guard let file else {
            Self.printSystem()
            return
        }
        let head = (try? FileHandle(forReadingFrom: URL(fileURLWithPath: file)).read(upToCount: 8)) ?? nil
        if let head, Array(head.prefix(4)) != [0x89, 0x4C, 0x57, 0x4D] {
            try inspectData()
            return
        }
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file))) } catch {
            throw ValidationError("cannot read \(file): \(error.localizedDescription)")
        }
        switch try? StatisticsFile.decodeContents(bytes) {
        case .statistics(let stats):
            let c = stats.configuration
            print("file:        \(file) (\(bytes.count) bytes, statistics for `latentwatch merge`, checksums OK)")
            print("layer:       \(c.layerName), input shape \(stats.inputShape)")
            print("rows:        \(stats.fitSamples) (\(stats.rowsText))")
            print(
                "fit:         \(c.family), pooling \(c.preparation.pooling.rawValue), l2 \(c.preparation.l2Normalize)"
            )
            if let bins = c.binnedTargets {
                print(
                    "targets:     \(bins.count) quantile bins over "
                        + String(format: "[%.6g, %.6g]", bins.edges[0], bins.edges[bins.count])
                )
            }
            return
        case .mixtureRound(let r):
            let c = r.configuration
            print("file:        \(file) (\(bytes.count) bytes, a sharded mixture fit's round, checksums OK)")
            print("layer:       \(c.layerName), input shape \(r.inputShape)")
            print("rows:        \(r.fitSamples) (\(r.rows.rowsText))")
            print(
                "fit:         \(c.family) with \(c.mixture.components) components, tolerance \(c.mixture.tolerance), at most \(c.mixture.maxIterations) iterations"
            )
            print(
                "round:       \(r.round), parameters \(r.fingerprint), mean log-likelihood \(r.logLikelihoods.last.map { "\($0)" } ?? "none yet"), converged \(r.converged), finished \(r.finished)"
            )
            return
        case .mixtureStep(let e):
            print("file:        \(file) (\(bytes.count) bytes, an E-step of a sharded mixture fit, checksums OK)")
            print("layer:       \(e.layer), round \(e.round), parameters \(e.fingerprint)")
            print("rows:        \(e.samples) (\(e.rows.rowsText))")
            return
        case nil: break
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
            if let f = model.fingerprint { print("fingerprint: \(ModelFile.fingerprintText(f)) (CRC-32 of the file)") }
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
            if let bins = model.density.targetBins {
                let edges = [bins.edges.first!, bins.edges.last!].map { String(format: "%.4g", $0) }
                print(
                    "targets:     \(bins.count) quantile bins over [\(edges[0]), \(edges[1])]; prediction interval "
                        + (model.intervalCalibration.map { "calibrated on \($0.count) inputs" }
                            ?? "not calibrated (fitted without calibration targets)")
                )
            }
            print(
                "posterior:   "
                    + (model.posteriorTemperature.map { "calibrated (root distance, temperature \($0))" }
                        ?? "Bayes' rule on the density (not calibrated)")
            )
            print(
                "fusion:      "
                    + (model.jointCalibration.map {
                        "calibrated jointly with layers \($0.layerNames.joined(separator: ", ")) on \($0.count) inputs "
                            + "(\($0.statistic.rawValue) statistic)"
                    } ?? "no joint calibration (a monitor of several layers fuses by Bonferroni)")
            )
            print(
                "neighbours:  "
                    + (model.neighbours.map {
                        "\($0.count) fitting rows (\($0.usesCodes ? "one-byte codes" : "float16")) in \($0.cellCount) cells, "
                            + "\($0.probes) searched per input; "
                            + "the epistemic p-value combines the surprise with the distance"
                            + (model.epistemicCalibration.map { " (calibrated on \($0.count) inputs)" } ?? "")
                    } ?? "no index (the epistemic p-value is the surprise's)")
            )
            print("fit:         \(model.metadata.fitSamples) samples; \(model.metadata.notes)")
            print("written by:  LatentWatch \(model.metadata.libraryVersion) at \(model.metadata.created)")
        }
    }

    func inspectData() throws {
        let file = self.file ?? ""
        let f: TensorFile
        do { f = try TensorFile(path: file) } catch {
            print("invalid: \(error.message)")
            throw ExitCode(2)
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        print("file:     \(file) (\(size) bytes, \(f.format.rawValue))")
        if f.format == .recording, let r = try? RecordingReader(path: file) {
            print(
                "recorded: \(r.recordCount) inputs in \(r.chunkCount) chunks (sizes \(Self.summary(r.chunkSizes))), sampling \(r.sampling)"
            )
            print("layers:   " + r.layers.map { "\($0.name) \($0.shape) \($0.dtype.tag)" }.joined(separator: ", "))
            print("outputs:  \(r.outputCount) per input")
            print("written:  LatentWatch \(r.libraryVersion) at \(r.created)")
        }
        for t in f.tensors {
            print("array:    \(t.name.isEmpty ? "(unnamed)" : t.name)  \(t.dtype.rawValue)  \(t.shape)")
        }
        for w in f.warnings { print("warning:  \(w)") }
        if f.format == .recording {
            do {
                _ = try f.requestIDs()
                print("checksums: all \(f.tensors.first?.rows ?? 0) records decode")
            } catch {
                print("invalid: \(error)")
                throw ExitCode(2)
            }
        }
    }

    static func summary(_ sizes: [Int]) -> String {
        guard let mn = sizes.min(), let mx = sizes.max() else { return "-" }
        return mn == mx ? "\(mn)" : "\(mn)-\(mx)"
    }
}

extension InspectCommand {
    /// `inspect --system`: the CPU, the kernels chosen for it, and OpenBLAS's core.
    static func printSystem() {
        let e = ComputeEnvironment.self
        print("cpu:             \(e.cpuModel)")
        print("cpu features:    \(e.cpuFeatureSummary)")
        print("scoring kernels: \(e.scoringKernel)")
        print("neighbour search: \(e.codeKernel) (integer codes of a neighbour index)")
        var core = "\(e.blasCore)"
        if let set = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] {
            core +=
                " (OPENBLAS_CORETYPE=\(set)"
                + (ProcessInfo.processInfo.environment["LATENTWATCH_BLAS_RELAUNCHED"] != nil
                    ? ", set by latentwatch: the library's own choice was a generic fallback)" : ")")
        }
        print("openblas core:   \(core) (fitting; batch scoring when the scoring kernels are portable C)")
        print("openblas build:  \(e.blasConfig)")
        if let warning = e.blasFallbackWarning { print("warning:         \(warning)") }
    }
}
