import Foundation
import LatentWatchNumerics

/// Reads and writes LatentWatch statistics files (`.lws`, Docs/ModelFormat.md, "Statistics files"): the mergeable
/// sufficient statistics of one shard of a `gda` or `tied` fit (``ActivationStatistics``), in the model file's
/// container (versioned, checksummed, zstd-compressed) with metadata of their own. Shards gathered in separate
/// processes (`latentwatch fit --statistics-only`) merge into one model (`latentwatch merge`). A reader never
/// crashes on bad bytes: every failure is a ``LatentWatchError``.
public enum StatisticsFile {
    /// The metadata's `format`.
    static let format = "latentwatch-statistics"
    /// The statistics layout this library writes; it reads this one and every earlier one.
    static let version = 1
    /// Largest number of moment sets (classes × 2 parts, plus the global pair) a file may declare.
    static let maxMoments = 1 << 16

    struct Metadata: Codable {
        struct Configuration: Codable {
            var family: String
            var preparation: ModelFileMetadata.PreparationJSON
            var splitSeed: UInt64
            var shrinkage: String
            var lambda: Double?
            var floorRatio: Double
            var ridge: Double
            var validationFraction: Double
            var precision: String
            var fitBackground: Bool
            var calibratePosterior: Bool

            enum CodingKeys: String, CodingKey {
                case family, preparation
                case splitSeed = "split_seed"
                case shrinkage, lambda
                case floorRatio = "floor_ratio"
                case ridge
                case validationFraction = "validation_fraction"
                case precision
                case fitBackground = "fit_background"
                case calibratePosterior = "calibrate_posterior"
            }
        }

        /// One set of moments: a class's training or validation part, or the global ones (`label` nil).
        struct Moments: Codable {
            var label: Int?
            var part: String
            var weight: Double
            var count: Int
            /// Sections holding the mean (D float64) and the scatter's lower triangle (D(D+1)/2 float64, row-major).
            var meanSection: Int
            var scatterSection: Int

            enum CodingKeys: String, CodingKey {
                case label, part, weight, count
                case meanSection = "mean_section"
                case scatterSection = "scatter_section"
            }
        }

        var format: String
        var statisticsVersion: Int
        var libraryVersion: String
        var created: String
        var layer: String
        var inputShape: [Int]
        var dimension: Int
        var configuration: Configuration
        /// Row ranges of the whole data set, as [first, end) pairs.
        var rows: [[Int]]
        var samples: Int
        var moments: [Moments]

        enum CodingKeys: String, CodingKey {
            case format
            case statisticsVersion = "statistics_version"
            case libraryVersion = "library_version"
            case created, layer
            case inputShape = "input_shape"
            case dimension, configuration, rows, samples, moments
        }
    }

    // MARK: Writing

    /// Encodes statistics into file bytes.
    /// - Throws: `invalidConfiguration` for statistics of a family that needs passes over the activations
    ///   (mixtures), which a statistics file cannot carry.
    public static func encode(
        _ s: ActivationStatistics,
        created: String = "1970-01-01T00:00:00Z",
        compressionLevel: Int32 = 3
    ) throws(LatentWatchError) -> [UInt8] {
        let cfg = s.configuration
        guard cfg.families.family(named: cfg.family.rawValue)?.needsPasses != true, s.reservoir.isEmpty else {
            throw LatentWatchError(
                .invalidConfiguration,
                "statistics of family '\(cfg.family)' cannot be stored: it needs passes over the activations",
                remedy: "gather statistics for gda or tied; fit mixtures with `latentwatch fit`"
            )
        }
        var payloads: [[UInt8]] = []
        var moments: [Metadata.Moments] = []
        func add(_ m: GaussianMoments, label: Int?, part: String) {
            let d = m.dimension
            var packed: [Double] = []
            packed.reserveCapacity(d * (d + 1) / 2)
            for i in 0..<d { for j in 0...i { packed.append(m.scatterLower[i * d + j]) } }
            payloads.append(bytes(m.mean))
            payloads.append(bytes(packed))
            moments.append(
                .init(
                    label: label,
                    part: part,
                    weight: m.weight,
                    count: m.count,
                    meanSection: payloads.count - 1,
                    scatterSection: payloads.count
                )
            )
        }
        for label in s.classLabels {
            let pair = s.classes[label]!
            add(pair.train, label: label, part: "train")
            add(pair.validation, label: label, part: "validation")
        }
        add(s.globalTrain, label: nil, part: "train")
        add(s.globalValidation, label: nil, part: "validation")
        let meta = Metadata(
            format: format,
            statisticsVersion: version,
            libraryVersion: LatentWatchVersion.string,
            created: created,
            layer: cfg.layerName,
            inputShape: s.inputShape,
            dimension: s.globalTrain.dimension,
            configuration: configurationJSON(cfg),
            rows: s.rows.map { [$0.lowerBound, $0.upperBound] },
            samples: s.fitSamples,
            moments: moments
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json: [UInt8]
        switch Result(catching: { try encoder.encode(meta) }) {
        case .success(let data): json = Array(data)
        case .failure(let error):
            throw LatentWatchError(.io, "could not encode metadata: \(error)", remedy: "report this as a bug")
        }
        return try ModelFile.container(
            [("META", json, 1)] + payloads.map { ("TNSR", $0, 8) },
            level: compressionLevel
        )
    }

    /// Writes a statistics file atomically (temporary file, then rename).
    public static func write(
        _ s: ActivationStatistics,
        to path: String,
        created: String = "1970-01-01T00:00:00Z"
    ) throws(LatentWatchError) {
        try ModelFile.writeFile(try encode(s, created: created), to: path, what: "the statistics")
    }

    // MARK: Reading

    /// Reads a statistics file.
    public static func read(contentsOf path: String) throws(LatentWatchError) -> ActivationStatistics {
        try ModelFile.readFile(path) { (b) throws(LatentWatchError) in try decode(b) }
    }

    /// Decodes statistics file bytes.
    public static func decode(_ b: [UInt8]) throws(LatentWatchError) -> ActivationStatistics {
        try decode(b, verifyChecksums: true)
    }

    /// `verifyChecksums: false` is for the fuzzer only.
    package static func decode(_ b: [UInt8], verifyChecksums: Bool) throws(LatentWatchError) -> ActivationStatistics {
        try ModelFile.checkFraming(b, verifyChecksums: verifyChecksums)
        let payloads = try ModelFile.sectionPayloads(b, verifyChecksums: verifyChecksums)
        let meta: Metadata
        do { meta = try JSONDecoder().decode(Metadata.self, from: Data(payloads[0]!)) } catch {
            if (try? JSONDecoder().decode(FormatOnly.self, from: Data(payloads[0]!)))?.format == "latentwatch-model" {
                throw LatentWatchError(
                    .malformedMetadata,
                    "this is a model file, not a statistics file",
                    remedy: "pass the .lws files `latentwatch fit --statistics-only` writes"
                )
            }
            throw LatentWatchError(
                .malformedMetadata,
                "the statistics metadata does not parse: \(error)",
                remedy: "the file is corrupt or not from LatentWatch; gather the statistics again"
            )
        }
        guard meta.format == format else {
            throw LatentWatchError(
                .malformedMetadata,
                "the metadata format is '\(meta.format)'",
                remedy: "pass a LatentWatch statistics file"
            )
        }
        guard meta.statisticsVersion >= 1, meta.statisticsVersion <= version else {
            throw LatentWatchError(
                .unsupportedVersion,
                "statistics layout \(meta.statisticsVersion) is not readable by LatentWatch \(LatentWatchVersion.string) (reads 1...\(version))",
                remedy: meta.statisticsVersion > version
                    ? "upgrade LatentWatch to read it" : "gather the statistics again"
            )
        }
        let cfg = try configuration(meta)
        func corrupt(_ what: String) -> LatentWatchError {
            LatentWatchError(.inconsistentModel, what, remedy: "the file is corrupt; gather the statistics again")
        }
        var elements = 1
        for e in meta.inputShape {
            guard e >= 1, e <= 1 << 24 else { throw corrupt("the input shape \(meta.inputShape) is implausible") }
            elements *= e
            guard elements <= 1 << 28 else { throw corrupt("the input shape \(meta.inputShape) is implausible") }
        }
        guard meta.inputShape.count >= 1, meta.inputShape.count <= 8 else {
            throw corrupt("the input shape \(meta.inputShape) is implausible")
        }
        if let reason = Preparation.validate(shape: meta.inputShape, options: cfg.preparation) {
            throw corrupt(reason)
        }
        let d = Preparation.pooledDimension(shape: meta.inputShape, pooling: cfg.preparation.pooling)
        guard meta.dimension == d, d >= 1, d <= 1 << 14 else {
            throw corrupt("the moments have dimension \(meta.dimension); shape \(meta.inputShape) pools to \(d)")
        }
        guard meta.moments.count >= 2, meta.moments.count <= maxMoments, meta.samples >= 0,
            meta.samples <= 1 << 62
        else {
            throw corrupt("the file declares \(meta.moments.count) moment sets and \(meta.samples) samples")
        }
        // Every moment set holds a D x D scatter in memory: bounded by the file's size (real statistics compress
        // little), so that a small crafted file cannot demand gigabytes.
        let (perSet, o1) = (d * d).multipliedReportingOverflow(by: 8)
        let (scatterBytes, o2) = perSet.multipliedReportingOverflow(by: meta.moments.count + 2)
        guard !o1, !o2, scatterBytes <= max(256 << 20, 256 * b.count) else {
            throw LatentWatchError(
                .implausibleSize,
                "\(meta.moments.count) moment sets of dimension \(d) need \(scatterBytes >> 20) MiB, implausible for a file of \(b.count) bytes",
                remedy: "the file is corrupt; gather the statistics again"
            )
        }
        var ranges: [Range<Int>] = []
        for r in meta.rows {
            guard r.count == 2, r[0] >= 0, r[0] <= r[1], r[1] <= 1 << 62 else {
                throw corrupt("row range \(r) is not [first, end) within 0...2^62")
            }
            if r[0] < r[1] { ranges.append(r[0]..<r[1]) }
        }
        ranges.sort { $0.lowerBound < $1.lowerBound }
        var total = 0
        for (i, r) in ranges.enumerated() {
            if i > 0 && r.lowerBound < ranges[i - 1].upperBound {
                throw corrupt("row ranges \(ranges[i - 1]) and \(r) overlap")
            }
            total += r.count
        }
        ranges = try ActivationStatistics.joined(ranges, [])
        guard total == meta.samples else {
            throw corrupt("the row ranges hold \(total) rows, the file \(meta.samples)")
        }
        var stats = ActivationStatistics(
            inputShape: meta.inputShape,
            configuration: cfg,
            validationFraction: cfg.regularization.shrinkage == .heldOutLikelihood
                ? cfg.regularization.validationFraction : 0
        )
        stats.fitSamples = meta.samples
        stats.rows = ranges
        var globals: [String: GaussianMoments] = [:]
        var classes: [Int: [String: GaussianMoments]] = [:]
        for m in meta.moments {
            guard m.part == "train" || m.part == "validation" else { throw corrupt("moment part '\(m.part)'") }
            guard m.weight.isFinite, m.weight >= 0, m.count >= 0, m.count <= meta.samples else {
                throw corrupt("moments of weight \(m.weight) and count \(m.count)")
            }
            let mean = try doubles(payloads, m.meanSection, count: d, corrupt)
            let packed = try doubles(payloads, m.scatterSection, count: d * (d + 1) / 2, corrupt)
            guard mean.allSatisfy(\.isFinite), packed.allSatisfy(\.isFinite) else {
                throw corrupt("moments hold NaN or infinite values")
            }
            var scatter = [Double](repeating: 0, count: d * d)
            var k = 0
            for i in 0..<d {
                for j in 0...i {
                    scatter[i * d + j] = packed[k]
                    k += 1
                }
            }
            let moments = GaussianMoments(dimension: d, weight: m.weight, count: m.count, mean: mean, scatter: scatter)
            if let label = m.label {
                guard classes[label]?[m.part] == nil else { throw corrupt("class \(label) has two \(m.part) parts") }
                classes[label, default: [:]][m.part] = moments
            } else {
                guard globals[m.part] == nil else { throw corrupt("two global \(m.part) parts") }
                globals[m.part] = moments
            }
        }
        guard let gt = globals["train"], let gv = globals["validation"] else {
            throw corrupt("the global moments are missing")
        }
        guard !classes.isEmpty else { throw corrupt("the file holds no class (gda and tied statistics have some)") }
        // Counts are at most `samples` (2^62) each, so these sums cannot overflow.
        var classTrain = 0
        var classValidation = 0
        for (label, parts) in classes {
            guard let t = parts["train"], let v = parts["validation"] else {
                throw corrupt("class \(label) lacks its training or validation part")
            }
            classTrain += t.count
            classValidation += v.count
            guard classTrain <= meta.samples, classValidation <= meta.samples else {
                throw corrupt("the classes count more inputs than the file's \(meta.samples)")
            }
            stats.classes[label] = (t, v)
        }
        guard gt.count + gv.count == meta.samples, classTrain == gt.count, classValidation == gv.count else {
            throw corrupt(
                "the global moments count \(gt.count) + \(gv.count) inputs, the classes \(classTrain) + \(classValidation), the file \(meta.samples)"
            )
        }
        stats.globalTrain = gt
        stats.globalValidation = gv
        return stats
    }

    struct FormatOnly: Decodable { var format: String }

    // MARK: Helpers

    static func bytes(_ v: [Double]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: v.count * 8)
        for (i, x) in v.enumerated() {
            let bits = x.bitPattern
            for k in 0..<8 { out[i * 8 + k] = UInt8((bits >> (8 * UInt64(k))) & 0xFF) }
        }
        return out
    }

    static func doubles(
        _ payloads: [Int: [UInt8]],
        _ section: Int,
        count: Int,
        _ corrupt: (String) -> LatentWatchError
    ) throws(LatentWatchError) -> [Double] {
        guard section >= 1, let p = payloads[section], p.count == count * 8 else {
            throw corrupt("section \(section) does not hold \(count) float64 values")
        }
        return (0..<count).map { i in
            var bits: UInt64 = 0
            for k in 0..<8 { bits |= UInt64(p[i * 8 + k]) << (8 * UInt64(k)) }
            return Double(bitPattern: bits)
        }
    }

    static func configurationJSON(_ cfg: FitConfiguration) -> Metadata.Configuration {
        let projection: ModelFileMetadata.PreparationJSON.ProjectionJSON
        switch cfg.preparation.projection {
        case .none: projection = .init(kind: "none")
        case .components(let k): projection = .init(kind: "components", k: k)
        case .varianceFraction(let f): projection = .init(kind: "variance", fraction: f)
        }
        let shrinkage: (String, Double?)
        switch cfg.regularization.shrinkage {
        case .heldOutLikelihood: shrinkage = ("held-out", nil)
        case .oracleApproximating: shrinkage = ("oas", nil)
        case .fixed(let l): shrinkage = ("fixed", l)
        }
        return .init(
            family: cfg.family.rawValue,
            preparation: .init(
                pooling: cfg.preparation.pooling.rawValue,
                l2Normalize: cfg.preparation.l2Normalize,
                projection: projection,
                outputDimension: 0
            ),
            splitSeed: cfg.splitSeed,
            shrinkage: shrinkage.0,
            lambda: shrinkage.1,
            floorRatio: cfg.regularization.floorRatio,
            ridge: cfg.regularization.ridge,
            validationFraction: cfg.regularization.validationFraction,
            precision: cfg.precision.rawValue,
            fitBackground: cfg.fitBackground,
            calibratePosterior: cfg.calibratePosterior
        )
    }

    static func configuration(_ meta: Metadata) throws(LatentWatchError) -> FitConfiguration {
        let c = meta.configuration
        func bad(_ what: String) -> LatentWatchError {
            LatentWatchError(
                .unsupportedFeature,
                "the statistics use \(what), which LatentWatch \(LatentWatchVersion.string) does not know",
                remedy: "upgrade LatentWatch, or gather the statistics with this version"
            )
        }
        guard let family = DensityFamilyRegistry.standard.family(named: c.family), !family.needsPasses else {
            throw bad("density family '\(c.family)' for statistics")
        }
        guard let pooling = PreparationOptions.Pooling(rawValue: c.preparation.pooling) else {
            throw bad("pooling '\(c.preparation.pooling)'")
        }
        let projection: PreparationOptions.Projection
        switch (c.preparation.projection.kind, c.preparation.projection.k, c.preparation.projection.fraction) {
        case ("none", _, _): projection = .none
        case ("components", let k?, _) where k >= 1 && k <= 1 << 14: projection = .components(k)
        case ("variance", _, let f?) where f > 0 && f <= 1: projection = .varianceFraction(f)
        default: throw bad("projection '\(c.preparation.projection.kind)'")
        }
        let shrinkage: Regularization.Shrinkage
        switch (c.shrinkage, c.lambda) {
        case ("held-out", _): shrinkage = .heldOutLikelihood
        case ("oas", _): shrinkage = .oracleApproximating
        case ("fixed", let l?) where l >= 0 && l <= 1: shrinkage = .fixed(l)
        default: throw bad("shrinkage '\(c.shrinkage)'")
        }
        guard let precision = ElementType(rawValue: c.precision), precision.isParameterPrecision else {
            throw bad("parameter precision '\(c.precision)'")
        }
        guard c.floorRatio.isFinite, c.floorRatio >= 0, c.ridge.isFinite, c.ridge >= 0,
            c.validationFraction >= 0, c.validationFraction < 1
        else {
            throw LatentWatchError(
                .inconsistentModel,
                "regularisation floor \(c.floorRatio), ridge \(c.ridge), validation fraction \(c.validationFraction)",
                remedy: "the file is corrupt; gather the statistics again"
            )
        }
        var cfg = FitConfiguration(
            family: family.name,
            preparation: PreparationOptions(
                pooling: pooling,
                l2Normalize: c.preparation.l2Normalize,
                projection: projection
            ),
            regularization: Regularization(
                shrinkage: shrinkage,
                floorRatio: c.floorRatio,
                ridge: c.ridge,
                validationFraction: c.validationFraction
            ),
            splitSeed: c.splitSeed,
            precision: precision,
            fitBackground: c.fitBackground,
            layerName: meta.layer,
            calibratePosterior: c.calibratePosterior
        )
        cfg.calibrationFraction = 0
        return cfg
    }
}
