import Foundation
import LatentWatchNumerics

/// Reads and writes LatentWatch statistics files (`.lws`, Docs/ModelFormat.md, "Statistics files"): the mergeable
/// sufficient statistics of one shard of a fit (``ActivationStatistics``), and a sharded mixture fit's rounds and
/// E-steps (``MixtureRound``, ``MixtureStep``), in the model file's container (versioned, checksummed,
/// zstd-compressed) with metadata of their own. Shards gathered in separate
/// processes (`latentwatch fit --statistics-only`) merge into one model (`latentwatch merge`). A reader never
/// crashes on bad bytes: every failure is a ``LatentWatchError``.
public enum StatisticsFile {
    /// The metadata's `format`.
    static let format = "latentwatch-statistics"
    /// The latest statistics layout this library writes and reads (it reads every earlier one): 3 for regression
    /// families (their target bins), 2 for mixture families (reservoir and EM options), 1 for the others, so
    /// older readers read every file they can use and refuse the others as written by a newer version.
    static let version = 3
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
            /// The EM options of a mixture family (layout 2).
            var mixture: Mixture?
            /// The target bins of a regression family (layout 3).
            var targets: Targets?
            /// The neighbour index's options, when the fit keeps one (absent in files written before statistics
            /// carried its sample: no index).
            var neighbours: Neighbours?

            enum CodingKeys: String, CodingKey {
                case family, preparation, mixture, targets, neighbours
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

        /// A regression family's target bins: `edges` (bins + 1, ascending), and the mean and standard deviation
        /// of the fitting targets in each bin.
        struct Targets: Codable {
            var edges: [Double]
            var means: [Double]
            var spreads: [Double]
        }

        /// ``NeighbourOptions``.
        struct Neighbours: Codable {
            var rows: Int
            var cells: Int?
            var probes: Int
            var maximumBytes: Int
            var required: Bool
            var minimumCalibrationInputs: Int
            /// The seed of the sample's keys (a mixture's `mixture.seed` when the family is one).
            var seed: UInt64

            enum CodingKeys: String, CodingKey {
                case rows, cells, probes, required, seed
                case maximumBytes = "maximum_bytes"
                case minimumCalibrationInputs = "minimum_calibration_inputs"
            }
        }

        struct Mixture: Codable {
            var components: Int
            var seed: UInt64
            var tolerance: Double
            var maxIterations: Int
            var restarts: Int
            var reservoirSize: Int
            var lambda: Double
            var floorRatio: Double
            var ridge: Double

            enum CodingKeys: String, CodingKey {
                case components, seed, tolerance
                case maxIterations = "max_iterations"
                case restarts
                case reservoirSize = "reservoir_size"
                case lambda
                case floorRatio = "floor_ratio"
                case ridge
            }
        }

        /// The reservoir sample of the fitting rows, for a mixture's start and the neighbour index: `count` rows,
        /// their keys (u64) and pooled values (f32).
        struct Reservoir: Codable {
            var count: Int
            var keysSection: Int
            var valuesSection: Int

            enum CodingKeys: String, CodingKey {
                case count
                case keysSection = "keys_section"
                case valuesSection = "values_section"
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
        var reservoir: Reservoir?

        enum CodingKeys: String, CodingKey {
            case format
            case statisticsVersion = "statistics_version"
            case libraryVersion = "library_version"
            case created, layer
            case inputShape = "input_shape"
            case dimension, configuration, rows, samples, moments, reservoir
        }
    }

    // MARK: Writing

    /// Encodes statistics into file bytes.
    /// - Throws: `invalidConfiguration` for statistics of a registered family other than gda, tied, gmm-full,
    ///   gmm-diag, regression and regression-tied, which a statistics file cannot carry, and for regression
    ///   statistics without their target bins.
    public static func encode(
        _ s: ActivationStatistics,
        created: String = "1970-01-01T00:00:00Z",
        compressionLevel: Int32 = 3
    ) throws(LatentWatchError) -> [UInt8] {
        let cfg = s.configuration
        let isMixture = MixtureRound.covariance(of: cfg.family) != nil
        guard cfg.families.family(named: cfg.family.rawValue)?.needsPasses != true || isMixture else {
            throw LatentWatchError(
                .invalidConfiguration,
                "statistics of family '\(cfg.family)' cannot be stored: it needs passes over the activations",
                remedy: "gather statistics for gda, tied, gmm-full, gmm-diag, regression or regression-tied"
            )
        }
        guard !cfg.fitsTargets || cfg.binnedTargets != nil else {
            throw LatentWatchError(
                .invalidConfiguration,
                "statistics of family '\(cfg.family)' need their target bins",
                remedy:
                    "gather them with LatentModelFitter.statistics(of:targets:binning:configuration:firstIndex:progress:)"
            )
        }
        var payloads = Payloads()
        var moments: [Metadata.Moments] = []
        for label in s.classLabels {
            let pair = s.classes[label]!
            moments.append(payloads.add(pair.train, label: label, part: "train"))
            moments.append(payloads.add(pair.validation, label: label, part: "validation"))
        }
        moments.append(payloads.add(s.globalTrain, label: nil, part: "train"))
        moments.append(payloads.add(s.globalValidation, label: nil, part: "validation"))
        var reservoir: Metadata.Reservoir?
        if isMixture || cfg.neighbours != nil {
            reservoir = .init(
                count: s.reservoirKeys.count,
                keysSection: payloads.add(ByteCoding.bytes(of: s.reservoirKeys), width: 8),
                valuesSection: payloads.add(ByteCoding.bytes(of: s.reservoir), width: 4)
            )
        }
        let meta = Metadata(
            format: format,
            statisticsVersion: cfg.binnedTargets != nil ? 3 : (isMixture ? 2 : 1),
            libraryVersion: LatentWatchVersion.string,
            created: created,
            layer: cfg.layerName,
            inputShape: s.inputShape,
            dimension: s.globalTrain.dimension,
            configuration: configurationJSON(cfg),
            rows: s.rows.map { [$0.lowerBound, $0.upperBound] },
            samples: s.fitSamples,
            moments: moments,
            reservoir: reservoir
        )
        return try payloads.container(metadata: meta, level: compressionLevel)
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

    /// What a statistics file holds: a shard's statistics, a sharded mixture fit's round, or one of its E-steps.
    public enum Contents: Sendable {
        /// Statistics of one shard or several merged (`latentwatch fit --statistics-only`, `merge --statistics-only`).
        case statistics(ActivationStatistics)
        /// A sharded mixture fit between EM rounds (`latentwatch merge` of mixture statistics or E-steps).
        case mixtureRound(MixtureRound)
        /// One round's E-step over a shard (`latentwatch fit --mixture-round`), or several merged.
        case mixtureStep(MixtureStep)
    }

    /// Reads a statistics file.
    public static func read(contentsOf path: String) throws(LatentWatchError) -> ActivationStatistics {
        try ModelFile.readFile(path) { (b) throws(LatentWatchError) in try decode(b) }
    }

    /// Reads any statistics file: statistics, a mixture round or an E-step.
    public static func readContents(contentsOf path: String) throws(LatentWatchError) -> Contents {
        try ModelFile.readFile(path) { (b) throws(LatentWatchError) in try decodeContents(b) }
    }

    /// Decodes statistics file bytes.
    public static func decode(_ b: [UInt8]) throws(LatentWatchError) -> ActivationStatistics {
        try decode(b, verifyChecksums: true)
    }

    /// Decodes the bytes of any statistics file.
    public static func decodeContents(_ b: [UInt8]) throws(LatentWatchError) -> Contents {
        try decodeContents(b, verifyChecksums: true)
    }

    /// `verifyChecksums: false` is for the fuzzer only.
    package static func decode(_ b: [UInt8], verifyChecksums: Bool) throws(LatentWatchError) -> ActivationStatistics {
        switch try decodeContents(b, verifyChecksums: verifyChecksums) {
        case .statistics(let s): return s
        case .mixtureRound(let r):
            throw LatentWatchError(
                .malformedMetadata,
                "this is round \(r.round) of a sharded mixture fit, not a shard's statistics",
                remedy: "pass it to `latentwatch fit --mixture-round` or `latentwatch merge --mixture-round`"
            )
        case .mixtureStep(let e):
            throw LatentWatchError(
                .malformedMetadata,
                "this is an E-step of round \(e.round) of a sharded mixture fit, not a shard's statistics",
                remedy: "merge it with `latentwatch merge --mixture-round`"
            )
        }
    }

    /// `verifyChecksums: false` is for the fuzzer only.
    package static func decodeContents(_ b: [UInt8], verifyChecksums: Bool) throws(LatentWatchError) -> Contents {
        try ModelFile.checkFraming(b, verifyChecksums: verifyChecksums)
        let payloads = try ModelFile.sectionPayloads(b, verifyChecksums: verifyChecksums)
        let json = Data(payloads[0]!)
        switch (try? JSONDecoder().decode(FormatOnly.self, from: json))?.format {
        case "latentwatch-model":
            throw LatentWatchError(
                .malformedMetadata,
                "this is a model file, not a statistics file",
                remedy: "pass the .lws files `latentwatch fit --statistics-only` writes"
            )
        case roundFormat: return .mixtureRound(try decodeRound(json, payloads, fileSize: b.count))
        case stepFormat: return .mixtureStep(try decodeStep(json, payloads, fileSize: b.count))
        default: return .statistics(try decodeStatistics(json, payloads, fileSize: b.count))
        }
    }

    static func decodeStatistics(
        _ json: Data,
        _ payloads: [Int: [UInt8]],
        fileSize: Int
    ) throws(LatentWatchError) -> ActivationStatistics {
        let meta: Metadata = try metadata(json, format: format, version: { $0.statisticsVersion }, readable: version)
        let cfg = try configuration(meta.configuration, layer: meta.layer)
        let d = try pooledDimension(meta.inputShape, cfg, dimension: meta.dimension)
        guard meta.moments.count >= 2, meta.moments.count <= maxMoments, meta.samples >= 0,
            meta.samples <= 1 << 62
        else {
            throw corrupt("the file declares \(meta.moments.count) moment sets and \(meta.samples) samples")
        }
        // Mixtures: EM later holds K more D x D matrices (D at most this pooled dimension).
        let emSets = MixtureRound.covariance(of: cfg.family) == nil ? 0 : cfg.mixture.components
        try checkSize(sets: meta.moments.count + 2 + emSets, dimension: d, extra: 0, fileSize: fileSize)
        let ranges = try rowRanges(meta.rows, samples: meta.samples)
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
            let moments = try moments(m, payloads, dimension: d, samples: meta.samples)
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
        let isMixture = MixtureRound.covariance(of: cfg.family) != nil
        guard !classes.isEmpty || isMixture else {
            throw corrupt("the file holds no class (gda, tied and regression statistics have some)")
        }
        if let bins = cfg.binnedTargets, let label = classes.keys.first(where: { $0 < 0 || $0 >= bins.count }) {
            throw corrupt("class \(label) is not one of the \(bins.count) target bins")
        }
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
        guard gt.count + gv.count == meta.samples,
            classes.isEmpty || (classTrain == gt.count && classValidation == gv.count)
        else {
            throw corrupt(
                "the global moments count \(gt.count) + \(gv.count) inputs, the classes \(classTrain) + \(classValidation), the file \(meta.samples)"
            )
        }
        stats.globalTrain = gt
        stats.globalValidation = gv
        if isMixture, meta.reservoir == nil { throw corrupt("mixture statistics without their reservoir sample") }
        if let r = meta.reservoir {
            let capacity = cfg.reservoirCapacity(pooledDimension: d)
            guard r.count >= 0, r.count <= capacity, r.count <= meta.samples else {
                throw corrupt("a reservoir of \(r.count) rows (at most \(capacity) and \(meta.samples))")
            }
            try checkSize(sets: 0, dimension: d, extra: r.count * d * 4, fileSize: fileSize)
            guard let kb = payloads[r.keysSection], kb.count == r.count * 8, r.keysSection >= 1,
                let vb = payloads[r.valuesSection], vb.count == r.count * d * 4, r.valuesSection >= 1
            else {
                throw corrupt("the reservoir's sections do not hold \(r.count) keys and rows of \(d) float32 values")
            }
            let keys = ByteCoding.values(kb, as: UInt64.self)
            let values = ByteCoding.values(vb, as: Float.self)
            guard zip(keys, keys.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw corrupt("the reservoir's keys are not increasing")
            }
            guard values.allSatisfy(\.isFinite) else { throw corrupt("the reservoir holds NaN or infinite values") }
            stats.reservoirKeys = keys
            stats.reservoir = values
            if keys.count >= capacity, let last = keys.last { stats.reservoirThreshold = last }
        }
        return stats
    }

    /// Parses metadata of one format and checks its layout version against the latest this library reads.
    static func metadata<M: Decodable>(
        _ json: Data,
        format expected: String,
        version: (M) -> Int,
        readable: Int
    ) throws(LatentWatchError) -> M {
        let meta: M
        do { meta = try JSONDecoder().decode(M.self, from: json) } catch {
            throw LatentWatchError(
                .malformedMetadata,
                "the statistics metadata does not parse: \(error)",
                remedy: "the file is corrupt or not from LatentWatch; gather the statistics again"
            )
        }
        let format = (try? JSONDecoder().decode(FormatOnly.self, from: json))?.format ?? ""
        guard format == expected else {
            throw LatentWatchError(
                .malformedMetadata,
                "the metadata format is '\(format)'",
                remedy: "pass a LatentWatch statistics file"
            )
        }
        let v = version(meta)
        guard v >= 1, v <= readable else {
            throw LatentWatchError(
                .unsupportedVersion,
                "\(format) layout \(v) is not readable by LatentWatch \(LatentWatchVersion.string) (reads 1...\(readable))",
                remedy: v > readable ? "upgrade LatentWatch to read it" : "gather the statistics again"
            )
        }
        return meta
    }

    static func corrupt(_ what: String) -> LatentWatchError {
        LatentWatchError(.inconsistentModel, what, remedy: "the file is corrupt; gather the statistics again")
    }

    /// Checks a raw activation shape for plausibility and returns its pooled dimension, which must be `dimension`
    /// when given.
    static func pooledDimension(
        _ shape: [Int],
        _ cfg: FitConfiguration,
        dimension: Int?
    ) throws(LatentWatchError) -> Int {
        var elements = 1
        for e in shape {
            guard e >= 1, e <= 1 << 24 else { throw corrupt("the input shape \(shape) is implausible") }
            elements *= e
            guard elements <= 1 << 28 else { throw corrupt("the input shape \(shape) is implausible") }
        }
        guard shape.count >= 1, shape.count <= 8 else { throw corrupt("the input shape \(shape) is implausible") }
        if let reason = Preparation.validate(shape: shape, options: cfg.preparation) { throw corrupt(reason) }
        let d = Preparation.pooledDimension(shape: shape, pooling: cfg.preparation.pooling)
        guard dimension ?? d == d, d >= 1, d <= 1 << 14 else {
            throw corrupt("the moments have dimension \(dimension ?? d); shape \(shape) pools to \(d)")
        }
        return d
    }

    /// Memory the decoded file needs: `sets` D x D scatter matrices in double precision plus `extra` bytes. It is
    /// bounded by the file's size (real statistics compress little), so a small crafted file cannot demand
    /// gigabytes.
    static func checkSize(sets: Int, dimension d: Int, extra: Int, fileSize: Int) throws(LatentWatchError) {
        let (perSet, o1) = (d * d).multipliedReportingOverflow(by: 8)
        let (scatter, o2) = perSet.multipliedReportingOverflow(by: sets)
        let (total, o3) = scatter.addingReportingOverflow(extra)
        guard !o1, !o2, !o3, extra >= 0, total <= max(256 << 20, 256 * fileSize) else {
            throw LatentWatchError(
                .implausibleSize,
                "\(sets) moment sets of dimension \(d) and \(extra) further bytes need \(o1 || o2 || o3 ? Int.max >> 20 : total >> 20) MiB, implausible for a file of \(fileSize) bytes",
                remedy: "the file is corrupt; gather the statistics again"
            )
        }
    }

    /// Row ranges `[first, end)` as sorted, joined ranges holding `samples` rows in all.
    static func rowRanges(_ rows: [[Int]], samples: Int) throws(LatentWatchError) -> [Range<Int>] {
        guard samples >= 0, samples <= 1 << 62 else { throw corrupt("the file declares \(samples) samples") }
        var ranges: [Range<Int>] = []
        for r in rows {
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
        guard total == samples else { throw corrupt("the row ranges hold \(total) rows, the file \(samples)") }
        return try ActivationStatistics.joined(ranges, [])
    }

    /// One set of moments, checked: finite values, a weight and a count within the file's samples.
    static func moments(
        _ m: Metadata.Moments,
        _ payloads: [Int: [UInt8]],
        dimension d: Int,
        samples: Int
    ) throws(LatentWatchError) -> GaussianMoments {
        guard m.weight.isFinite, m.weight >= 0, m.weight <= Double(samples) * (1 + 1e-9) + 1, m.count >= 0,
            m.count <= samples
        else {
            throw corrupt("moments of weight \(m.weight) and count \(m.count)")
        }
        let mean = try doubles(payloads, m.meanSection, count: d)
        let packed = try doubles(payloads, m.scatterSection, count: d * (d + 1) / 2)
        var scatter = [Double](repeating: 0, count: d * d)
        var k = 0
        for i in 0..<d {
            for j in 0...i {
                scatter[i * d + j] = packed[k]
                k += 1
            }
        }
        return GaussianMoments(dimension: d, weight: m.weight, count: m.count, mean: mean, scatter: scatter)
    }

    struct FormatOnly: Decodable { var format: String }

    // MARK: Helpers

    /// The finite float64 values of a section that must hold exactly `count`.
    static func doubles(_ payloads: [Int: [UInt8]], _ section: Int, count: Int) throws(LatentWatchError) -> [Double] {
        guard section >= 1, let p = payloads[section], p.count == count * 8 else {
            throw corrupt("section \(section) does not hold \(count) float64 values")
        }
        let values = ByteCoding.values(p, as: Double.self)
        guard values.allSatisfy(\.isFinite) else { throw corrupt("section \(section) holds NaN or infinite values") }
        return values
    }

    /// Tensor sections being written, each with its byte-shuffle width.
    struct Payloads {
        var sections: [(bytes: [UInt8], width: Int)] = []

        /// Adds a section; returns its index in the file (the metadata is section 0).
        mutating func add(_ bytes: [UInt8], width: Int) -> Int {
            sections.append((bytes, width))
            return sections.count
        }

        mutating func add(_ values: [Double]) -> Int { add(ByteCoding.bytes(of: values), width: 8) }

        /// Adds a set of moments (mean, and the scatter's lower triangle) and describes it.
        mutating func add(_ m: GaussianMoments, label: Int?, part: String) -> Metadata.Moments {
            let d = m.dimension
            var packed: [Double] = []
            packed.reserveCapacity(d * (d + 1) / 2)
            for i in 0..<d { for j in 0...i { packed.append(m.scatterLower[i * d + j]) } }
            let mean = add(m.mean)
            let scatter = add(packed)
            return .init(
                label: label,
                part: part,
                weight: m.weight,
                count: m.count,
                meanSection: mean,
                scatterSection: scatter
            )
        }

        /// The file: metadata JSON (sorted keys) as section 0, then the tensor sections.
        func container(metadata: some Encodable, level: Int32) throws(LatentWatchError) -> [UInt8] {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let json: [UInt8]
            switch Result(catching: { try encoder.encode(metadata) }) {
            case .success(let data): json = Array(data)
            case .failure(let error):
                throw LatentWatchError(.io, "could not encode metadata: \(error)", remedy: "report this as a bug")
            }
            return try ModelFile.container(
                [("META", json, 1)] + sections.map { ("TNSR", $0.bytes, $0.width) },
                level: level
            )
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
            calibratePosterior: cfg.calibratePosterior,
            mixture: MixtureRound.covariance(of: cfg.family) == nil
                ? nil
                : .init(
                    components: cfg.mixture.components,
                    seed: cfg.mixture.seed,
                    tolerance: cfg.mixture.tolerance,
                    maxIterations: cfg.mixture.maxIterations,
                    restarts: cfg.mixture.restarts,
                    reservoirSize: cfg.mixture.reservoirSize,
                    lambda: cfg.mixtureLambda,
                    floorRatio: cfg.mixtureRegularization.floorRatio,
                    ridge: cfg.mixtureRegularization.ridge
                ),
            targets: cfg.binnedTargets.map { .init(edges: $0.edges, means: $0.means, spreads: $0.spreads) },
            neighbours: cfg.neighbours.map {
                .init(
                    rows: $0.sampleSize,
                    cells: $0.cells,
                    probes: $0.probes,
                    maximumBytes: $0.maximumBytes,
                    required: $0.required,
                    minimumCalibrationInputs: $0.minimumCalibrationInputs,
                    seed: cfg.mixture.seed
                )
            }
        )
    }

    static func configuration(
        _ c: Metadata.Configuration,
        layer: String
    ) throws(LatentWatchError) -> FitConfiguration {
        func bad(_ what: String) -> LatentWatchError {
            LatentWatchError(
                .unsupportedFeature,
                "the statistics use \(what), which LatentWatch \(LatentWatchVersion.string) does not know",
                remedy: "upgrade LatentWatch, or gather the statistics with this version"
            )
        }
        guard let family = DensityFamilyRegistry.standard.family(named: c.family),
            !family.needsPasses || MixtureRound.covariance(of: family.name) != nil
        else {
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
            layerName: layer,
            calibratePosterior: c.calibratePosterior
        )
        cfg.calibrationFraction = 0
        cfg.neighbours = nil
        if let n = c.neighbours {
            let options = NeighbourOptions(
                sampleSize: n.rows,
                cells: n.cells,
                probes: n.probes,
                maximumBytes: n.maximumBytes,
                required: n.required,
                minimumCalibrationInputs: n.minimumCalibrationInputs
            )
            if let problem = options.problem {
                throw LatentWatchError(
                    .inconsistentModel,
                    "neighbour options: \(problem)",
                    remedy: "the file is corrupt; gather the statistics again"
                )
            }
            cfg.neighbours = options
            cfg.mixture.seed = n.seed
        }
        if MixtureRound.covariance(of: family.name) != nil {
            guard let m = c.mixture else { throw bad("family '\(c.family)' without its EM options") }
            guard m.components >= 1, m.components <= 4096, m.tolerance.isFinite, m.tolerance >= 0,
                m.maxIterations >= 1, m.maxIterations <= 1_000_000, m.restarts >= 1, m.restarts <= 1000,
                m.reservoirSize >= 1, m.reservoirSize <= 1 << 24, m.lambda >= 0, m.lambda <= 1,
                m.floorRatio.isFinite, m.floorRatio >= 0, m.ridge.isFinite, m.ridge >= 0
            else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "EM options \(m.components) components, tolerance \(m.tolerance), \(m.maxIterations) iterations, \(m.restarts) restarts, reservoir \(m.reservoirSize), lambda \(m.lambda), floor \(m.floorRatio), ridge \(m.ridge)",
                    remedy: "the file is corrupt; gather the statistics again"
                )
            }
            cfg.mixture = MixtureOptions(
                components: m.components,
                seed: m.seed,
                tolerance: m.tolerance,
                maxIterations: m.maxIterations,
                restarts: m.restarts,
                reservoirSize: m.reservoirSize
            )
            cfg.mixtureRegularization.shrinkage = .fixed(m.lambda)
            cfg.mixtureRegularization.floorRatio = m.floorRatio
            cfg.mixtureRegularization.ridge = m.ridge
        }
        if family.needsTargets {
            guard let t = c.targets else { throw bad("family '\(c.family)' without its target bins") }
            guard t.means.count <= 1_000 else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "\(t.means.count) target bins; a regression family has at most 1,000",
                    remedy: "the file is corrupt; gather the statistics again"
                )
            }
            guard let bins = TargetBins(edges: t.edges, means: t.means, spreads: t.spreads) else {
                throw LatentWatchError(
                    .inconsistentModel,
                    "target bins with \(t.edges.count) edges, \(t.means.count) means and \(t.spreads.count) spreads "
                        + "that are not increasing, finite and consistent",
                    remedy: "the file is corrupt; gather the statistics again"
                )
            }
            cfg.binnedTargets = bins
            cfg.targetBinCount = bins.count
        } else if c.targets != nil {
            throw LatentWatchError(
                .inconsistentModel,
                "target bins for family '\(c.family)', which takes class labels",
                remedy: "the file is corrupt; gather the statistics again"
            )
        }
        return cfg
    }
}
