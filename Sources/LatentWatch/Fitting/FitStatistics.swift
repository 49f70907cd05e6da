import LatentWatchNumerics

/// Sufficient statistics gathered in the first pass of a fit: per-class and global moments, split into a
/// training and a validation part (for choosing the shrinkage), and a reservoir sample for mixtures.
struct FitStatistics {
    var classes: [Int: (train: GaussianMoments, validation: GaussianMoments)] = [:]
    var globalTrain: GaussianMoments
    var globalValidation: GaussianMoments
    var fitSamples = 0
    var reservoir: [Float] = []
    var reservoirSeen = 0

    init(dimension: Int) {
        globalTrain = GaussianMoments(dimension: dimension)
        globalValidation = GaussianMoments(dimension: dimension)
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
    static func collectStatistics(
        _ source: some ActivationSource,
        preparation: Preparation,
        split: SplitAssignment,
        reservoir capacity: Int,
        seed: UInt64,
        progress: ((FitProgress) -> Void)?
    ) throws -> FitStatistics {
        let p = preparation.pooledDimension
        let n = preparation.inputCount
        var stats = FitStatistics(dimension: p)
        var rng = SeededRandom(seed: seed ^ 0x5EED)
        var index = 0
        var pooled = [Float](repeating: 0, count: p)
        var groups: [GroupKey: [Float]] = [:]
        var workspace: [Double] = []
        try source.forEachBatch { batch in
            guard batch.values.count >= batch.count * n else {
                throw FitError(
                    "a batch holds \(batch.values.count) values for \(batch.count) activations of \(n) elements"
                )
            }
            for key in groups.keys { groups[key]!.removeAll(keepingCapacity: true) }
            for i in 0..<batch.count {
                defer { index += 1 }
                if split.isCalibration(index) { continue }
                let row = UnsafeBufferPointer(rebasing: batch.values[(i * n)..<((i + 1) * n)])
                if let bad = row.firstIndex(where: { !$0.isFinite }) {
                    throw FitError(
                        "activation \(index) holds \(row[bad]) at element \(bad - row.startIndex); remove non-finite activations before fitting"
                    )
                }
                pooled.withUnsafeMutableBufferPointer { preparation.pool(row.baseAddress!, into: $0.baseAddress!) }
                let isVal = split.isValidation(index)
                let label = batch.labels?[i]
                groups[GroupKey(label: label, validation: isVal), default: []] += pooled
                stats.fitSamples += 1
                if capacity > 0 {
                    stats.reservoirSeen += 1
                    if stats.reservoir.count < capacity * p {
                        stats.reservoir += pooled
                    } else {
                        let j = Int.random(in: 0..<stats.reservoirSeen, using: &rng)
                        if j < capacity { for c in 0..<p { stats.reservoir[j * p + c] = pooled[c] } }
                    }
                }
            }
            for (key, rows) in groups where !rows.isEmpty {
                let count = rows.count / p
                rows.withUnsafeBufferPointer { rb in
                    if key.validation {
                        stats.globalValidation.add(rb, rows: count, workspace: &workspace)
                    } else {
                        stats.globalTrain.add(rb, rows: count, workspace: &workspace)
                    }
                    if let label = key.label {
                        var pair =
                            stats.classes[label] ?? (GaussianMoments(dimension: p), GaussianMoments(dimension: p))
                        if key.validation {
                            pair.validation.add(rb, rows: count, workspace: &workspace)
                        } else {
                            pair.train.add(rb, rows: count, workspace: &workspace)
                        }
                        stats.classes[label] = pair
                    }
                }
            }
            progress?(
                FitProgress(stage: .statistics, samples: stats.fitSamples, iteration: 0, restart: 0, logLikelihood: 0)
            )
        }
        return stats
    }
}

struct GroupKey: Hashable {
    var label: Int?
    var validation: Bool
}
