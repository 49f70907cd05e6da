import ArgumentParser
import Foundation
import LatentWatch
import LatentWatchNumerics

/// `latentwatch record`: writes activation files into a LatentWatch recording (what a monitor's recorder
/// writes in production), for example to fit or replay from one file with several layers.
struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract:
            "Write activations from .npy/.npz/safetensors files into a chunked zstd recording (Docs/RecordingFormat.md).",
        discussion: """
            Each --input is one layer (NAME=FILE names it; FILE:KEY picks an array). Rows are recorded in order, \
            as the monitor's recorder would record a stream.
            Example: latentwatch record --input h1=stream_h1.npy --input h2=stream_h2.npy --output stream.lwr
            """
    )

    @Option(help: "Layer activations: FILE, NAME=FILE or NAME=FILE:KEY; repeat for several layers (same row count).")
    var input: [String]

    @Option(help: "Outputs (logits or probabilities) per row, recorded beside the activations.")
    var outputs: String?

    @Option(help: "Recording file to write; rotated files are NAME-1.lwr, ...")
    var output: String

    @Option(help: "Inputs per chunk.")
    var chunk: Int = 256

    @Option(help: "Stored element type: float32 (f32) or float16 (f16, half the size).")
    var dtype: ElementType = .float32

    @Option(help: "Rotate to a new file beyond this many bytes.")
    var maxFileBytes: Int = 256 << 20

    @Option(help: "Record each input with this probability (1: all).")
    var rate: Double = 1

    @Option(help: "Wait this many milliseconds after each input (simulates a live stream).")
    var delayMs: Int = 0

    @Flag(help: "fsync after each chunk.")
    var durable = false

    @Flag(help: "Print a line after each completed chunk.")
    var verbose = false

    func run() throws {
        var names: [String] = []
        var values: [[Float]] = []
        var shapes: [[Int]] = []
        var rows = -1
        for spec in input {
            var name: String? = nil
            var path = spec
            if let eq = spec.firstIndex(of: "="), !FileManager.default.fileExists(atPath: spec) {
                name = String(spec[..<eq])
                path = String(spec[spec.index(after: eq)...])
            }
            var key: String? = nil
            if !FileManager.default.fileExists(atPath: path), let colon = path.lastIndex(of: ":") {
                key = String(path[path.index(after: colon)...])
                path = String(path[..<colon])
            }
            let f = try userFacing(path) { try TensorFile(path: path) }
            let t = try userFacing(path) { try f.tensor(key) }
            guard rows < 0 || rows == t.rows else {
                throw CLIError("\(path) has \(t.rows) rows, earlier inputs \(rows)")
            }
            rows = t.rows
            names.append(name ?? t.name)
            shapes.append(t.rowShape)
            values.append(try userFacing(path) { try f.floats(t.name) })
        }
        var outputValues: [Float]? = nil
        var outputCount = 0
        if let outputs {
            let f = try userFacing(outputs) { try TensorFile(path: outputs) }
            let t = try userFacing(outputs) { try f.tensor(nil) }
            guard t.rows == rows else { throw CLIError("\(outputs) has \(t.rows) rows, the activations \(rows)") }
            outputCount = t.rowElements
            outputValues = try userFacing(outputs) { try f.floats(t.name) }
        }
        let recorder = try userFacing("recording") {
            try ActivationRecorder(
                configuration: .init(
                    path: output,
                    layers: zip(names, shapes).map { RecordedLayer(name: $0, shape: $1, dtype: dtype) },
                    outputCount: outputCount,
                    sampling: rate >= 1 ? .all : .rate(rate),
                    chunkInputs: chunk,
                    maxFileBytes: maxFileBytes,
                    durable: durable
                )
            )
        }
        let sizes = shapes.map { $0.reduce(1, *) }
        // Stable copies, so row views can be passed to the recorder without escaping array pointers.
        let stable = values.map { v -> UnsafeMutableBufferPointer<Float> in
            let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: v.count)
            _ = b.initialize(from: v)
            return b
        }
        defer { for b in stable { b.deallocate() } }
        var chunks = 0
        for r in 0..<rows {
            let buffers = (0..<stable.count).map { l in
                UnsafeBufferPointer(rebasing: stable[l][(r * sizes[l])..<((r + 1) * sizes[l])])
            }
            try userFacing("recording") {
                if let outputValues {
                    try outputValues.withUnsafeBufferPointer { o in
                        _ = try recorder.record(
                            buffers,
                            outputs: UnsafeBufferPointer(rebasing: o[(r * outputCount)..<((r + 1) * outputCount)]),
                            requestID: "row-\(r)",
                            index: r
                        )
                    }
                } else {
                    _ = try recorder.record(buffers, requestID: "row-\(r)", index: r)
                }
            }
            if verbose && recorder.chunksWritten > chunks {
                chunks = recorder.chunksWritten
                FileHandle.standardOutput.write(Data("chunk \(chunks) written (\(chunks * chunk) inputs)\n".utf8))
            }
            if delayMs > 0 { usleep(UInt32(delayMs) * 1000) }
        }
        try userFacing("recording") { try recorder.close() }
        print(
            "recorded \(recorder.recordedCount) of \(rows) inputs in \(recorder.chunksWritten) chunks -> \(recorder.files.joined(separator: ", "))"
        )
    }
}
