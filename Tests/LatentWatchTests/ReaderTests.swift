import Foundation
import LatentWatch
import Testing

/// Readers by content (.npy, .npz stored and deflated, safetensors, recordings): equal results from every
/// format, and clear errors for malformed files. Fixtures: Tests/Reference/make_reader_fixtures.py.
@Suite struct ReaderTests {
    static let dir = Fixtures.root.appendingPathComponent("Tests/Fixtures/readers")
    static func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// One fresh directory per test process (a PID alone can repeat across containers sharing /tmp).
    static let scratch: URL = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("lw-reader-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }()

    static func temporary(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    /// Test-split surprises of a GDA fitted on `source`, calibrated on the bundled calibration split.
    static func fitAndScore(_ source: some ActivationSource) throws -> [Double] {
        let cal = try Fixtures.activations("calibration", "h2")
        let model = try LatentModelFitter.fit(
            source,
            calibration: InMemoryActivations(values: cal.values, shape: [cal.dim]),
            configuration: FitConfiguration(family: .gda, layerName: "h2")
        )
        let test = try Fixtures.activations("test", "h2")
        return try (0..<test.rows).map { i in
            try model.score(Array(test.values[(i * test.dim)..<((i + 1) * test.dim)])).surprise
        }
    }

    @Test func everyFormatReadsTheSameArray() throws {
        let reference = try NumpyArray(contentsOf: Self.path("h2.npy")).floats()
        let labels = try NumpyArray(contentsOf: Self.path("labels.npy")).ints()
        for (file, key) in [("h2.npy", nil), ("stored.npz", "h2"), ("deflated.npz", "h2"), ("h2.safetensors", "h2")] {
            let f = try TensorFile(path: Self.path(file))
            let t = try f.tensor(key)
            #expect(t.shape == [300, 64], "\(file)")
            #expect(try f.floats(t.name) == reference, "\(file)")
            // Chunked reading yields the same rows in order.
            var rows: [Float] = []
            var ranges: [Range<Int>] = []
            try f.forEachChunk(t.name, rowsPerChunk: 37) { b, r in
                rows += b
                ranges.append(r)
            }
            #expect(rows == reference, "\(file) chunked")
            #expect(ranges.first == 0..<37 && ranges.last == 296..<300, "\(file)")
            #expect(try f.rows(t.name, 100..<103) == Array(reference[(100 * 64)..<(103 * 64)]), "\(file) rows")
            if key != nil { #expect(try f.ints("labels") == labels, "\(file) labels") }
        }
        #expect(try TensorFile(path: Self.path("stored.npz")).format == .npz)
        #expect(try TensorFile(path: Self.path("h2.safetensors")).format == .safetensors)
        // float16 and float64 storage convert to the nearest Float.
        let f16 = try TensorFile(path: Self.path("h2_f16.npy")).floats()
        let f64 = try TensorFile(path: Self.path("h2_f64.npy")).floats()
        #expect(f64 == reference)
        #expect(zip(f16, reference).allSatisfy { abs($0 - $1) <= 1e-3 * max(1, abs($1)) })
    }

    /// Fitting from .npy, .npz (stored and deflated), safetensors and a recording gives the same model.
    /// Tolerance: a recording is read in its chunks of 64 rows, so the moments are merged in a different
    /// order; scores agree to 1e-9 relative. The other formats are read in identical batches: exactly equal.
    @Test func fitsAgreeAcrossFormats() throws {
        let labels = try NumpyArray(contentsOf: Self.path("labels.npy")).ints()
        let base = try Self.fitAndScore(FileActivations(path: Self.path("h2.npy"), labels: labels))
        for (file, key) in [("stored.npz", "h2"), ("deflated.npz", "h2"), ("h2.safetensors", "h2")] {
            let s = try Self.fitAndScore(FileActivations(path: Self.path(file), key: key, labels: labels))
            #expect(s == base, "\(file)")
        }
        let values = try NumpyArray(contentsOf: Self.path("h2.npy")).floats()
        let rec = Self.temporary("fit.lwr")
        let recorder = try ActivationRecorder(
            configuration: .init(path: rec, layers: [RecordedLayer(name: "h2", shape: [64])], chunkInputs: 64)
        )
        try values.withUnsafeBufferPointer { v in
            for i in 0..<300 {
                try recorder.record([UnsafeBufferPointer(rebasing: v[(i * 64)..<((i + 1) * 64)])], index: i)
            }
        }
        try recorder.close()
        #expect(recorder.chunksWritten == 5)
        let s = try Self.fitAndScore(FileActivations(path: rec, labels: labels))
        for (a, b) in zip(s, base) { #expect(abs(a - b) <= 1e-9 * max(1, abs(b))) }
        // And the in-memory fit agrees exactly with the .npy file fit.
        #expect(try Self.fitAndScore(InMemoryActivations(values: values, shape: [64], labels: labels)) == base)
    }

    static func expectError(_ bytes: [UInt8], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let p = temporary("bad-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
        do {
            let f = try TensorFile(path: p)
            _ = try f.floats(f.tensors.first?.name)
            Issue.record("no error; expected '\(fragment)'", sourceLocation: sourceLocation)
        } catch {
            #expect("\(error)".contains(fragment), "\(error)", sourceLocation: sourceLocation)
        }
        try? FileManager.default.removeItem(atPath: p)
    }

    static func npy(_ header: String, payload: Int) -> [UInt8] {
        var h = header
        while (10 + h.utf8.count + 1) % 64 != 0 { h += " " }
        h += "\n"
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.utf8.count), 0] + Array(h.utf8)
            + [UInt8](repeating: 0, count: payload)
    }

    @Test func malformedNpyGivesClearErrors() throws {
        let good = Array(try Data(contentsOf: URL(fileURLWithPath: Self.path("h2.npy"))))
        Self.expectError(Array(good[0..<5000]), "truncated data")
        Self.expectError(Array(good[0..<40]), "truncated")
        Self.expectError(Array(good[0..<4]), "unrecognised format")
        Self.expectError(
            Self.npy("{'descr': '<u1', 'fortran_order': False, 'shape': (3, 4), }", payload: 12),
            "dtype '<u1' is not supported"
        )
        Self.expectError(
            Self.npy("{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }", payload: 48),
            "dtype '>f4'"
        )
        Self.expectError(
            Self.npy("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", payload: 48),
            "Fortran-order"
        )
        // A lying header: declares more rows than the file holds.
        Self.expectError(
            Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (300, 4), }", payload: 48),
            "truncated data"
        )
        // A huge declared shape is refused before anything is allocated.
        Self.expectError(
            Self.npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 1000000), }", payload: 16),
            "implausibly large"
        )
        var v9 = good
        v9[6] = 9
        Self.expectError(v9, "format version 9")
        Self.expectError(Array("garbage, not an array at all".utf8), "unrecognised format")
    }

    @Test func malformedNpzGivesClearErrors() throws {
        for name in ["stored.npz", "deflated.npz"] {
            let good = Array(try Data(contentsOf: URL(fileURLWithPath: Self.path(name))))
            // Truncated: the zip directory at the end is gone.
            Self.expectError(Array(good[0..<(good.count / 2)]), "no zip directory")
            // A corrupted member body: stored members fail their .npy parse or size checks, deflated ones inflate.
            var damaged = good
            for i in 200..<260 { damaged[i] ^= 0x5A }
            let p = Self.temporary("damaged-\(name)")
            _ = FileManager.default.createFile(atPath: p, contents: Data(damaged))
            #expect(throws: (any Error).self, "\(name)") {
                let f = try TensorFile(path: p)
                _ = try f.floats("h2")
            }
        }
        // A deflated member whose stream ends early.
        var good = Array(try Data(contentsOf: URL(fileURLWithPath: Self.path("deflated.npz"))))
        // Zero the compressed data of the first member after its .npy header region.
        for i in 400..<2000 { good[i] = 0 }
        let p = Self.temporary("zeroed.npz")
        _ = FileManager.default.createFile(atPath: p, contents: Data(good))
        do {
            let f = try TensorFile(path: p)
            _ = try f.floats("h2")
            Issue.record("zeroed deflate stream was accepted")
        } catch {
            #expect("\(error)".contains("h2"), "\(error)")
        }
    }

    @Test func malformedSafetensorsGivesClearErrors() throws {
        func st(_ header: String, data: Int) -> [UInt8] {
            let h = Array(header.utf8)
            var out: [UInt8] = []
            withUnsafeBytes(of: UInt64(h.count).littleEndian) { out += $0 }
            return out + h + [UInt8](repeating: 0, count: data)
        }
        Self.expectError(st(#"{"x":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}"#, data: 8), "dtype BF16")
        Self.expectError(st(#"{"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, data: 8), "outside the file")
        Self.expectError(st(#"{"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}"#, data: 16), "spans 16 bytes")
        Self.expectError(
            st(#"{"x":{"dtype":"F32","shape":[100000000000,1000000],"data_offsets":[0,16]}}"#, data: 16),
            "implausibly large"
        )
        Self.expectError(
            st(
                #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                data: 12
            ),
            "overlap"
        )
        Self.expectError(st(#"{"x":{"dtype":"F32"}}"#, data: 0), "lacks dtype, shape or data_offsets")
        // Header length beyond the file.
        var lying = st(#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: 4)
        lying[0] = 0xFF
        lying[1] = 0xFF
        Self.expectError(lying, "header length")
        let good = Array(try Data(contentsOf: URL(fileURLWithPath: Self.path("h2.safetensors"))))
        Self.expectError(Array(good[0..<(good.count - 100)]), "outside the file")
    }

    @Test func modelFilesAreNotActivations() throws {
        let bytes = Array(try Data(contentsOf: Fixtures.golden.appendingPathComponent("digits-h2-gda-v1.0.lwm")))
        Self.expectError(bytes, "model file")
    }

    /// AUROC, average precision and FPR at 95 % TPR against scikit-learn (metrics.json), tolerance 1e-12.
    @Test func metricsMatchScikitLearn() throws {
        let data = try Data(contentsOf: Self.dir.appendingPathComponent("metrics.json"))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let cases = json["cases"] as! [[String: Any]]
        #expect(cases.count == 3)
        for c in cases {
            let neg = c["negatives"] as! [Double]
            let pos = c["positives"] as! [Double]
            #expect(abs(ROC.auroc(negatives: neg, positives: pos) - (c["auroc"] as! Double)) < 1e-12)
            #expect(abs(ROC.averagePrecision(negatives: neg, positives: pos) - (c["aupr"] as! Double)) < 1e-12)
            #expect(
                abs(
                    ROC.falsePositiveRate(atTruePositiveRate: 0.95, negatives: neg, positives: pos)
                        - (c["fpr_at_95_tpr"] as! Double)
                )
                    < 1e-12
            )
        }
    }
}
