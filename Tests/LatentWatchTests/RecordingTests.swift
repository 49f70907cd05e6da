import Foundation
import LatentWatch
import Metrics
import Testing

/// The recording format (Docs/RecordingFormat.md): round trips, torn tails, damage, rotation, sampling, and
/// the monitor's recorder.
@Suite struct RecordingTests {
    static func temporary(_ name: String) -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("lw-rec-\(getpid())-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d.appendingPathComponent(name).path
    }

    /// Writes `n` rows of the bundled stream (h1 and h2) with outputs and request ids.
    static func write(
        _ path: String,
        rows n: Int,
        chunk: Int,
        dtype: ElementType = .float32,
        maxFileBytes: Int = 1 << 30
    )
        throws -> ActivationRecorder
    {
        let h1 = try Fixtures.activations("stream", "h1")
        let h2 = try Fixtures.activations("stream", "h2")
        let r = try ActivationRecorder(
            configuration: .init(
                path: path,
                layers: [
                    RecordedLayer(name: "h1", shape: [128], dtype: dtype),
                    RecordedLayer(name: "h2", shape: [64], dtype: dtype),
                ],
                outputCount: 3,
                chunkInputs: chunk,
                maxFileBytes: maxFileBytes
            )
        )
        for i in 0..<n {
            let out: [Float] = [Float(i), 1, -1]
            try h1.values.withUnsafeBufferPointer { a in
                try h2.values.withUnsafeBufferPointer { b in
                    try out.withUnsafeBufferPointer { o in
                        _ = try r.record(
                            [
                                UnsafeBufferPointer(rebasing: a[(i * 128)..<((i + 1) * 128)]),
                                UnsafeBufferPointer(rebasing: b[(i * 64)..<((i + 1) * 64)]),
                            ],
                            outputs: o,
                            requestID: i % 3 == 0 ? nil : "req-\(i)",
                            index: i,
                            timestamp: 1_700_000_000 + Double(i)
                        )
                    }
                }
            }
        }
        return r
    }

    @Test func roundTripKeepsEveryField() throws {
        let p = Self.temporary("a.lwr")
        let r = try Self.write(p, rows: 250, chunk: 64)
        try r.close()
        let f = try TensorFile(path: p)
        #expect(f.format == .recording)
        #expect(f.warnings.isEmpty)
        #expect(f.tensors.map(\.name) == ["h1", "h2", "outputs", "timestamps", "indices"])
        let h1 = try Fixtures.activations("stream", "h1")
        #expect(try f.floats("h1") == Array(h1.values[0..<(250 * 128)]))
        #expect(try f.ints("indices") == Array(0..<250))
        let ids = try #require(try f.requestIDs())
        #expect(ids[0] == nil && ids[1] == "req-1" && ids[249] == nil && ids[248] == "req-248")
        let outs = try f.floats("outputs")
        #expect(outs[3 * 249] == 249 && outs[3 * 249 + 2] == -1)
        let reader = try RecordingReader(path: p)
        #expect(reader.chunkSizes == [64, 64, 64, 58])
        #expect(reader.layers.map(\.name) == ["h1", "h2"] && reader.outputCount == 3)
    }

    @Test func float16RecordingsStoreHalfPrecision() throws {
        let p = Self.temporary("h.lwr")
        try Self.write(p, rows: 100, chunk: 40, dtype: .float16).close()
        let got = try TensorFile(path: p).floats("h2")
        let want = Array(try Fixtures.activations("stream", "h2").values[0..<(100 * 64)])
        #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1e-3 * max(1, abs($1)) })
    }

    /// A write interrupted anywhere inside the last chunk leaves every earlier chunk readable, and the torn
    /// chunk is skipped with a warning.
    @Test func tornLastChunkIsSkippedWithAWarning() throws {
        let p = Self.temporary("t.lwr")
        try Self.write(p, rows: 200, chunk: 50).close()
        let full = Array(try Data(contentsOf: URL(fileURLWithPath: p)))
        let reader = try RecordingReader(path: p)
        #expect(reader.chunkCount == 4)
        // Offsets where chunk 3 (the last) starts: recompute by cutting at a range of lengths into it.
        let sizes = try (1...4).map { k -> Int in
            let q = Self.temporary("k\(k).lwr")
            try Self.write(q, rows: 50 * k, chunk: 50).close()
            return try Data(contentsOf: URL(fileURLWithPath: q)).count
        }
        #expect(sizes[3] == full.count)
        for cut in [
            sizes[2] + 1, sizes[2] + 20, sizes[2] + 32, sizes[2] + 33, (sizes[2] + full.count) / 2, full.count - 1,
        ] {
            let q = Self.temporary("cut.lwr")
            _ = FileManager.default.createFile(atPath: q, contents: Data(full[0..<cut]))
            let f = try TensorFile(path: q)
            #expect(f.tensors[0].rows == 150, "cut at \(cut)")
            #expect(f.warnings.count == 1 && f.warnings[0].contains("torn last chunk"), "\(f.warnings)")
            #expect(try f.ints("indices") == Array(0..<150))
        }
        // A last chunk whose payload is damaged (same length) is also treated as torn.
        var flipped = full
        flipped[full.count - 10] ^= 0xFF
        let q = Self.temporary("flip.lwr")
        _ = FileManager.default.createFile(atPath: q, contents: Data(flipped))
        let f = try TensorFile(path: q)
        #expect(f.tensors[0].rows == 150 && f.warnings.first?.contains("checksum") == true)
    }

    @Test func damageBeforeTheEndIsAnError() throws {
        let p = Self.temporary("d.lwr")
        try Self.write(p, rows: 200, chunk: 50).close()
        let full = Array(try Data(contentsOf: URL(fileURLWithPath: p)))
        let header = try Self.headerSize(full)
        // Flip a payload byte of chunk 0: the directory scan passes (headers intact), decoding fails.
        var payload = full
        payload[header + 40] ^= 0x01
        let q = Self.temporary("p.lwr")
        _ = FileManager.default.createFile(atPath: q, contents: Data(payload))
        #expect(throws: (any Error).self) { _ = try TensorFile(path: q).floats("h1") }
        do { _ = try TensorFile(path: q).floats("h1") } catch { #expect("\(error)".contains("chunk 0")) }
        // Damage chunk 0's header: later valid chunks exist, so it is not a torn tail.
        var head = full
        head[header + 5] ^= 0x01
        let r = Self.temporary("h.lwr")
        _ = FileManager.default.createFile(atPath: r, contents: Data(head))
        do {
            _ = try TensorFile(path: r)
            Issue.record("damaged chunk header accepted")
        } catch {
            #expect("\(error)".contains("chunk 0") && "\(error)".contains("not the last chunk"), "\(error)")
        }
        // File header damage and future versions.
        var fh = full
        fh[20] ^= 0x01
        let s = Self.temporary("fh.lwr")
        _ = FileManager.default.createFile(atPath: s, contents: Data(fh))
        do { _ = try TensorFile(path: s) } catch { #expect("\(error)".contains("header checksum"), "\(error)") }
        var v2 = full
        v2[8] = 2
        _ = FileManager.default.createFile(atPath: s, contents: Data(v2))
        do {
            _ = try TensorFile(path: s)
            Issue.record("future major version accepted")
        } catch {
            #expect("\(error)".contains("newer than this reader"), "\(error)")
        }
    }

    static func headerSize(_ b: [UInt8]) throws -> Int {
        16 + (Int(b[12]) | Int(b[13]) << 8 | Int(b[14]) << 16 | Int(b[15]) << 24) + 4
    }

    @Test func rotationStartsNewCompleteFiles() throws {
        let p = Self.temporary("rot.lwr")
        let r = try Self.write(p, rows: 400, chunk: 25, maxFileBytes: 40_000)
        try r.close()
        let files = r.files
        #expect(files.count >= 3)
        #expect(files[0] == p && files[1].hasSuffix("rot-1.lwr"))
        var indices: [Int] = []
        for f in files {
            let t = try TensorFile(path: f)
            #expect(t.warnings.isEmpty)
            indices += try t.ints("indices")
            #expect((try FileManager.default.attributesOfItem(atPath: f)[.size] as! Int) <= 40_000)
        }
        #expect(indices == Array(0..<400))
    }

    @Test func samplingRecordsTheRequestedShare() throws {
        let p = Self.temporary("s.lwr")
        let row = [Float](repeating: 0.5, count: 4)
        let rate = try ActivationRecorder(
            configuration: .init(path: p, layers: [RecordedLayer(name: "x", shape: [4])], sampling: .rate(0.1), seed: 3)
        )
        var kept = 0
        try row.withUnsafeBufferPointer { b in for _ in 0..<10_000 { if try rate.record([b]) { kept += 1 } } }
        try rate.close()
        // Binomial(10000, 0.1): sd 30; 5 sd bounds.
        #expect(kept > 850 && kept < 1150)
        #expect(try TensorFile(path: p).tensors[0].rows == kept)
        let q = Self.temporary("r.lwr")
        let res = try ActivationRecorder(
            configuration: .init(
                path: q,
                layers: [RecordedLayer(name: "x", shape: [4])],
                sampling: .reservoir(50),
                seed: 3,
                chunkInputs: 16
            )
        )
        try row.withUnsafeBufferPointer { b in for i in 0..<5_000 { _ = try res.record([b], index: i) } }
        try res.close()
        let idx = try TensorFile(path: q).ints("indices")
        #expect(idx.count == 50 && idx == idx.sorted() && Set(idx).count == 50)
        // A uniform sample of 0..<5000: its mean is near 2500 (sd of the mean about 204).
        let mean = Double(idx.reduce(0, +)) / 50
        #expect(abs(mean - 2500) < 1000)
    }

    @Test func monitorRecordsAssessedInputs() async throws {
        let model = try ModelFile.read(
            contentsOf: Fixtures.golden.appendingPathComponent("digits-h2-gda-v1.0.lwm").path
        )
        let p = Self.temporary("m.lwr")
        let recorder = try ActivationRecorder(
            configuration: .init(path: p, layers: [RecordedLayer(name: "h2", shape: [64])], chunkInputs: 32)
        )
        let monitor = try Monitor(
            configuration: MonitorConfiguration(layers: [MonitoredLayer(model: model)], recorder: recorder)
        )
        let s = try Fixtures.activations("stream", "h2")
        for i in 0..<100 {
            _ = try s.values.withUnsafeBufferPointer { v in
                try monitor.assess(
                    .float32([UnsafeBufferPointer(rebasing: v[(i * 64)..<((i + 1) * 64)])]),
                    requestID: "r\(i)"
                )
            }
        }
        try recorder.close()
        let f = try TensorFile(path: p)
        #expect(try f.floats("h2") == Array(s.values[0..<(100 * 64)]))
        #expect(try f.ints("indices") == Array(0..<100))
        #expect(try f.requestIDs()?[7] == "r7")
    }
}
