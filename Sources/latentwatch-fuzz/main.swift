// libFuzzer targets for every parser that takes outside bytes (.ci/fuzz, Docs/Reliability.md). One executable:
// LW_FUZZ_TARGET chooses the parser. Every input must end in a value or a thrown error; a trap, a sanitizer
// report, a hang or an allocation beyond -malloc_limit_mb is a finding.
import CFuzzDriver
import Foundation
import LatentWatch
import LatentWatchWire

/// The parser under test, from LW_FUZZ_TARGET.
enum FuzzTarget: String, CaseIterable {
    /// Model files (`ModelFile.decode`), checksums not verified so mutations reach the sections' parsers.
    case model
    /// .npy, .npz (stored and deflated) and safetensors, recognised by content; every array read whole.
    case tensor
    /// LatentWatch recordings, checksums repaired first; every chunk, index and request id read.
    case recording
    /// A connection's byte stream as the sidecar decodes it: HELLO first, then OBSERVE, SYNC, BYE frames.
    case wire
    /// The C interface's entry points that take buffers and lengths (model bytes, scoring, assessing, fitting).
    case capi
    /// `latentwatch serve --config FILE`: JSON to arguments, parsed and validated, policy and settings built.
    case config
    /// Statistics files (`StatisticsFile.decode`), checksums not verified; what decodes is merged and fitted.
    case statistics

    static let current: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["LW_FUZZ_TARGET"] ?? ""
        guard let t = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(
                Data("set LW_FUZZ_TARGET to one of: \(allCases.map(\.rawValue).joined(separator: ", "))\n".utf8)
            )
            exit(2)
        }
        return t
    }()
}

exit(lw_fuzz_run(CommandLine.argc, CommandLine.unsafeArgv))

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    switch FuzzTarget.current {
    case .model: fuzzModel(bytes)
    case .tensor: fuzzTensor(bytes)
    case .recording: fuzzRecording(RecordingRepair.repaired(bytes))
    case .wire: fuzzWire(bytes)
    case .capi: FuzzCAPI.run(bytes)
    case .config: FuzzConfig.run(bytes)
    case .statistics: fuzzStatistics(bytes)
    }
    DescriptorLeakCheck.afterInput()
    return 0
}

/// Every 1,000 inputs, the process's open file descriptors are counted; more than 16 above the count after the
/// first input is a leak, reported by aborting (a finding, with the input that was running).
enum DescriptorLeakCheck {
    nonisolated(unsafe) static var inputs = 0
    nonisolated(unsafe) static var baseline = -1

    static func afterInput() {
        inputs += 1
        guard inputs == 1 || inputs % 1000 == 0 else { return }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        if baseline < 0 { baseline = open }
        if open > baseline + 16 {
            FileHandle.standardError.write(
                Data("file descriptor leak: \(open) open, \(baseline) after the first input\n".utf8)
            )
            abort()
        }
    }
}

func fuzzModel(_ bytes: [UInt8]) {
    guard let model = try? ModelFile.decode(bytes, families: .standard, verifyChecksums: false) else { return }
    // A model that decodes must score without trapping, whatever its parameters.
    var x = [Float](repeating: 0.5, count: min(model.inputCount, 1 << 16))
    if x.count == model.inputCount { _ = try? model.score(x) }
    x.removeAll()
}

func fuzzTensor(_ bytes: [UInt8]) {
    guard let file = try? TensorFile(bytes: bytes, name: "fuzz") else { return }
    for t in file.tensors {
        try? file.forEachChunk(t.name, rowsPerChunk: 64) { _, _ in }
        _ = try? file.ints(t.name)
    }
}

func fuzzRecording(_ bytes: [UInt8]) {
    guard let r = try? RecordingReader(bytes: bytes, name: "fuzz") else { return }
    _ = try? r.inputIndices()
    _ = try? r.requestIDs()
    guard let file = try? TensorFile(bytes: bytes, name: "fuzz") else { return }
    for t in file.tensors { try? file.forEachChunk(t.name, rowsPerChunk: 64) { _, _ in } }
}

/// The server's decoding of one connection (Sources/LatentWatchSidecar/FrameHandler.swift), without sockets:
/// frames split by their headers with the server's limits, the HELLO first, then OBSERVE against two layers of 4
/// and 3 elements, SYNC and BYE.
func fuzzWire(_ bytes: [UInt8]) {
    let maxFrame = 1 << 20
    var offset = 0
    var greeted = false
    bytes.withUnsafeBytes { all in
        while all.count - offset >= WireFormat.headerSize {
            let header = FrameHeader.parse(
                UnsafeRawBufferPointer(rebasing: all[offset..<(offset + WireFormat.headerSize)])
            )
            let limit = greeted ? maxFrame : WireFormat.handshakeLimit
            guard header.length <= limit, header.reserved == 0 else { return }
            let start = offset + WireFormat.headerSize
            guard all.count - start >= header.length else { return }
            let body = UnsafeRawBufferPointer(rebasing: all[start..<(start + header.length)])
            offset = start + header.length
            guard let type = FrameType(rawValue: header.type) else { return }
            if !greeted {
                guard type == .hello, (try? Hello.decode(body)) != nil else { return }
                greeted = true
                continue
            }
            switch type {
            case .observe:
                guard (try? ObserveLayout.decode(body, flags: header.flags, elements: [4, 3], maxRows: 64)) != nil
                else { continue }
            case .assessment:
                // What the clients decode from a server.
                _ = try? AssessmentFrame.decode(body, flags: header.flags)
            case .bye: return
            default: continue
            }
        }
    }
}

/// Rewrites a recording's checksums (header, and each chunk's header and payload) as a writer would, so that
/// mutated recordings reach the parsers behind the checksums (Docs/RecordingFormat.md).
enum RecordingRepair {
    static func repaired(_ input: [UInt8]) -> [UInt8] {
        var b = input
        guard b.count >= 20 else { return b }
        let h = Int(u32(b, 12))
        guard h >= 0, 16 + h + 4 <= b.count else { return b }
        put(CRC32.checksum(Array(b[0..<(16 + h)])), into: &b, at: 16 + h)
        var at = 16 + h + 4
        while b.count - at >= 32 {
            let compressed = Int(u32(b, at + 16))
            guard compressed >= 0, at + 32 + compressed <= b.count else { break }
            put(CRC32.checksum(Array(b[(at + 32)..<(at + 32 + compressed)])), into: &b, at: at + 24)
            put(CRC32.checksum(Array(b[at..<(at + 28)])), into: &b, at: at + 28)
            at += 32 + compressed
        }
        return b
    }

    static func u32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }

    static func put(_ v: UInt32, into b: inout [UInt8], at o: Int) {
        for i in 0..<4 { b[o + i] = UInt8((v >> (8 * UInt32(i))) & 0xFF) }
    }
}

func fuzzStatistics(_ bytes: [UInt8]) {
    guard let contents = try? StatisticsFile.decodeContents(bytes, verifyChecksums: false) else { return }
    switch contents {
    case .statistics(let stats):
        // Statistics that decode must merge (or be refused), re-encode, and fit a model (or round 0 of EM) or
        // throw, whatever their moments.
        _ = try? StatisticsFile.encode(stats)
        let shape = stats.inputShape
        let n = shape.reduce(1, *)
        guard n <= 256 else { return }
        var copy = stats
        _ = try? copy.merge(stats)
        if let round = try? MixtureRound(statistics: stats) {
            fuzzRound(round)
            return
        }
        let calibration = InMemoryActivations(values: (0..<(8 * n)).map { Float($0 % 7) - 3 }, shape: shape)
        if let model = try? LatentModelFitter.fit(
            statistics: stats,
            calibration: calibration,
            configuration: stats.configuration
        ) {
            _ = try? model.score([Float](repeating: 0.5, count: n))
        }
    case .mixtureRound(let round):
        _ = try? StatisticsFile.encode(round)
        guard round.inputShape.reduce(1, *) <= 256 else { return }
        fuzzRound(round)
    case .mixtureStep(let step):
        _ = try? StatisticsFile.encode(step)
        var copy = step
        _ = try? copy.merge(step)
        // Labelled as a step of a fixed round over all its rows, so that the M-step's own checks are reached
        // whatever the step's components, dimension and weights.
        for round in FixedRounds.all {
            if let next = try? round.advanced(by: step.relabelled(for: round)) {
                _ = try? LatentModelFitter.fit(mixture: next, calibration: FixedRounds.rows)
            }
        }
    }
}

/// Rounds of a small sharded mixture fit (both families, 2 components of dimension 3) for decoded E-steps.
enum FixedRounds {
    static let rows = InMemoryActivations(
        values: (0..<120).map { Float(($0 * 37) % 11) - 5 + Float($0 / 3 % 2) * 4 },
        shape: [3]
    )
    static let all: [MixtureRound] = [DensityFamilyName.gmmDiagonal, .gmmFull].compactMap { family in
        var cfg = FitConfiguration(family: family, layerName: "z")
        cfg.mixture.components = 2
        cfg.mixture.maxIterations = 1
        return try? MixtureRound(statistics: LatentModelFitter.statistics(of: rows, configuration: cfg))
    }
}

/// A round that decodes runs an E-step over a few rows, an M-step, and (when finished) builds and calibrates its
/// model, or throws.
func fuzzRound(_ round: MixtureRound) {
    let shape = round.inputShape
    let n = shape.reduce(1, *)
    let rows = InMemoryActivations(values: (0..<(8 * n)).map { Float($0 % 7) - 3 }, shape: shape)
    if !round.finished, let step = try? round.expectation(of: rows), let next = try? round.advanced(by: step) {
        _ = try? StatisticsFile.encode(next)
    }
    if let model = try? LatentModelFitter.fit(mixture: round, calibration: rows) {
        _ = try? model.score([Float](repeating: 0.5, count: n))
    }
}
