import Foundation
import LatentWatchNumerics

/// Reads and writes LatentWatch model files (`.lwm`, Docs/ModelFormat.md): versioned, checksummed,
/// zstd-compressed. A reader never crashes on bad bytes: every failure is a ``LatentWatchError``.
public enum ModelFile {
    /// First bytes of every model file.
    package static let magic: [UInt8] = [0x89, 0x4C, 0x57, 0x4D, 0x0D, 0x0A, 0x1A, 0x0A]
    /// Last eight bytes of every model file.
    package static let endMagic: [UInt8] = Array("LWM-END".utf8) + [0]
    /// Format version this library writes.
    package static let majorVersion: UInt16 = 1
    package static let minorVersion: UInt16 = 5
    static let headerSize = 32
    static let entrySize = 48
    static let trailerSize = 16
    static let maxSections = 4096
    static let maxDecodedSection = 1 << 32

    /// Options for writing.
    public struct WriteOptions: Sendable {
        /// zstd level (1 fast ... 19 small).
        public var compressionLevel: Int32
        /// Store means and factors as float16 (with byte shuffling), whatever the in-memory precision.
        public var precision: ElementType?
        /// Creates options. `precision` nil keeps the model's own.
        public init(compressionLevel: Int32 = 9, precision: ElementType? = nil) {
            self.compressionLevel = compressionLevel
            self.precision = precision
        }
    }

    // MARK: Writing

    /// Encodes a model into file bytes.
    public static func encode(
        _ model: LatentModel,
        options: WriteOptions = WriteOptions()
    ) throws(LatentWatchError) -> [UInt8] {
        let m = options.precision.map { model.converted(to: $0) } ?? model
        let (meta, sections) = layout(m)
        let json = try metadataBytes(meta)
        var payloads: [(kind: String, bytes: [UInt8], width: Int)] = [("META", json, 1)]
        for t in sections.tensors { payloads.append(("TNSR", t.bytes, t.dtype.byteWidth)) }
        return try container(payloads, level: options.compressionLevel)
    }

    /// The metadata and tensors a model contributes (no I/O, cannot fail).
    static func layout(_ m: LatentModel) -> (ModelFileMetadata, ModelSectionWriter) {
        var sections = ModelSectionWriter()
        m.density.encode(into: &sections)
        let prep = m.preparation
        if let mean = prep.projectionMean, let comps = prep.projectionComponents, let vars = prep.projectionVariances {
            sections.addFloats("preparation.mean", mean, shape: [prep.pooledDimension])
            sections.addFloats("preparation.components", comps, shape: [prep.outputDimension, prep.pooledDimension])
            sections.addDoubles("preparation.variances", vars, shape: [prep.outputDimension])
        }
        var backgroundJSON: ModelFileMetadata.BackgroundJSON?
        if let bg = m.background {
            backgroundJSON = .init(logNormalizer: bg.logNormalizer, regularization: bg.regularization)
            sections.addFloats("background.mean", bg.mean, shape: [bg.mean.count], precision: bg.factor.precision)
            sections.addFactors("background.factor", [bg.factor], dimension: bg.mean.count)
        }
        let kinds = ScoreKind.allCases.filter { m.calibration.distributions[$0] != nil }
        var counts: [String: Int] = [:]
        for kind in kinds {
            let dist = m.calibration.distributions[kind]!
            counts[kind.rawValue] = dist.count
            sections.addFloats("calibration.\(kind.rawValue).values", dist.values, shape: [dist.values.count])
            sections.addUInt32("calibration.\(kind.rawValue).ranks", dist.ranks, shape: [dist.ranks.count])
        }
        if let j = m.jointCalibration {
            sections.addFloats("joint.values", j.distribution.values, shape: [j.distribution.values.count])
            sections.addUInt32("joint.ranks", j.distribution.ranks, shape: [j.distribution.ranks.count])
        }
        if let nb = m.neighbours {
            switch nb.stored {
            case .codes(let rows, let centres, _):
                sections.addInt8("neighbours.codes", rows, shape: [nb.count, nb.dimension])
                sections.addInt8("neighbours.centre_codes", centres, shape: [nb.cellCount, nb.dimension])
            case .half(let rows, let centres):
                sections.addHalf("neighbours.rows", rows, shape: [nb.count, nb.dimension])
                sections.addFloats("neighbours.centres", centres, shape: [nb.cellCount, nb.dimension])
            }
            sections.addUInt32("neighbours.cell_starts", nb.cellStarts.map { UInt32($0) }, shape: [nb.cellCount + 1])
            if let e = m.epistemicCalibration {
                sections.addFloats("epistemic.values", e.values, shape: [e.values.count])
                sections.addUInt32("epistemic.ranks", e.ranks, shape: [e.ranks.count])
            }
        }
        if let i = m.intervalCalibration {
            sections.addFloats("interval.values", i.values, shape: [i.values.count])
            sections.addUInt32("interval.ranks", i.ranks, shape: [i.ranks.count])
        }
        let projectionJSON: ModelFileMetadata.PreparationJSON.ProjectionJSON
        switch prep.options.projection {
        case .none: projectionJSON = .init(kind: "none")
        case .components(let k): projectionJSON = .init(kind: "components", k: k)
        case .varianceFraction(let f): projectionJSON = .init(kind: "variance", fraction: f)
        }
        let descriptors = sections.tensors.enumerated().map {
            TensorDescriptor(
                name: $0.element.name,
                section: $0.offset + 1,
                dtype: $0.element.dtype,
                shape: $0.element.shape,
                layout: $0.element.layout
            )
        }
        let meta = ModelFileMetadata(
            format: "latentwatch-model",
            libraryVersion: m.metadata.libraryVersion,
            created: m.metadata.created,
            layer: m.metadata.layer,
            inputShape: prep.inputShape,
            requiredFeatures: (m.posteriorTemperature == nil ? [] : [ModelFileFeatures.rootDistancePosterior])
                + (m.neighbours == nil ? [] : [ModelFileFeatures.neighbourIndex])
                + (m.neighbours?.usesCodes == true ? [ModelFileFeatures.neighbourCodes] : [])
                + (m.jointCalibration?.kinds.contains(where: { $0 != .surprise }) == true
                    ? [ModelFileFeatures.jointNeighbourMembers] : []),
            preparation: .init(
                pooling: prep.options.pooling.rawValue,
                l2Normalize: prep.options.l2Normalize,
                projection: projectionJSON,
                outputDimension: prep.outputDimension
            ),
            density: sections.density!,
            background: backgroundJSON,
            calibration: .init(scores: kinds.map(\.rawValue), counts: counts),
            posterior: m.posteriorTemperature.map {
                .init(kind: ModelFileMetadata.PosteriorJSON.rootDistance, temperature: $0)
            },
            joint: m.jointCalibration.map {
                .init(
                    statistic: $0.statistic.rawValue,
                    layers: $0.layers,
                    kinds: $0.kinds.allSatisfy { $0 == .surprise } ? nil : $0.kinds.map(\.rawValue),
                    memberChecksums: $0.memberChecksums,
                    count: $0.count
                )
            },
            interval: m.intervalCalibration.map { .init(count: $0.count) },
            neighbours: m.neighbours.map {
                .init(
                    count: $0.count,
                    cells: $0.cellCount,
                    probes: $0.probes,
                    scale: $0.codeScale,
                    epistemicCount: m.epistemicCalibration?.count
                )
            },
            tensors: descriptors,
            fit: .init(
                samples: m.metadata.fitSamples,
                calibrationSamples: m.metadata.calibrationSamples,
                notes: m.metadata.notes
            )
        )
        return (meta, sections)
    }

    static func metadataBytes(_ meta: ModelFileMetadata) throws(LatentWatchError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        switch Result(catching: { try encoder.encode(meta) }) {
        case .success(let data): return Array(data)
        case .failure(let error):
            throw LatentWatchError(.io, "could not encode metadata: \(error)", remedy: "report this as a bug")
        }
    }

    /// Lays out header, section table, compressed payloads and trailer.
    static func container(
        _ payloads: [(kind: String, bytes: [UInt8], width: Int)],
        level: Int32
    ) throws(LatentWatchError) -> [UInt8] {
        var entries: [UInt8] = []
        var data: [UInt8] = []
        let start = headerSize + entrySize * payloads.count
        for p in payloads {
            let shuffled = p.width > 1
            let stored = try Zstd.compress(
                shuffled ? ByteShuffle.shuffle(p.bytes, width: p.width) : p.bytes,
                level: level
            )
            entries += Array(p.kind.utf8) + le32(1) + le32(shuffled ? 1 : 0) + le32(UInt32(p.width))
            entries += le64(UInt64(start + data.count)) + le64(UInt64(stored.count)) + le64(UInt64(p.bytes.count))
            entries += le32(CRC32.checksum(p.bytes)) + le32(0)
            data += stored
        }
        let total = start + data.count + trailerSize
        var out: [UInt8] = []
        out.reserveCapacity(total)
        out += magic
        out += le16(majorVersion) + le16(minorVersion) + le32(0) + le32(UInt32(payloads.count)) + le32(0)
        out += le64(UInt64(total))
        out += entries
        out += data
        out += le32(CRC32.checksum(out)) + le32(0) + endMagic
        return out
    }

    /// Writes a model file atomically (temporary file, then rename).
    public static func write(
        _ model: LatentModel,
        to path: String,
        options: WriteOptions = WriteOptions()
    ) throws(LatentWatchError) {
        try writeFile(try encode(model, options: options), to: path, what: "the model")
    }

    /// Writes a file's bytes atomically (temporary file, then rename); `what` names them in the error.
    static func writeFile(_ bytes: [UInt8], to path: String, what: String) throws(LatentWatchError) {
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw LatentWatchError(
                .io,
                "could not write \(what): \(error.localizedDescription)",
                remedy: "check that the directory exists and is writable, and that the disk has space",
                path: path
            )
        }
    }

    // MARK: Reading

    /// Reads a model file.
    public static func read(contentsOf path: String) throws(LatentWatchError) -> LatentModel {
        try readFile(path) { (b) throws(LatentWatchError) in try decode(b) }
    }

    /// Reads a file's bytes and decodes them; errors of either step name the path.
    static func readFile<T>(
        _ path: String,
        decode: ([UInt8]) throws(LatentWatchError) -> T
    ) throws(LatentWatchError) -> T {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw LatentWatchError(
                .io,
                "could not read the file: \(error.localizedDescription)",
                remedy: "check the path and permissions",
                path: path
            )
        }
        do { return try decode(Array(data)) } catch {
            var e = error
            e.path = path
            throw e
        }
    }

    /// Decodes model file bytes.
    public static func decode(_ b: [UInt8]) throws(LatentWatchError) -> LatentModel {
        try decode(b, families: .standard)
    }

    /// Decodes model file bytes whose density family is one of `families`. `verifyChecksums: false` is for the
    /// fuzzer only, so that mutated files reach the code behind the checksums.
    package static func decode(
        _ b: [UInt8],
        families: DensityFamilyRegistry,
        verifyChecksums: Bool = true
    ) throws(LatentWatchError) -> LatentModel {
        let (meta, reader) = try decodeSections(b, verifyChecksums: verifyChecksums)
        var model = try assemble(meta, reader, families: families)
        model.fingerprint = rd32(b, b.count - trailerSize)
        return model
    }

    /// Describes a file without building the model (for `inspect`): header fields and metadata JSON.
    package static func describe(
        _ b: [UInt8]
    ) throws(LatentWatchError) -> (version: String, sections: Int, metadataJSON: String) {
        try checkFraming(b)
        let json = try sectionPayloads(b, metadataOnly: true)[0]!
        return ("\(rd16(b, 8)).\(rd16(b, 10))", Int(rd32(b, 16)), String(decoding: json, as: UTF8.self))
    }

    static func checkFraming(_ b: [UInt8], verifyChecksums: Bool = true) throws(LatentWatchError) {
        if b.count < 8 || Array(b[0..<8]) != magic {
            throw LatentWatchError(
                .notAModelFile,
                "not a LatentWatch model file (starts with \(describeStart(b)))",
                remedy: "pass a .lwm file written by `latentwatch fit` or ModelFile.write"
            )
        }
        if b.count < headerSize + trailerSize {
            throw LatentWatchError(
                .truncated,
                "the file is \(b.count) bytes, shorter than a header and trailer",
                remedy: "the file was cut short; copy it again"
            )
        }
        let major = rd16(b, 8)
        let minor = rd16(b, 10)
        if major != majorVersion {
            let advice =
                major > majorVersion
                ? "it was written by a newer LatentWatch (format \(major).\(minor)); upgrade LatentWatch to read it"
                : "format \(major).\(minor) is not supported by this reader; refit the model with this version"
            throw LatentWatchError(
                .unsupportedVersion,
                "model file format \(major).\(minor) is not readable by LatentWatch \(LatentWatchVersion.string) (reads \(majorVersion).x)",
                remedy: advice
            )
        }
        let declared = rd64(b, 24)
        if declared > UInt64(b.count) {
            throw LatentWatchError(
                .truncated,
                "the header declares \(declared) bytes but the file has \(b.count)",
                remedy: "the file was cut short; copy it again"
            )
        }
        if declared < UInt64(b.count) {
            throw LatentWatchError(
                .trailingBytes,
                "the file has \(UInt64(b.count) - declared) bytes after the declared end",
                remedy: "the file was appended to or concatenated; restore the original"
            )
        }
        if Array(b[(b.count - 8)...]) != endMagic {
            throw LatentWatchError(
                .truncated,
                "the end marker is missing",
                remedy: "the file was cut short or overwritten; copy it again"
            )
        }
        let stored = rd32(b, b.count - trailerSize)
        let actual = b.withUnsafeBytes {
            CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<(b.count - trailerSize)]))
        }
        if verifyChecksums && stored != actual {
            throw LatentWatchError(
                .checksumMismatch,
                "the file checksum does not match (stored \(hex(stored)), computed \(hex(actual)))",
                remedy: "the file is damaged; restore it from a good copy"
            )
        }
    }

    static func sectionPayloads(
        _ b: [UInt8],
        metadataOnly: Bool = false,
        verifyChecksums: Bool = true
    ) throws(LatentWatchError) -> [Int: [UInt8]] {
        let count = Int(rd32(b, 16))
        guard count >= 1, count <= maxSections else {
            throw LatentWatchError(
                .implausibleSize,
                "the header declares \(count) sections (1...\(maxSections) allowed)",
                remedy: "the file is corrupt; restore it or refit"
            )
        }
        let tableEnd = headerSize + count * entrySize
        let dataEnd = b.count - trailerSize
        guard tableEnd <= dataEnd else {
            throw LatentWatchError(
                .sectionOutOfBounds,
                "the section table (\(count) entries) runs past the end of the file",
                remedy: "the file is corrupt; restore it or refit"
            )
        }
        var out: [Int: [UInt8]] = [:]
        for s in 0..<(metadataOnly ? 1 : count) {
            let e = headerSize + s * entrySize
            let kind = String(decoding: b[e..<(e + 4)], as: UTF8.self)
            let expectedKind = s == 0 ? "META" : "TNSR"
            guard kind == expectedKind else {
                throw LatentWatchError(
                    .malformedMetadata,
                    "section \(s) has kind '\(kind)', expected \(expectedKind)",
                    remedy: "the file is corrupt; restore it or refit"
                )
            }
            let codec = rd32(b, e + 4)
            let flags = rd32(b, e + 8)
            let width = Int(rd32(b, e + 12))
            let offset = rd64(b, e + 16)
            let storedLength = rd64(b, e + 24)
            let decodedLength = rd64(b, e + 32)
            let crc = rd32(b, e + 40)
            guard codec <= 1, flags & ~1 == 0, [1, 2, 4, 8].contains(width) else {
                throw LatentWatchError(
                    .unsupportedFeature,
                    "section \(s) uses codec \(codec), flags \(flags), width \(width)",
                    remedy: "the file needs a newer LatentWatch, or is corrupt"
                )
            }
            guard offset >= UInt64(tableEnd), storedLength <= UInt64(dataEnd), offset <= UInt64(dataEnd) - storedLength
            else {
                throw LatentWatchError(
                    .sectionOutOfBounds,
                    "section \(s) at offset \(offset) with \(storedLength) bytes lies outside the data area",
                    remedy: "the file is corrupt; restore it or refit"
                )
            }
            guard decodedLength <= UInt64(maxDecodedSection), decodedLength % UInt64(width) == 0,
                codec == 1 || decodedLength == storedLength, decodedLength <= storedLength &* 65536 + 4096
            else {
                throw LatentWatchError(
                    .implausibleSize,
                    "section \(s) declares \(decodedLength) decoded bytes from \(storedLength) stored",
                    remedy: "the file is corrupt; restore it or refit"
                )
            }
            let slice = b[Int(offset)..<Int(offset + storedLength)]
            var decoded =
                codec == 1 ? try Zstd.decompress(slice, expected: Int(decodedLength), section: s) : Array(slice)
            if flags & 1 != 0 { decoded = ByteShuffle.unshuffle(decoded, width: width) }
            guard !verifyChecksums || CRC32.checksum(decoded) == crc else {
                throw LatentWatchError(
                    .checksumMismatch,
                    "section \(s) checksum does not match",
                    remedy: "the file is damaged; restore it from a good copy"
                )
            }
            out[s] = decoded
        }
        return out
    }

    static func decodeSections(
        _ b: [UInt8],
        verifyChecksums: Bool = true
    ) throws(LatentWatchError) -> (ModelFileMetadata, ModelSectionReader) {
        try checkFraming(b, verifyChecksums: verifyChecksums)
        let payloads = try sectionPayloads(b, verifyChecksums: verifyChecksums)
        let meta: ModelFileMetadata
        do { meta = try JSONDecoder().decode(ModelFileMetadata.self, from: Data(payloads[0]!)) } catch {
            let format = try? JSONDecoder().decode(StatisticsFile.FormatOnly.self, from: Data(payloads[0]!)).format
            if format == StatisticsFile.format {
                throw LatentWatchError(
                    .malformedMetadata,
                    "this is a statistics file (from `latentwatch fit --statistics-only`), not a model",
                    remedy: "turn statistics into a model with `latentwatch merge`"
                )
            }
            throw LatentWatchError(
                .malformedMetadata,
                "the metadata does not parse: \(error)",
                remedy: "the file is corrupt or not from LatentWatch; refit"
            )
        }
        guard meta.format == "latentwatch-model" else {
            throw LatentWatchError(
                .malformedMetadata,
                "the metadata format is '\(meta.format)'",
                remedy: "pass a LatentWatch model file"
            )
        }
        if let unknown = meta.requiredFeatures.first(where: { !ModelFileFeatures.known.contains($0) }) {
            throw LatentWatchError(
                .unsupportedFeature,
                "the file requires feature '\(unknown)', which LatentWatch \(LatentWatchVersion.string) does not have",
                remedy: "upgrade LatentWatch"
            )
        }
        var descriptors: [String: TensorDescriptor] = [:]
        for t in meta.tensors {
            guard t.section >= 1, t.section < payloads.count, t.shape.allSatisfy({ $0 >= 0 && $0 <= 1 << 31 }),
                t.shape.count <= 8
            else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "tensor '\(t.name)' has section \(t.section) and shape \(t.shape)",
                    remedy: "the file is corrupt; refit"
                )
            }
            descriptors[t.name] = t
        }
        var tensorPayloads = payloads
        tensorPayloads[0] = nil
        return (meta, ModelSectionReader(density: meta.density, descriptors: descriptors, payloads: tensorPayloads))
    }

    static func assemble(
        _ meta: ModelFileMetadata,
        _ r: ModelSectionReader,
        families: DensityFamilyRegistry
    ) throws(LatentWatchError) -> LatentModel {
        guard let family = families.family(named: meta.density.family) else {
            throw LatentWatchError(
                .unsupportedFeature,
                "density family '\(meta.density.family)' is unknown to LatentWatch \(LatentWatchVersion.string)",
                remedy: "upgrade LatentWatch"
            )
        }
        let density = try family.decode(r)
        guard let pooling = PreparationOptions.Pooling(rawValue: meta.preparation.pooling) else {
            throw LatentWatchError(
                .unsupportedFeature,
                "pooling '\(meta.preparation.pooling)' is unknown",
                remedy: "upgrade LatentWatch"
            )
        }
        let projection: PreparationOptions.Projection
        switch meta.preparation.projection.kind {
        case "none": projection = .none
        case "components": projection = .components(meta.preparation.projection.k ?? 0)
        case "variance": projection = .varianceFraction(meta.preparation.projection.fraction ?? 0)
        default:
            throw LatentWatchError(
                .unsupportedFeature,
                "projection '\(meta.preparation.projection.kind)' is unknown",
                remedy: "upgrade LatentWatch"
            )
        }
        let options = PreparationOptions(
            pooling: pooling,
            l2Normalize: meta.preparation.l2Normalize,
            projection: projection
        )
        let shape = meta.inputShape
        guard !shape.isEmpty, shape.count <= 8, shape.allSatisfy({ $0 >= 1 && $0 <= 1 << 28 }),
            shape.reduce(1, { $0.multipliedReportingOverflow(by: $1).partialValue }) <= 1 << 30,
            Preparation.validate(shape: shape, options: options) == nil
        else {
            throw LatentWatchError(
                .inconsistentModel,
                "input shape \(shape) does not suit pooling '\(pooling.rawValue)'",
                remedy: "the file is corrupt; refit"
            )
        }
        let pooled = Preparation.pooledDimension(shape: shape, pooling: pooling)
        let out = meta.preparation.outputDimension
        var preparation = Preparation(inputShape: shape, options: options)
        if projection != .none {
            guard out >= 1, out <= pooled else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "projection to \(out) of \(pooled) dimensions",
                    remedy: "the file is corrupt; refit"
                )
            }
            let mean = try r.floats("preparation.mean", shape: [pooled])
            let comps = try r.floats("preparation.components", shape: [out, pooled])
            let vars = try r.doubles("preparation.variances", shape: [out])
            preparation = Preparation(
                inputShape: shape,
                options: options,
                projectionMean: mean,
                projectionComponents: comps,
                projectionVariances: vars
            )
        }
        guard preparation.outputDimension == out, out == density.dimension else {
            throw LatentWatchError(
                .inconsistentModel,
                "preparation yields \(preparation.outputDimension) dimensions, metadata says \(out), density has \(density.dimension)",
                remedy: "the file is corrupt; refit"
            )
        }
        var background: GaussianComponent?
        if let bg = meta.background {
            let d = density.dimension
            let mean = try r.floats("background.mean", shape: [d])
            let factor = try r.factors("background.factor", count: 1, dimension: d)[0]
            guard bg.logNormalizer.isFinite else {
                throw LatentWatchError(.inconsistentModel, "background log normaliser is not finite", remedy: "refit")
            }
            background = GaussianComponent(
                mean: mean,
                factor: factor,
                logNormalizer: bg.logNormalizer,
                regularization: bg.regularization
            )
        }
        var dists: [ScoreKind: EmpiricalDistribution] = [:]
        for name in meta.calibration.scores {
            guard let kind = ScoreKind(rawValue: name), let m = meta.calibration.counts[name] else { continue }
            dists[kind] = try storedDistribution("calibration.\(name)", count: m, r, "calibration '\(name)'")
        }
        let metadata = ModelMetadata(
            layer: meta.layer,
            libraryVersion: meta.libraryVersion,
            created: meta.created,
            fitSamples: meta.fit.samples,
            calibrationSamples: meta.fit.calibrationSamples,
            notes: meta.fit.notes
        )
        var model = LatentModel(
            metadata: metadata,
            preparation: preparation,
            density: density,
            background: background,
            calibration: Calibration(distributions: dists)
        )
        if let posterior = meta.posterior {
            let t = posterior.temperature
            guard posterior.kind == ModelFileMetadata.PosteriorJSON.rootDistance,
                PosteriorTemperature.range.contains(t), density.classLabels != nil || density.targetBins != nil
            else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "the posterior is '\(posterior.kind)' at temperature \(t); this reader knows "
                        + "'\(ModelFileMetadata.PosteriorJSON.rootDistance)' at a temperature in "
                        + "\(PosteriorTemperature.range), for densities with classes",
                    remedy: "refit"
                )
            }
            model.posteriorTemperature = t
        }
        if let joint = meta.joint {
            model.jointCalibration = try jointCalibration(joint, r)
        }
        if let nb = meta.neighbours {
            try readNeighbours(nb, r, into: &model)
        }
        if let interval = meta.interval {
            guard density.targetBins != nil else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "the model has an interval calibration of \(interval.count) residuals but no target bins",
                    remedy: "the file is corrupt; refit the model"
                )
            }
            let dist = try storedDistribution("interval", count: interval.count, r, "the interval calibration")
            guard dist.values.allSatisfy({ $0 >= 0 }) else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "the interval calibration holds a negative residual",
                    remedy: "the file is corrupt; refit the model"
                )
            }
            model.intervalCalibration = dist
        }
        return model
    }

    /// Reads a neighbour index and its combined calibration, and checks their parts.
    static func readNeighbours(
        _ nb: ModelFileMetadata.NeighboursJSON,
        _ r: ModelSectionReader,
        into model: inout LatentModel
    ) throws(LatentWatchError) {
        let d = model.latentDimension
        guard nb.count >= 1, nb.count <= NeighbourIndex.maximumRows, nb.cells >= 1, nb.cells <= nb.count,
            nb.probes >= 1
        else {
            throw LatentWatchError(
                .inconsistentModel,
                "the neighbour index claims \(nb.count) rows in \(nb.cells) cells, \(nb.probes) searched",
                remedy: "the file is corrupt; refit the model"
            )
        }
        let starts = try r.uint32s("neighbours.cell_starts", shape: [nb.cells + 1]).map { Int($0) }
        let index: NeighbourIndex?
        if let scale = nb.scale {
            index = NeighbourIndex(
                dimension: d,
                codes: try r.int8s("neighbours.codes", shape: [nb.count, d]),
                centreCodes: try r.int8s("neighbours.centre_codes", shape: [nb.cells, d]),
                scale: scale,
                cellStarts: starts,
                probes: nb.probes
            )
        } else {
            index = NeighbourIndex(
                dimension: d,
                rows: try r.floats("neighbours.rows", shape: [nb.count, d]),
                cellStarts: starts,
                centres: try r.floats("neighbours.centres", shape: [nb.cells, d]),
                probes: nb.probes
            )
        }
        guard let index else {
            throw LatentWatchError(
                .inconsistentModel,
                "the neighbour index's cells do not partition its \(nb.count) rows, or its codes or scale are out of range",
                remedy: "the file is corrupt; refit the model"
            )
        }
        model.neighbours = index
        if let m = nb.epistemicCount {
            guard model.calibration.distributions[.neighbour] != nil else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "the model combines the surprise with a neighbour distance that has no calibration",
                    remedy: "the file is corrupt; refit"
                )
            }
            model.epistemicCalibration = try storedDistribution(
                "epistemic",
                count: m,
                r,
                "the combined epistemic calibration"
            )
        }
    }

    /// A calibration distribution stored as the tensors `<prefix>.values` and `<prefix>.ranks` of `count` inputs,
    /// checked.
    static func storedDistribution(
        _ prefix: String,
        count: Int,
        _ r: ModelSectionReader,
        _ what: String
    ) throws(LatentWatchError) -> EmpiricalDistribution {
        guard count >= 1, let vd = r.descriptors["\(prefix).values"] else {
            throw LatentWatchError(
                .inconsistentModel,
                "\(what) has no values (count \(count))",
                remedy: "the file is corrupt; refit"
            )
        }
        let n = vd.shape.first ?? 0
        let values = try r.floats("\(prefix).values", shape: [n])
        let ranks = try r.uint32s("\(prefix).ranks", shape: [n])
        guard let dist = EmpiricalDistribution(count: count, values: values, ranks: ranks) else {
            throw LatentWatchError(
                .inconsistentModel,
                "\(what) is not sorted or its ranks are inconsistent",
                remedy: "the file is corrupt; refit"
            )
        }
        return dist
    }

    /// Reads a joint calibration's values and checks its parts.
    static func jointCalibration(
        _ joint: ModelFileMetadata.JointJSON,
        _ r: ModelSectionReader
    ) throws(LatentWatchError) -> JointCalibration {
        guard let statistic = JointCalibration.Statistic(rawValue: joint.statistic) else {
            throw LatentWatchError(
                .unsupportedFeature,
                "the joint calibration's statistic '\(joint.statistic)' is unknown to LatentWatch \(LatentWatchVersion.string)",
                remedy: "upgrade LatentWatch"
            )
        }
        guard joint.layers.count >= 2, joint.layers.count == joint.memberChecksums.count else {
            throw LatentWatchError(
                .inconsistentModel,
                "the joint calibration names \(joint.layers.count) layers and \(joint.memberChecksums.count) checksums",
                remedy: "the file is corrupt; refit"
            )
        }
        let kinds = joint.kinds?.map { ScoreKind(rawValue: $0) }
        guard kinds == nil || kinds!.count == joint.layers.count,
            kinds?.allSatisfy({ $0 == .surprise || $0 == .neighbour }) ?? true
        else {
            throw LatentWatchError(
                .inconsistentModel,
                "the joint calibration's member kinds \(joint.kinds ?? []) do not match its \(joint.layers.count) members",
                remedy: "the file is corrupt; refit"
            )
        }
        let dist = try storedDistribution("joint", count: joint.count, r, "the joint calibration")
        return JointCalibration(
            statistic: statistic,
            layers: joint.layers,
            kinds: kinds?.map { $0! },
            memberChecksums: joint.memberChecksums,
            distribution: dist
        )
    }

    // MARK: Helpers

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * UInt64($0))) & 0xFF) } }
    static func rd16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    static func rd32(_ b: [UInt8], _ o: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * UInt32($1)) }
    }
    static func rd64(_ b: [UInt8], _ o: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) }
    }
    static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

    /// A fingerprint (a model file's CRC-32) as eight hex digits, as `inspect`, `/healthz` and the metrics show it.
    package static func fingerprintText(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }

    static func describeStart(_ b: [UInt8]) -> String {
        if b.isEmpty { return "nothing: the file is empty" }
        if b.count >= 4 && Array(b[0..<4]) == [0x28, 0xB5, 0x2F, 0xFD] { return "a zstd frame; decompress it first?" }
        if b.count >= 6 && Array(b[0..<6]) == [0x93] + Array("NUMPY".utf8) {
            return "a .npy header: that is activations, not a model"
        }
        if b[0] == UInt8(ascii: "{") { return "'{': JSON, not a model" }
        return b.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
    }
}
