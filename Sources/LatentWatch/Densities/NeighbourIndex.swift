import LatentWatchNumerics

/// Options of a model's neighbour index (``FitConfiguration/neighbours``): a uniform sample of the fitting rows,
/// grouped by k-means cells, whose nearest row gives every input a second epistemic score beside the density's
/// surprise (deep nearest neighbours, Sun et al. 2022, searched in the cells nearest the input).
public struct NeighbourOptions: Sendable, Equatable {
    /// Fitting rows kept, at most (a seeded uniform sample, the same one a sharded fit keeps). The model file
    /// stores them as one-byte integer codes: rows x latent dimension bytes (4 MiB for 32,768 rows of 128).
    public var sampleSize: Int
    /// k-means cells the rows are grouped into; nil chooses the square root of the rows kept.
    public var cells: Int?
    /// Cells searched per input: the ones whose centres are nearest the input.
    public var probes: Int
    /// Bytes of the sample, at most: a layer whose pooled dimension is P keeps at most `maximumBytes / P` rows
    /// (fewer than ``sampleSize`` for layers wider than 512 with the defaults). The index's row codes take at most
    /// this many bytes in the model file (the cells' centres add about sqrt(rows) rows more), and the fit holds the
    /// sample as float32 rows of the pooled dimension with a 64-bit key each (at most 4 x this; while the
    /// statistics pass gathers it, up to twice that plus the kept copy).
    public var maximumBytes: Int
    /// Whether a fit that cannot build the index fails (true) or goes on without one and says why in the model's
    /// notes (false, the default). A fit cannot build one from statistics that keep no sample (files written
    /// before statistics carried one, and a sharded mixture's EM rounds) or for a latent dimension beyond 32,768.
    public var required: Bool
    /// An index that is not ``required`` is left out (with a note) when the model is calibrated on fewer inputs
    /// than this. The combined p-value is the conformal p-value of a statistic of two p-values, and with few
    /// calibration inputs its smallest values are coarse: on the digits sample (217 calibration inputs) two layers
    /// fused by Bonferroni flag none of the stream's 200 out-of-distribution inputs at 0.01 with indices, 44 without
    /// (Docs/Statistics.md, Docs/Evaluation.md).
    public var minimumCalibrationInputs: Int

    /// Defaults: at most 32,768 rows and 16 MiB, about sqrt(rows) cells, two searched per input, left out where a
    /// fit cannot build it or calibrates on fewer than 1,000 inputs.
    public init(
        sampleSize: Int = 32_768,
        cells: Int? = nil,
        probes: Int = 2,
        maximumBytes: Int = 16 << 20,
        required: Bool = false,
        minimumCalibrationInputs: Int = 1_000
    ) {
        self.sampleSize = sampleSize
        self.cells = cells
        self.probes = probes
        self.maximumBytes = maximumBytes
        self.required = required
        self.minimumCalibrationInputs = minimumCalibrationInputs
    }

    /// The largest ``sampleSize`` (1,048,576 rows).
    public static let maximumSampleSize = 1 << 20
    /// The largest ``cells`` and ``probes`` (4,096): the k-means that groups the rows costs rows x cells x
    /// dimension per iteration.
    public static let maximumCells = 4_096
    /// The largest ``maximumBytes`` (1 GiB).
    public static let maximumSampleBytes = 1 << 30

    /// Why these options cannot be used, or nil.
    package var problem: String? {
        if sampleSize < 1 || sampleSize > Self.maximumSampleSize {
            return "the neighbour sample size must be 1 to \(Self.maximumSampleSize), got \(sampleSize)"
        }
        if let c = cells, c < 1 || c > Self.maximumCells {
            return "the neighbour cells must be 1 to \(Self.maximumCells), got \(c)"
        }
        if probes < 1 || probes > Self.maximumCells {
            return "the neighbour probes must be 1 to \(Self.maximumCells), got \(probes)"
        }
        if maximumBytes < 1 || maximumBytes > Self.maximumSampleBytes {
            return "the neighbour sample's byte bound must be 1 to \(Self.maximumSampleBytes), got \(maximumBytes)"
        }
        if minimumCalibrationInputs < 0 {
            return
                "the neighbour index's minimum calibration inputs must be at least 0, got \(minimumCalibrationInputs)"
        }
        return nil
    }

    /// Rows kept for a layer of pooled dimension `p`: ``sampleSize``, fewer when ``maximumBytes`` bounds them, at
    /// least 1.
    package func rows(pooledDimension p: Int) -> Int {
        max(1, min(sampleSize, maximumBytes / max(p, 1)))
    }
}

/// A sample of fitting rows in the prepared latent space, grouped by k-means cell, for the distance from an input to
/// its nearest stored row: the input's ``LatentScores/neighbourDistance``. The search looks at the rows of the
/// ``probes`` cells whose centres are nearest the input (an inverted-file index), so it is exact when the nearest
/// row lies in one of them and an upper bound otherwise; either way it is a fixed function of the input, so its
/// conformal p-values are valid.
///
/// Fits store rows and centres as integer codes of one scale (``Stored/codes(rows:centres:scale:)``: a value x is
/// the code of x / scale (x times the scale's float inverse, rounded to nearest even) clamped at ±127, the sample's 99.99th percentile magnitude at 100; ``codeScale(of:)``),
/// and search them with exact integer kernels
/// (`CodeDistances`). An input is rounded to the same grid, clamped at ±127 codes; the part of a coordinate beyond
/// the clamp adds its square to the distance. Model files of format 1.4 hold float16 rows and float32 centres
/// (``Stored/half(rows:centres:)``), searched in float32 as they were written.
package struct NeighbourIndex: Sendable, Equatable {
    /// How the rows and centres are held.
    package enum Stored: Sendable, Equatable {
        /// Codes in [-127, 127], `count x dimension` rows (cell by cell) and `cells x dimension` centres; a value is
        /// `code * scale`.
        case codes(rows: [Int8], centres: [Int8], scale: Float)
        /// binary16 rows (cell by cell) and float32 centres.
        case half(rows: [UInt16], centres: [Float])
    }

    /// Latent dimension.
    package let dimension: Int
    /// The rows and centres.
    package let stored: Stored
    /// Cell c holds rows `cellStarts[c] ..< cellStarts[c + 1]`; no cell is empty.
    package let cellStarts: [Int]
    /// Cells searched per input (at most the cell count).
    package private(set) var probes: Int
    /// The codes packed for the kernels (empty for float16 rows): each cell's rows from a block boundary.
    private let packed: Packed

    private struct Packed: Sendable, Equatable {
        var rows: [UInt8] = []
        var rowNorms: [Int32] = []
        /// Cell c's rows start at packed row `rowStarts[c]` (a multiple of 16).
        var rowStarts: [Int] = []
        var centres: [UInt8] = []
        var centreNorms: [Int32] = []
    }

    /// The largest latent dimension the integer kernels take exactly (distances below 2^31).
    package static let maximumCodeDimension = 32_768
    /// The most rows an index holds (the kernels count rows in 32 bits, in blocks of 16).
    package static let maximumRows = Int(Int32.max) - 15

    /// Bytes the rows take packed for the kernels, each cell from a block boundary.
    private static func packedBytes(_ starts: [Int], dimension d: Int) -> Int {
        let dp = CodeDistances.paddedDimension(d)
        var rows = 0
        for (a, b) in zip(starts, starts.dropFirst()) { rows += CodeDistances.paddedRows(b - a) }
        return rows * dp
    }

    /// Codes of the sample's 99.99th percentile magnitude; inputs are clamped at ±127.
    package static let codeRange: Float = 100

    /// The codes' scale (a value is code x scale), nil for float16 rows.
    package var codeScale: Float? { if case .codes(_, _, let s) = stored { return s } else { return nil } }
    /// Stored rows.
    package var count: Int { cellStarts.last ?? 0 }
    /// Cells.
    package var cellCount: Int { cellStarts.count - 1 }
    /// Whether rows are integer codes (what fits write) rather than float16 (format 1.4 files).
    package var usesCodes: Bool { if case .codes = stored { return true } else { return false } }
    /// The rows as float32, `count x dimension` (codes times their scale, or the float16 values).
    package var rows: [Float] {
        switch stored {
        case .codes(let r, _, let scale): return r.map { Float($0) * scale }
        case .half(let r, _): return HalfConversion.toFloat(r)
        }
    }

    /// An index from integer codes, or nil when the parts are inconsistent (the model file reader's check).
    package init?(dimension: Int, codes: [Int8], centreCodes: [Int8], scale: Float, cellStarts: [Int], probes: Int) {
        guard dimension >= 1, dimension <= Self.maximumCodeDimension, codes.count % dimension == 0,
            codes.count >= dimension, Self.partitions(cellStarts, rows: codes.count / dimension),
            centreCodes.count == (cellStarts.count - 1) * dimension, probes >= 1, scale.isFinite, scale > 0,
            (1 / scale).isFinite, codes.count / dimension <= Self.maximumRows,
            Self.packedBytes(cellStarts, dimension: dimension) <= max(4 * codes.count, 1 << 20),
            !codes.contains(Int8.min), !centreCodes.contains(Int8.min)
        else { return nil }
        self.dimension = dimension
        self.stored = .codes(rows: codes, centres: centreCodes, scale: scale)
        self.cellStarts = cellStarts
        self.probes = min(probes, cellStarts.count - 1)
        self.packed = Self.pack(codes: codes, centres: centreCodes, cellStarts: cellStarts, dimension: dimension)
    }

    /// An index from float16 rows and float32 centres (a format 1.4 file), or nil when they are inconsistent. The
    /// rows are rounded to float16 (exact for rows a model file held); a row beyond float16's range is inconsistent.
    package init?(dimension: Int, rows: [Float], cellStarts: [Int], centres: [Float], probes: Int) {
        let halves = HalfConversion.toHalf(rows)
        guard dimension >= 1, rows.count % dimension == 0, rows.count >= dimension,
            Self.partitions(cellStarts, rows: rows.count / dimension),
            centres.count == (cellStarts.count - 1) * dimension, probes >= 1,
            halves.allSatisfy({ $0 & 0x7C00 != 0x7C00 }), centres.allSatisfy(\.isFinite)
        else { return nil }
        self.dimension = dimension
        self.stored = .half(rows: halves, centres: centres)
        self.cellStarts = cellStarts
        self.probes = min(probes, cellStarts.count - 1)
        self.packed = Packed()
    }

    private static func partitions(_ starts: [Int], rows: Int) -> Bool {
        starts.count >= 2 && starts.first == 0 && starts.last == rows
            && zip(starts, starts.dropFirst()).allSatisfy({ $0 < $1 })
    }

    private static func pack(codes: [Int8], centres: [Int8], cellStarts: [Int], dimension d: Int) -> Packed {
        var p = Packed()
        codes.withUnsafeBufferPointer { cb in
            for c in 0..<(cellStarts.count - 1) {
                let n = cellStarts[c + 1] - cellStarts[c]
                p.rowStarts.append(p.rowNorms.count)
                let (bytes, norms) = CodeDistances.pack(cb.baseAddress! + cellStarts[c] * d, count: n, dimension: d)
                p.rows += bytes
                p.rowNorms += norms
            }
        }
        centres.withUnsafeBufferPointer { cb in
            (p.centres, p.centreNorms) = CodeDistances.pack(cb.baseAddress!, count: cellStarts.count - 1, dimension: d)
        }
        return p
    }

    /// Builds the index from `count` rows of `dimension` floats (a uniform sample in random order, as the fit's
    /// reservoir keeps it): the first `cells` rows start Lloyd's k-means, eight iterations assign and re-centre, and
    /// cells left empty are dropped; rows and centres are then stored as codes. Nil for a dimension beyond
    /// ``maximumCodeDimension`` or non-finite rows.
    package static func build(
        sample: [Float],
        count: Int,
        dimension d: Int,
        options: NeighbourOptions
    )
        -> NeighbourIndex?
    {
        let n = min(count, options.sampleSize)
        guard n >= 1, d >= 1, d <= maximumCodeDimension, sample.count >= n * d else { return nil }
        let rows = Array(sample[0..<(n * d)])
        guard rows.allSatisfy(\.isFinite) else { return nil }
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
        let scale = codeScale(of: rows)
        let inverse = 1 / scale
        let code = { (x: Float) -> Int8 in Int8(max(-127, min(127, (x * inverse).rounded(.toNearestOrEven)))) }
        // Rows grouped by cell (stable within a cell), empty cells dropped.
        var order = Array(0..<n)
        order.sort { (assignment[$0], $0) < (assignment[$1], $1) }
        var grouped = [Int8]()
        grouped.reserveCapacity(n * d)
        var starts = [0]
        var kept = [Int8]()
        var current = -1
        for i in order {
            if assignment[i] != current {
                if current >= 0 { starts.append(grouped.count / d) }
                current = assignment[i]
                kept += centres[(current * d)..<((current + 1) * d)].map(code)
            }
            grouped += rows[(i * d)..<((i + 1) * d)].map(code)
        }
        starts.append(n)
        return NeighbourIndex(
            dimension: d,
            codes: grouped,
            centreCodes: kept,
            scale: scale,
            cellStarts: starts,
            probes: options.probes
        )
    }

    /// The same index searching `probes` cells per input (at most the cell count).
    package func probing(_ probes: Int) -> NeighbourIndex {
        var copy = self
        copy.probes = max(1, min(probes, cellCount))
        return copy
    }

    /// The codes' scale for these values: their 99.99th percentile magnitude (the largest when that is 0) at
    /// ``codeRange`` codes, so that a rare outlier does not coarsen every other row (it is clamped at 127 codes); 1
    /// for all zeros.
    package static func codeScale(of values: [Float]) -> Float {
        guard let largest = values.lazy.map({ abs($0) }).max(), largest > 0 else { return 1 }
        let high = magnitude(atRank: Int(0.9999 * Double(values.count - 1)), of: values)
        return (high > 0 ? high : largest) / codeRange
    }

    /// The magnitude of rank `rank` (0-based, ascending) among the values' magnitudes: what sorting them would put
    /// there, found by two histogram passes over the magnitudes' bit patterns (a non-negative float's order is
    /// its pattern's), so a fit's sample is not copied. `values` are finite.
    package static func magnitude(atRank rank: Int, of values: [Float]) -> Float {
        precondition(rank >= 0 && rank < values.count)
        var counts = [Int](repeating: 0, count: 1 << 16)
        for v in values { counts[Int(abs(v).bitPattern >> 16)] += 1 }
        var high = 0
        var below = 0
        while below + counts[high] <= rank {
            below += counts[high]
            high += 1
        }
        for i in counts.indices { counts[i] = 0 }
        for v in values where Int(abs(v).bitPattern >> 16) == high { counts[Int(abs(v).bitPattern & 0xFFFF)] += 1 }
        var low = 0
        while below + counts[low] <= rank {
            below += counts[low]
            low += 1
        }
        return Float(bitPattern: UInt32(high) << 16 | UInt32(low))
    }

    /// Floats of scratch ``nearestDistance(_:scratch:)`` needs.
    package var scratchCount: Int {
        usesCodes ? cellCount + (CodeDistances.paddedDimension(dimension) + 3) / 4 : cellCount
    }

    /// Euclidean distance from `z` (``dimension`` floats) to the nearest row in the ``probes`` cells whose centres
    /// are nearest it. `scratch` holds ``scratchCount`` floats. Allocates nothing.
    package func nearestDistance(_ z: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>) -> Double {
        switch stored {
        case .codes(_, _, let scale): return nearestCodeDistance(z, scale: scale, scratch: scratch)
        case .half(let rows, let centres): return nearestHalfDistance(z, rows: rows, centres: centres, scratch: scratch)
        }
    }

    /// The probes-nearest cells by their distances in `cellDistances` (which it overwrites), each passed to `visit`.
    @inline(__always)
    private func forEachProbe<T: Comparable>(
        _ cellDistances: UnsafeMutablePointer<T>,
        worst: T,
        _ visit: (Int) -> Void
    ) {
        let k = cellCount
        for _ in 0..<probes {
            var cell = -1
            var cellD = worst
            for c in 0..<k where cellD > cellDistances[c] {
                cellD = cellDistances[c]
                cell = c
            }
            guard cell >= 0 else { return }
            cellDistances[cell] = worst
            visit(cell)
        }
    }

    private func nearestCodeDistance(
        _ z: UnsafePointer<Float>,
        scale: Float,
        scratch: UnsafeMutablePointer<Float>
    )
        -> Double
    {
        let d = dimension
        let k = cellCount
        let dp = CodeDistances.paddedDimension(d)
        let raw = UnsafeMutableRawPointer(scratch)
        let cellDistances = raw.bindMemory(to: Int32.self, capacity: k)
        let q = (raw + 4 * k).bindMemory(to: Int8.self, capacity: dp)
        // The input on the codes' grid, clamped at ±127; what lies beyond the clamp is added to the distance.
        let beyond = CodeDistances.quantise(z, dimension: d, inverseScale: 1 / scale, into: q)
        var best = Int32.max
        packed.centres.withUnsafeBufferPointer { cb in
            packed.centreNorms.withUnsafeBufferPointer { cn in
                CodeDistances.squaredDistances(
                    from: q,
                    packed: cb.baseAddress!,
                    norms: cn.baseAddress!,
                    count: k,
                    dimension: d,
                    into: cellDistances
                )
            }
        }
        packed.rows.withUnsafeBufferPointer { rb in
            packed.rowNorms.withUnsafeBufferPointer { rn in
                forEachProbe(cellDistances, worst: Int32.max) { cell in
                    let first = packed.rowStarts[cell]
                    let v = CodeDistances.nearestSquaredDistance(
                        from: q,
                        packed: rb.baseAddress! + first * dp,
                        norms: rn.baseAddress! + first,
                        count: cellStarts[cell + 1] - cellStarts[cell],
                        dimension: d
                    )
                    if v < best { best = v }
                }
            }
        }
        return Double(scale) * (Double(best) + beyond).squareRoot()
    }

    private func nearestHalfDistance(
        _ z: UnsafePointer<Float>,
        rows: [UInt16],
        centres: [Float],
        scratch: UnsafeMutablePointer<Float>
    ) -> Double {
        let d = dimension
        let k = cellCount
        return centres.withUnsafeBufferPointer { cb in
            rows.withUnsafeBufferPointer { rb in
                RowDistances.squaredDistances(from: z, rows: cb.baseAddress!, count: k, dimension: d, into: scratch)
                var best = Float.infinity
                forEachProbe(scratch, worst: Float.infinity) { cell in
                    let v = RowDistances.nearestSquaredDistance(
                        from: z,
                        halfRows: rb.baseAddress! + cellStarts[cell] * d,
                        count: cellStarts[cell + 1] - cellStarts[cell],
                        dimension: d
                    )
                    if v < best { best = v }
                }
                return Double(best).squareRoot()
            }
        }
    }
}
