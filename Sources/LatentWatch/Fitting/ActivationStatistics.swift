import LatentWatchNumerics

/// Sufficient statistics of a fit's first pass: per-class and global moments of the pooled (and normalised)
/// activations, split into a training and a validation part (for choosing the shrinkage), and a reservoir
/// sample for mixtures. Statistics of shards of the data merge into those of the whole, so replicas can
/// each read their part and one process fits the model (``LatentModelFitter/fit(statistics:calibration:configuration:created:progress:)``).
public struct ActivationStatistics: Sendable {
    /// Shape of one raw activation.
    public let inputShape: [Int]
    /// The fit configuration the statistics were gathered with (family, preparation, regularisation, split seed,
    /// precision, layer name): what ``LatentModelFitter/fit(statistics:calibration:configuration:created:progress:)``
    /// should be given.
    public package(set) var configuration: FitConfiguration
    /// Validation fraction of the split assignment.
    let validationFraction: Double
    /// The rows of the whole data set these statistics hold, as ranges of activation indices (one per shard merged
    /// in, adjacent ranges joined).
    public package(set) var rows: [Range<Int>] = []
    package var classes: [Int: (train: GaussianMoments, validation: GaussianMoments)] = [:]
    package internal(set) var globalTrain: GaussianMoments
    package internal(set) var globalValidation: GaussianMoments
    /// Activations folded in.
    public internal(set) var fitSamples = 0
    /// Activations the pass skipped as calibration inputs (those a fit carves off; 0 for shards, which carve none).
    package internal(set) var calibrationSamples = 0
    /// A uniform sample of the fitting rows for a mixture's k-means++ start: the rows with the smallest keys
    /// (``reservoirKey(seed:index:)``), pooled, in increasing key order once ``truncateReservoir(to:p:)`` ran. A key
    /// depends only on the seed and the row's index in the whole data set, so the sample of merged shards is
    /// the sample of one pass.
    package internal(set) var reservoir: [Float] = []
    /// The keys of ``reservoir``'s rows.
    package internal(set) var reservoirKeys: [UInt64] = []
    /// Rows a key must beat to enter a full reservoir.
    var reservoirThreshold = UInt64.max

    init(inputShape: [Int], configuration cfg: FitConfiguration, validationFraction: Double) {
        let p = Preparation.pooledDimension(shape: inputShape, pooling: cfg.preparation.pooling)
        self.inputShape = inputShape
        self.configuration = cfg
        self.validationFraction = validationFraction
        globalTrain = GaussianMoments(dimension: p)
        globalValidation = GaussianMoments(dimension: p)
    }

    /// Preparation options the activations were pooled with.
    package var preparation: PreparationOptions { configuration.preparation }

    /// Class labels seen.
    package var classLabels: [Int] { classes.keys.sorted() }

    /// A class's training and validation moments, and both merged (all its fitting samples).
    package func moments(
        ofClass label: Int
    ) -> (train: GaussianMoments, validation: GaussianMoments, all: GaussianMoments) {
        let (train, validation) = classes[label]!
        var all = train
        all.merge(validation)
        return (train, validation, all)
    }

    /// Moments of every fitting sample (training and validation parts merged).
    package var globalMoments: GaussianMoments {
        var all = globalTrain
        all.merge(globalValidation)
        return all
    }

    /// Merges the statistics of another shard gathered with the same configuration. Refuses shards of another
    /// shape, layer or configuration, and shards whose rows overlap these (a shard merged twice).
    public mutating func merge(_ other: ActivationStatistics) throws {
        let a = configuration
        let b = other.configuration
        guard other.inputShape == inputShape, other.validationFraction == validationFraction,
            a.preparation == b.preparation, a.splitSeed == b.splitSeed, a.family == b.family,
            a.regularization == b.regularization, a.layerName == b.layerName, a.precision == b.precision,
            a.fitBackground == b.fitBackground, a.neighbours == b.neighbours,
            a.neighbours == nil || a.mixture.seed == b.mixture.seed,
            MixtureRound.covariance(of: a.family) == nil
                || (a.mixture == b.mixture && a.mixtureLambda == b.mixtureLambda
                    && a.mixtureRegularization.floorRatio == b.mixtureRegularization.floorRatio
                    && a.mixtureRegularization.ridge == b.mixtureRegularization.ridge)
        else {
            throw LatentWatchError(
                .fitFailed,
                "statistics of layer '\(b.layerName)' (\(b.family), shape \(other.inputShape)) were gathered for another fit than those of layer '\(a.layerName)' (\(a.family), shape \(inputShape)): shape, preparation, split seed, family, regularisation, mixture options, neighbour options or sample seed, precision or layer differ",
                remedy: "gather every shard with the same fit options"
            )
        }
        guard a.binnedTargets == b.binnedTargets else {
            throw LatentWatchError(
                .fitFailed,
                "the statistics of layer '\(b.layerName)' bin their targets otherwise than those being merged into",
                remedy: "gather every shard with the same binning targets: all the data set's fitting targets"
            )
        }
        let combined = try Self.joined(rows, other.rows)
        globalTrain.merge(other.globalTrain)
        globalValidation.merge(other.globalValidation)
        for (label, pair) in other.classes {
            var mine =
                classes[label] ?? (
                    GaussianMoments(dimension: pair.train.dimension), GaussianMoments(dimension: pair.train.dimension)
                )
            mine.train.merge(pair.train)
            mine.validation.merge(pair.validation)
            classes[label] = mine
        }
        fitSamples += other.fitSamples
        rows = combined
        if !other.reservoirKeys.isEmpty {
            let p = globalTrain.dimension
            reservoirKeys += other.reservoirKeys
            reservoir += other.reservoir
            reservoirThreshold = min(reservoirThreshold, other.reservoirThreshold)
            truncateReservoir(to: configuration.reservoirCapacity(pooledDimension: p), p: p)
        }
    }

    /// The key that orders row `index` (of the whole data set) for the reservoir sample.
    static func reservoirKey(seed: UInt64, index: Int) -> UInt64 {
        SeededRandom.mix(SeededRandom.mix(seed ^ 0x5EED_0F4E_5E4F_0001) ^ UInt64(index))
    }

    /// Offers a pooled row to the reservoir.
    mutating func offerToReservoir(_ row: UnsafeBufferPointer<Float>, index: Int, capacity: Int) {
        let key = Self.reservoirKey(seed: configuration.mixture.seed, index: index)
        guard key < reservoirThreshold else { return }
        reservoirKeys.append(key)
        reservoir.append(contentsOf: row)
        if reservoirKeys.count >= 2 * capacity { truncateReservoir(to: capacity, p: row.count) }
    }

    /// Keeps the `capacity` rows of smallest key, sorted by key.
    mutating func truncateReservoir(to capacity: Int, p: Int) {
        let order = reservoirKeys.indices.sorted { reservoirKeys[$0] < reservoirKeys[$1] }
        let kept = order.prefix(capacity)
        var rows = [Float]()
        rows.reserveCapacity(kept.count * p)
        for i in kept { rows += reservoir[(i * p)..<((i + 1) * p)] }
        reservoir = rows
        reservoirKeys = kept.map { reservoirKeys[$0] }
        if reservoirKeys.count >= capacity, let last = reservoirKeys.last {
            reservoirThreshold = min(reservoirThreshold, last)
        }
    }

    /// Two sets of row ranges as one, sorted, with adjacent ranges joined; throws when they overlap.
    static func joined(_ a: [Range<Int>], _ b: [Range<Int>]) throws(LatentWatchError) -> [Range<Int>] {
        var out: [Range<Int>] = []
        for r in (a + b).sorted(by: { $0.lowerBound < $1.lowerBound }) where !r.isEmpty {
            if let last = out.last {
                if r.lowerBound < last.upperBound {
                    throw LatentWatchError(
                        .fitFailed,
                        "rows \(r.lowerBound)..<\(min(r.upperBound, last.upperBound)) are in two of the statistics being merged",
                        remedy: "merge each shard once, and give each shard its own --first-index"
                    )
                }
                if r.lowerBound == last.upperBound {
                    out[out.count - 1] = last.lowerBound..<r.upperBound
                    continue
                }
            }
            out.append(r)
        }
        return out
    }

    func checkCompatible(with cfg: FitConfiguration) throws {
        let expected = cfg.regularization.shrinkage == .heldOutLikelihood ? cfg.regularization.validationFraction : 0
        guard cfg.preparation == preparation, cfg.splitSeed == configuration.splitSeed, expected == validationFraction
        else {
            throw LatentWatchError(
                .fitFailed,
                "the statistics were gathered with another preparation, split seed or validation fraction than this configuration"
            )
        }
    }

    mutating func project(onto p: [Double], k: Int, center: [Double]) {
        globalTrain = globalTrain.projected(onto: p, k: k, center: center)
        globalValidation = globalValidation.projected(onto: p, k: k, center: center)
        for (label, pair) in classes {
            classes[label] = (
                pair.train.projected(onto: p, k: k, center: center),
                pair.validation.projected(onto: p, k: k, center: center)
            )
        }
    }
}

extension LatentModelFitter {
    /// Gathers the sufficient statistics of `source` for a fit (one pass). To shard a fit, give each shard the
    /// index of its first activation in the whole (`firstIndex`), so the validation split (and a mixture's
    /// reservoir sample) is assigned as in one pass; merge the results and call
    /// ``fit(statistics:calibration:configuration:created:progress:)`` (`gda`, `tied`), or start EM rounds with
    /// ``MixtureRound/init(statistics:progress:)`` (`gmm-full`, `gmm-diag`). Nothing is carved off for
    /// calibration: those fits take an explicit calibration source.
    public static func statistics(
        of source: some ActivationSource,
        configuration cfg: FitConfiguration,
        firstIndex: Int = 0,
        progress: ((FitProgress) -> Void)? = nil
    ) throws -> ActivationStatistics {
        if let reason = Preparation.validate(shape: source.sampleShape, options: cfg.preparation) {
            throw LatentWatchError(.invalidConfiguration, reason)
        }
        if let problem = cfg.neighbours?.problem { throw LatentWatchError(.invalidConfiguration, problem) }
        guard firstIndex >= 0, firstIndex <= 1 << 62 else {
            throw LatentWatchError(
                .invalidConfiguration,
                "the first index \(firstIndex) is outside 0...2^62",
                remedy: "give the index of the shard's first activation in the whole data set"
            )
        }
        if cfg.fitsTargets && cfg.binnedTargets == nil {
            throw LatentWatchError(
                .invalidConfiguration,
                "family '\(cfg.family)' bins real-valued targets, and none were given",
                remedy: "gather its statistics with statistics(of:targets:binning:configuration:firstIndex:progress:)"
            )
        }
        if cfg.families.family(named: cfg.family.rawValue)?.needsLabels == true, !source.hasLabels {
            throw LatentWatchError(
                .invalidConfiguration,
                "family '\(cfg.family)' needs class labels, and the activations have none",
                remedy: "give the shard's labels"
            )
        }
        var cfg = cfg
        if cfg.families.family(named: cfg.family.rawValue)?.needsPasses == true, let options = cfg.neighbours {
            // A sharded mixture's EM rounds carry no sample on, so its statistics keep only the start's.
            guard !options.required else {
                throw LatentWatchError(
                    .invalidConfiguration,
                    "a sharded fit of family '\(cfg.family)' (EM rounds) cannot keep a neighbour index",
                    remedy: "fit the mixture in one pass to keep an index, or make the index optional (the default)"
                )
            }
            cfg.neighbours = nil
        }
        let split = SplitAssignment(
            seed: cfg.splitSeed,
            calibrationFraction: 0,
            validationFraction: cfg.regularization.shrinkage == .heldOutLikelihood
                ? cfg.regularization.validationFraction : 0
        )
        var stats = try collectStatistics(
            source,
            configuration: cfg,
            split: split,
            firstIndex: firstIndex,
            progress: progress
        )
        stats.rows = [firstIndex..<(firstIndex + stats.fitSamples)]
        return stats
    }

    static func collectStatistics(
        _ source: some ActivationSource,
        configuration cfg: FitConfiguration,
        split: SplitAssignment,
        firstIndex: Int,
        neighbourSample: Bool = true,
        progress: ((FitProgress) -> Void)?
    ) throws -> ActivationStatistics {
        let preparation = Preparation(inputShape: source.sampleShape, options: cfg.preparation)
        let p = preparation.pooledDimension
        let capacity =
            neighbourSample ? cfg.reservoirCapacity(pooledDimension: p) : cfg.mixtureReservoir
        let n = preparation.inputCount
        var stats = ActivationStatistics(
            inputShape: source.sampleShape,
            configuration: cfg,
            validationFraction: split.validationFraction
        )
        var index = firstIndex
        var pooled = [Float](repeating: 0, count: p)
        var groups: [GroupKey: [Float]] = [:]
        var workspace: [Double] = []
        try source.forEachBatch { batch in
            guard batch.values.count >= batch.count * n else {
                throw LatentWatchError(
                    .fitFailed,
                    "a batch holds \(batch.values.count) values for \(batch.count) activations of \(n) elements"
                )
            }
            for key in groups.keys { groups[key]!.removeAll(keepingCapacity: true) }
            for i in 0..<batch.count {
                defer { index += 1 }
                if split.isCalibration(index) {
                    stats.calibrationSamples += 1
                    continue
                }
                let row = UnsafeBufferPointer(rebasing: batch.values[(i * n)..<((i + 1) * n)])
                if let bad = row.firstIndex(where: { !$0.isFinite }) {
                    throw LatentWatchError(
                        .fitFailed,
                        "activation \(index) holds \(row[bad]) at element \(bad - row.startIndex); remove non-finite activations before fitting"
                    )
                }
                pooled.withUnsafeMutableBufferPointer { preparation.pool(row.baseAddress!, into: $0.baseAddress!) }
                let isVal = split.isValidation(index)
                let label = batch.labels?[i]
                groups[GroupKey(label: label, validation: isVal), default: []] += pooled
                stats.fitSamples += 1
                if capacity > 0 {
                    pooled.withUnsafeBufferPointer { stats.offerToReservoir($0, index: index, capacity: capacity) }
                }
            }
            for (key, rows) in groups where !rows.isEmpty {
                let count = rows.count / p
                rows.withUnsafeBufferPointer { rb in
                    // Labelled rows go to their class only; the global moments are the classes' merged
                    // at the end (exact: Chan et al.'s merge adds the between-class scatter).
                    if let label = key.label {
                        // Taken out of the dictionary while it is updated, so its storage is not copied.
                        var pair =
                            stats.classes.removeValue(forKey: label)
                            ?? (GaussianMoments(dimension: p), GaussianMoments(dimension: p))
                        if key.validation {
                            pair.validation.add(rb, rows: count, workspace: &workspace)
                        } else {
                            pair.train.add(rb, rows: count, workspace: &workspace)
                        }
                        stats.classes[label] = pair
                    } else if key.validation {
                        stats.globalValidation.add(rb, rows: count, workspace: &workspace)
                    } else {
                        stats.globalTrain.add(rb, rows: count, workspace: &workspace)
                    }
                }
            }
            progress?(
                FitProgress(stage: .statistics, samples: stats.fitSamples, iteration: 0, restart: 0, logLikelihood: 0)
            )
        }
        for label in stats.classes.keys.sorted() {
            stats.globalTrain.merge(stats.classes[label]!.train)
            stats.globalValidation.merge(stats.classes[label]!.validation)
        }
        if capacity > 0 { stats.truncateReservoir(to: capacity, p: p) }
        return stats
    }
}

struct GroupKey: Hashable {
    var label: Int?
    var validation: Bool
}
