import Foundation
import Testing

@testable import LatentWatch

/// Files that once crashed or exhausted the host process (Tests/Fixtures/malformed, made by
/// Tests/Reference/make_malformed.py, and a recording crafted here): each is now refused with a clear error,
/// before anything large is allocated.
@Suite struct MalformedInputRegressionTests {
    static func fixture(_ name: String) -> String {
        Fixtures.root.appendingPathComponent("Tests/Fixtures/malformed/\(name)").path
    }

    /// Reads every array of a file completely, as `score` and `fit` do.
    static func readAll(_ path: String) throws {
        let f = try TensorFile(path: path)
        for t in f.tensors { try f.forEachChunk(t.name, rowsPerChunk: 1024) { _, _ in } }
    }

    static func code(_ body: () throws -> Void) -> LatentWatchError.Code? {
        do { try body() } catch let e as LatentWatchError { return e.code } catch { return nil }
        return nil
    }

    /// A .npy header whose shape has ')' before '(' (112 bytes trapped on a reversed range).
    @Test func reversedShapeParenthesesAreRefused() {
        #expect(Self.code { try Self.readAll(Self.fixture("shape_reversed.npy")) } == .malformedFile)
    }

    /// Shape (0, 10^13) holds no element, but a reader allocated one row at full width (40 TB).
    @Test func zeroRowsOfHugeWidthAreRefused() {
        #expect(Self.code { try Self.readAll(Self.fixture("zero_rows_huge_width.npy")) } == .malformedFile)
    }

    /// Found by the fuzzer (Tests/Fuzz/findings/tensor): shape (0, 999,999,999) is plausible (under the element
    /// limit), but reading its zero rows allocated a 4 GB row buffer.
    @Test func zeroRowsAllocateNoRowBuffer() {
        let path = Fixtures.root.appendingPathComponent("Tests/Fuzz/findings/tensor/zero_rows_1e9_wide.npy").path
        let before = Self.status("VmRSS")
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        #expect(Self.code { try Self.readAll(path) } == nil, "an empty array reads as no rows")
        #expect(Self.status("VmHWM") - before < 1 << 30)
    }

    /// A deflated .npz member declaring 1.7 GB uncompressed while holding a few bytes: read in bounded blocks,
    /// it runs out and is refused (it allocated the declared size up front). The process's peak resident size
    /// (reset first through /proc/self/clear_refs) must stay well below the declared size.
    @Test func deflatedMemberDeclaringHugeSizeIsRefusedWithoutAllocatingIt() throws {
        let before = Self.status("VmRSS")
        try "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        #expect(Self.code { try Self.readAll(Self.fixture("deflated_declares_huge.npz")) } == .malformedFile)
        let peak = Self.status("VmHWM")
        #expect(peak - before < 1 << 30, "peak resident size grew by \((peak - before) >> 20) MiB")
    }

    /// A recording chunk (checksums valid) whose stored input index is 2^63 trapped converting it to Int.
    @Test func recordedIndexBeyondIntIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lw-malformed-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("r.lwr").path
        let recorder = try ActivationRecorder(
            configuration: .init(path: path, layers: [RecordedLayer(name: "z", shape: [4])], chunkInputs: 3)
        )
        for i in 0..<3 {
            try [Float](repeating: Float(i), count: 4).withUnsafeBufferPointer {
                _ = try recorder.record([$0], requestID: nil, index: i)
            }
        }
        try recorder.close()

        // Rewrite the chunk with index 2^63 for its second record, repairing both CRCs as a writer could.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let reader = try RecordingReader(path: path)
        var chunk = try reader.chunk(0)
        chunk.indices[1] = 1 << 63
        let payload = chunk.payload(outputs: 0)
        let compressed = try #require(Zstd.compressed(payload, level: 3))
        let start = try #require(Self.find(RecordingFormat.chunkMagic, in: bytes))
        let oldLength = Int(LittleEndian.read(bytes, start + 16, as: UInt32.self))
        var header = RecordingFormat.chunkMagic
        LittleEndian.append(UInt32(chunk.count), to: &header)
        LittleEndian.append(LittleEndian.read(bytes, start + 8, as: UInt64.self), to: &header)
        LittleEndian.append(UInt32(compressed.count), to: &header)
        LittleEndian.append(UInt32(payload.count), to: &header)
        LittleEndian.append(CRC32.checksum(compressed), to: &header)
        LittleEndian.append(CRC32.checksum(header), to: &header)
        bytes.replaceSubrange(start..<(start + RecordingFormat.chunkHeaderBytes + oldLength), with: header + compressed)
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let damaged = try RecordingReader(path: path)
        #expect(damaged.recordCount == 3, "the chunk itself is valid")
        #expect(Self.code { _ = try damaged.inputIndices() } == .malformedFile)
        #expect(Self.code { try Self.readAll(path) } == nil, "the indices as floats still read")
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }

    /// A /proc/self/status field in bytes (Linux: VmRSS, VmHWM).
    static func status(_ field: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
            let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kb * 1024
    }
}
