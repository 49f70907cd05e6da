import Foundation
import LatentWatchNumerics
import Testing

@testable import LatentWatch

@Suite struct ModelFileTests {
    static func digitsModel(
        _ family: DensityFamilyName = .gda,
        layer: String = "h2",
        projection: PreparationOptions.Projection = .none
    ) throws -> LatentModel {
        let train = try Fixtures.activations("train", layer)
        let cal = try Fixtures.activations("calibration", layer)
        return try LatentModelFitter.fit(
            InMemoryActivations(values: train.values, shape: [train.dim], labels: try Fixtures.labels("train")),
            calibration: InMemoryActivations(values: cal.values, shape: [cal.dim]),
            configuration: FitConfiguration(
                family: family,
                preparation: PreparationOptions(projection: projection),
                layerName: layer
            ),
            created: "2026-11-23T00:00:00Z"
        )
    }

    static func allScores(_ model: LatentModel, _ split: String, _ layer: String) throws -> [LatentScores] {
        let x = try Fixtures.activations(split, layer)
        let ws = model.makeWorkspace()
        return try (0..<x.rows).map { i in
            try Array(x.values[(i * x.dim)..<((i + 1) * x.dim)]).withUnsafeBufferPointer {
                try model.score($0, workspace: ws)
            }
        }
    }

    @Test(arguments: [DensityFamilyName.gda, .tied, .gmmFull])
    func float32RoundTripScoresIdentically(family: DensityFamilyName) throws {
        let model = try Self.digitsModel(family, projection: family == .gmmFull ? .components(16) : .none)
        let bytes = try ModelFile.encode(model)
        let back = try ModelFile.decode(bytes)
        #expect(try Self.allScores(back, "test", "h2") == Self.allScores(model, "test", "h2"))
        #expect(back.calibration == model.calibration)
        #expect(back.metadata == model.metadata)
        // Deterministic bytes.
        #expect(try ModelFile.encode(back) == bytes)
    }

    @Test func float16KeepsAUROCAndShrinksTheFile() throws {
        let model = try Self.digitsModel(.gda, layer: "h1")
        let half = try ModelFile.decode(ModelFile.encode(model, options: .init(precision: .float16)))
        #expect(half.density.precision == .float16)
        func auroc(_ m: LatentModel) throws -> Double {
            ROC.auroc(
                negatives: try Self.allScores(m, "test", "h1").map(\.surprise),
                positives: try Self.allScores(m, "ood_digits", "h1").map(\.surprise)
            )
        }
        let a32 = try auroc(model)
        let a16 = try auroc(half)
        #expect(abs(a32 - a16) < 0.002, "AUROC float32 \(a32) vs float16 \(a16)")
    }

    /// D = 512, K = 10 full covariance: the float16 file must be at most 25 % of the dense float32 parameter
    /// bytes (K (D^2 + D) floats).
    @Test func float16FileSizeForD512K10() throws {
        let d = 512
        let k = 10
        let n = 700
        var g = SeededRandom(seed: 3)
        var values = [Float](repeating: 0, count: k * n * d)
        var labels = [Int](repeating: 0, count: k * n)
        // Class-specific low-rank structure plus noise, like real activations.
        for c in 0..<k {
            let basis = (0..<(16 * d)).map { _ in Float(g.normal()) }
            let shift = (0..<d).map { _ in Float(g.normal()) * 2 }
            for i in 0..<n {
                let r = c * n + i
                labels[r] = c
                let coef = (0..<16).map { _ in Float(g.normal()) }
                for j in 0..<d {
                    var v = shift[j] + 0.3 * Float(g.normal())
                    for b in 0..<16 { v += coef[b] * basis[b * d + j] * 0.25 }
                    values[r * d + j] = v
                }
            }
        }
        let model = try LatentModelFitter.fit(
            InMemoryActivations(values: values, shape: [d], labels: labels),
            configuration: { () -> FitConfiguration in
                // The density's parameters alone: no neighbour index beside them.
                var c = FitConfiguration(family: .gda, fitBackground: false)
                c.neighbours = nil
                return c
            }()
        )
        let dense = k * (d * d + d) * 4
        let f32 = try ModelFile.encode(model).count
        let f16 = try ModelFile.encode(model, options: .init(precision: .float16)).count
        let ratio = Double(f16) / Double(dense)
        print(
            "model file D=512 K=10: dense float32 parameters \(dense) B, float32 file \(f32) B, float16 file \(f16) B, ratio \(ratio)"
        )
        #expect(ratio <= 0.25)
    }

    @Test func goldenFileStillLoads() throws {
        let url = Fixtures.golden.appendingPathComponent("digits-h2-gda-v1.0.lwm")
        if ProcessInfo.processInfo.environment["LATENTWATCH_WRITE_GOLDEN"] == "1" {
            let model = try Self.digitsModel(.gda, layer: "h2")
            try FileManager.default.createDirectory(at: Fixtures.golden, withIntermediateDirectories: true)
            try ModelFile.write(model, to: url.path)
            let s = try Self.allScores(model, "test", "h2")
            try NumpyArray.write(
                s.map { Float($0.logDensity) },
                shape: [s.count],
                to: Fixtures.golden.appendingPathComponent("digits-h2-gda-v1.0.test_logpx.npy").path
            )
        }
        let model = try ModelFile.read(contentsOf: url.path)
        let expected = try NumpyArray(
            contentsOf: Fixtures.golden.appendingPathComponent("digits-h2-gda-v1.0.test_logpx.npy").path
        ).floats()
        let got = try Self.allScores(model, "test", "h2").map { Float($0.logDensity) }
        if HalfConversion.usesSIMDKernels {
            // The goldens were written with the AVX2/FMA kernels: on such a CPU the scores are bit-identical.
            #expect(got == expected)
        } else {
            // The portable loops sum in another order: float32 round-off, 1e-5 relative.
            #expect(got.count == expected.count)
            for (g, e) in zip(got, expected) { #expect(abs(g - e) <= 1e-5 * max(1, abs(e)), "\(g) vs \(e)") }
        }
        #expect(model.metadata.created == "2026-11-23T00:00:00Z")
    }

    // MARK: malformed files

    static func expectCode(
        _ bytes: [UInt8],
        _ code: LatentWatchError.Code,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            _ = try ModelFile.decode(bytes)
            Issue.record("decoded a malformed file; expected \(code)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            #expect(!error.remedy.isEmpty)
        }
    }

    /// Recomputes the whole-file CRC so a mutation reaches the deeper checks.
    static func fixCRC(_ b: inout [UInt8]) {
        guard b.count >= 16 else { return }
        let crc = CRC32.checksum(Array(b[0..<(b.count - 16)]))
        for i in 0..<4 { b[b.count - 16 + i] = UInt8((crc >> (8 * UInt32(i))) & 0xFF) }
    }

    /// Rebuilds a file with edited metadata JSON, all sections raw, all checksums valid.
    static func rebuild(_ good: [UInt8], editJSON: (String) -> String) throws -> [UInt8] {
        let payloads = try ModelFile.sectionPayloads(good)
        let count = payloads.count
        var sections: [[UInt8]] = (0..<count).map { payloads[$0]! }
        sections[0] = Array(editJSON(String(decoding: sections[0], as: UTF8.self)).utf8)
        var out = Array(good[0..<32])
        var offset = 32 + 48 * count
        for (i, s) in sections.enumerated() {
            out += Array((i == 0 ? "META" : "TNSR").utf8) + ModelFile.le32(0) + ModelFile.le32(0) + ModelFile.le32(1)
            out +=
                ModelFile.le64(UInt64(offset)) + ModelFile.le64(UInt64(s.count)) + ModelFile.le64(UInt64(s.count))
                + ModelFile.le32(CRC32.checksum(s)) + ModelFile.le32(0)
            offset += s.count
        }
        for s in sections { out += s }
        let total = offset + 16
        let t = ModelFile.le64(UInt64(total))
        for i in 0..<8 { out[24 + i] = t[i] }
        out += ModelFile.le32(CRC32.checksum(out)) + ModelFile.le32(0) + ModelFile.endMagic
        return out
    }

    @Test func everyMalformedCaseHasItsError() throws {
        let good = try ModelFile.encode(Self.digitsModel(.gda, layer: "h2"))
        #expect(throws: Never.self) { try ModelFile.decode(good) }
        Self.expectCode([], .notAModelFile)
        Self.expectCode(Array(good[0..<20]), .truncated)
        Self.expectCode(Array(good[0..<(good.count - 1)]), .truncated)
        Self.expectCode(good + [0], .trailingBytes)
        var magic = good
        magic[1] = UInt8(ascii: "X")
        Self.expectCode(magic, .notAModelFile)
        var future = good
        future[8] = 2
        Self.expectCode(future, .unsupportedVersion)
        var flipped = good
        flipped[good.count / 2] ^= 0x10
        Self.expectCode(flipped, .checksumMismatch)
        var manySections = good
        manySections[18] = 0xFF
        Self.fixCRC(&manySections)
        Self.expectCode(manySections, .implausibleSize)
        var outOfBounds = good
        outOfBounds[32 + 48 + 16 + 5] = 0x7F  // offset of section 1
        Self.expectCode(
            {
                Self.fixCRC(&outOfBounds)
                return outOfBounds
            }(),
            .sectionOutOfBounds
        )
        var hugeDecoded = good
        hugeDecoded[32 + 48 + 32 + 6] = 0x7F  // decoded length of section 1
        Self.expectCode(
            {
                Self.fixCRC(&hugeDecoded)
                return hugeDecoded
            }(),
            .implausibleSize
        )
        var badZstd = good
        let off = Int(ModelFile.rd64(good, 32 + 48 + 16))
        badZstd[off + 6] ^= 0xFF
        Self.expectCode(
            {
                Self.fixCRC(&badZstd)
                return badZstd
            }(),
            .decompressionFailed
        )
        Self.expectCode(try Self.rebuild(good) { _ in "{not json" }, .malformedMetadata)
        Self.expectCode(
            try Self.rebuild(good) {
                $0.replacingOccurrences(
                    of: "\"required_features\":[]",
                    with: "\"required_features\":[\"sparse-factors\"]"
                )
            },
            .unsupportedFeature
        )
        Self.expectCode(
            try Self.rebuild(good) { $0.replacingOccurrences(of: "\"family\":\"gda\"", with: "\"family\":\"flow\"") },
            .unsupportedFeature
        )
        Self.expectCode(
            try Self.rebuild(good) { $0.replacingOccurrences(of: "\"shape\":[6,64]", with: "\"shape\":[6,65]") },
            .inconsistentModel
        )
        Self.expectCode(
            try Self.rebuild(good) {
                $0.replacingOccurrences(of: "\"components\":6", with: "\"components\":900000000")
            },
            .implausibleSize
        )
        Self.expectCode(
            try Self.rebuild(good) {
                $0.replacingOccurrences(of: "\"input_shape\":[64]", with: "\"input_shape\":[65]")
            },
            .inconsistentModel
        )
        // The untouched file still reads after all that (nothing shared was damaged).
        #expect(throws: Never.self) { try ModelFile.decode(good) }
    }

    /// 10,000 random mutations (byte flips, truncations, insertions; half with the file checksum repaired so
    /// the deeper checks run): every one is an error or a valid model, never a crash.
    @Test func randomCorruptionNeverCrashes() throws {
        let good = try ModelFile.encode(Self.digitsModel(.tied, layer: "h2"), options: .init(precision: .float16))
        var g = SeededRandom(seed: 42)
        var codes: [LatentWatchError.Code: Int] = [:]
        var decoded = 0
        for i in 0..<10_000 {
            var b = good
            switch g.next() % 4 {
            case 0:
                for _ in 0..<(1 + Int(g.next() % 4)) {
                    b[Int(g.next() % UInt64(b.count))] ^= UInt8(1 << (g.next() % 8))
                }
            case 1:
                b.removeSubrange(Int(g.next() % UInt64(b.count))...)
            case 2:
                // Header or table bytes: the structured part.
                let limit = min(b.count, 32 + 48 * 8)
                b[Int(g.next() % UInt64(limit))] = UInt8(g.next() & 0xFF)
            default:
                let at = Int(g.next() % UInt64(b.count))
                b.insert(contentsOf: (0..<(1 + Int(g.next() % 8))).map { _ in UInt8(g.next() & 0xFF) }, at: at)
            }
            if i % 2 == 0 { Self.fixCRC(&b) }
            do {
                let m = try ModelFile.decode(b)
                _ = try? m.score([Float](repeating: 0.5, count: m.preparation.inputCount))
                decoded += 1
            } catch {
                codes[error.code, default: 0] += 1
            }
        }
        print(
            "corruption: \(decoded) decoded, errors \(codes.sorted { $0.key.description < $1.key.description }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))"
        )
        #expect(codes.values.reduce(0, +) + decoded == 10_000)
        #expect(codes.count >= 5, "mutations reach several distinct checks")
    }
}
