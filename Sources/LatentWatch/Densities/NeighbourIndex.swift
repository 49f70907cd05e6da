import LatentWatchNumerics

/// Options of a model's neighbour index (``FitConfiguration/neighbours``): a uniform sample of the fitting rows,
/// grouped by k-means cells, whose nearest row gives every input a second epistemic score beside the density's
/// surprise (deep nearest neighbours, Sun et al. 2022, searched in the cells nearest the input).
public struct NeighbourOptions: Sendable, Equatable {
    /// Fitting rows kept, at most (a seeded uniform sample, the same one a sharded fit keeps). The model file
    /// stores them as float16: rows x latent dimension x 2 bytes (8 MiB for 32,768 rows of 128).
    public var sampleSize: Int
    /// k-means cells the rows are grouped into; nil chooses the square root of the rows kept.
    public var cells: Int?
    /// Cells searched per input: the ones whose centres are nearest the input.
    public var probes: Int

    /// Defaults: at most 32,768 rows, about sqrt(rows) cells, two searched per input.
    public init(sampleSize: Int = 32_768, cells: Int? = nil, probes: Int = 2) {
        self.sampleSize = sampleSize
        self.cells = cells
        self.probes = probes
    }

    /// Why these options cannot be used, or nil.
    package var problem: String? {
        if sampleSize < 1 { return "the neighbour sample size must be at least 1, got \(sampleSize)" }
        if let c = cells, c < 1 { return "the neighbour cells must be at least 1, got \(c)" }
        if probes < 1 { return "the neighbour probes must be at least 1, got \(probes)" }
        return nil
    }
}

/// A sample of fitting rows in the prepared latent space, grouped by k-means cell, for the distance from an input to
/// its nearest stored row: the input's ``LatentScores/neighbourDistance``. The search looks at the rows of the
/// ``probes`` cells whose centres are nearest the input (an inverted-file index), so it is exact when the nearest
/// row lies in one of them and an upper bound otherwise; either way it is a fixed function of the input, so its
/// conformal p-values are valid. Rows are rounded to float16 when the index is built, as the model file stores them.
package struct NeighbourIndex: Sendable, Equatable {
    /// Latent dimension.
    package let dimension: Int
    /// The rows, `count x dimension`, cell by cell, as binary16 bit patterns (as the model file stores them).
    package let halfRows: [UInt16]
    /// Cell c holds rows `cellStarts[c] ..< cellStarts[c + 1]`; no cell is empty.
    package let cellStarts: [Int]
    /// Cell centres, `cells x dimension`.
    package let centres: [Float]
    /// Cells searched per input (at most the cell count).
    package let probes: Int

    /// Stored rows.
    package var count: Int { halfRows.count / max(dimension, 1) }
    /// The rows as float32 (exact: every float16 is a float32).
    package var rows: [Float] { HalfConversion.toFloat(halfRows) }
    /// Cells.
    package var cellCount: Int { cellStarts.count - 1 }

    /// An index from stored parts, or nil when they are inconsistent (the model file reader's check). The rows are
    /// rounded to float16 (exact for rows a model file held); a row beyond float16's range is inconsistent.
    package init?(dimension: Int, rows: [Float], cellStarts: [Int], centres: [Float], probes: Int) {
        let halves = HalfConversion.toHalf(rows)
        guard dimension >= 1, rows.count % dimension == 0, rows.count >= dimension, cellStarts.count >= 2,
            cellStarts.first == 0, cellStarts.last == rows.count / dimension,
            zip(cellStarts, cellStarts.dropFirst()).allSatisfy({ $0 < $1 }),
            centres.count == (cellStarts.count - 1) * dimension, probes >= 1,
            halves.allSatisfy({ $0 & 0x7C00 != 0x7C00 }), centres.allSatisfy(\.isFinite)
        else { return nil }
        self.dimension = dimension
        self.halfRows = halves
        self.cellStarts = cellStarts
        self.centres = centres
        self.probes = min(probes, cellStarts.count - 1)
    }

    /// Builds the index from `count` rows of `dimension` floats (a uniform sample in random order, as the fit's
    /// reservoir keeps it): the first `cells` rows start Lloyd's k-means, eight iterations assign and re-centre, and
    /// cells left empty are dropped.
    package static func build(
        sample: [Float],
        count: Int,
        dimension d: Int,
        options: NeighbourOptions
    )
        -> NeighbourIndex?
    {
        let n = min(count, options.sampleSize)
        guard n >= 1, d >= 1, sample.count >= n * d else { return nil }
        // Rounded to float16 first: the rows a file stores, so a fitted model scores as its file does.
        let halves = HalfConversion.toHalf(Array(sample[0..<(n * d)]))
        guard halves.allSatisfy({ $0 & 0x7C00 != 0x7C00 }) else { return nil }
        let rows = HalfConversion.toFloat(halves)
        let k = max(1, min(n, options.cells ?? Int(Double(n).squareRoot().rounded())))
        var centres = Array(rows[0..<(k * d)])
        var assignment = [Int](repeating: 0, count: n)
        var distances = [Float](repeating: 0, count: k)
        for iteration in 0..<8 {
            var changed = false
            rows.withUnsafeBufferPointer { r in
                centres.withUnsafeBufferPointer { c in
                    distances.withUnsafeMutableBufferPointer { dist in
                        for i in 0..<n {
                            RowDistances.squaredDistances(
                                from: r.baseAddress! + i * d,
                                rows: c.baseAddress!,
                                count: k,
                                dimension: d,
                                into: dist.baseAddress!
                            )
                            var a = 0
                            for c in 1..<k where dist[c] < dist[a] { a = c }
                            if a != assignment[i] {
                                changed = true
                                assignment[i] = a
                            }
                        }
                    }
                }
            }
            if iteration > 0 && !changed { break }
            var sums = [Double](repeating: 0, count: k * d)
            var sizes = [Int](repeating: 0, count: k)
            for i in 0..<n {
                let a = assignment[i]
                sizes[a] += 1
                for j in 0..<d { sums[a * d + j] += Double(rows[i * d + j]) }
            }
            for c in 0..<k where sizes[c] > 0 {
                for j in 0..<d { centres[c * d + j] = Float(sums[c * d + j] / Double(sizes[c])) }
            }
        }
        // Rows grouped by cell (stable within a cell), empty cells dropped.
        var order = Array(0..<n)
        order.sort { (assignment[$0], $0) < (assignment[$1], $1) }
        var grouped = [Float]()
        grouped.reserveCapacity(n * d)
        var starts = [0]
        var kept = [Float]()
        var current = -1
        for i in order {
            if assignment[i] != current {
                if current >= 0 { starts.append(grouped.count / d) }
                current = assignment[i]
                kept += centres[(current * d)..<((current + 1) * d)]
            }
            grouped += rows[(i * d)..<((i + 1) * d)]
        }
        starts.append(n)
        return NeighbourIndex(dimension: d, rows: grouped, cellStarts: starts, centres: kept, probes: options.probes)
    }

    /// Floats of scratch ``nearestDistance(_:scratch:)`` needs.
    package var scratchCount: Int { cellCount }

    /// Euclidean distance from `z` (``dimension`` floats) to the nearest row in the ``probes`` cells whose centres
    /// are nearest it, computed in float32 (`RowDistances`). `scratch` holds ``scratchCount`` floats. Allocates
    /// nothing.
    package func nearestDistance(_ z: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>) -> Double {
        let d = dimension
        let k = cellCount
        return centres.withUnsafeBufferPointer { cb in
            halfRows.withUnsafeBufferPointer { rb in
                cellStarts.withUnsafeBufferPointer { starts in
                    RowDistances.squaredDistances(from: z, rows: cb.baseAddress!, count: k, dimension: d, into: scratch)
                    var best = Float.infinity
                    for _ in 0..<probes {
                        var cell = -1
                        var cellD = Float.infinity
                        for c in 0..<k where scratch[c] < cellD {
                            cellD = scratch[c]
                            cell = c
                        }
                        guard cell >= 0 else { break }
                        scratch[cell] = .infinity
                        let v = RowDistances.nearestSquaredDistance(
                            from: z,
                            halfRows: rb.baseAddress! + starts[cell] * d,
                            count: starts[cell + 1] - starts[cell],
                            dimension: d
                        )
                        if v < best { best = v }
                    }
                    return Double(best).squareRoot()
                }
            }
        }
    }
}
