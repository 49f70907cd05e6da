import Foundation
import LatentWatchNumerics
import Testing

@testable import LatentWatch

/// The neighbour index: its search against brute force, the combined epistemic p-value (its construction, its
/// validity by simulation), the model file, sharded fits, the monitor, and what is refused.
@Suite struct NeighbourIndexTests {
    /// Three classes of 8-d Gaussian activations, `n` of them, from `seed`.
    static func draw(_ n: Int, seed: UInt64, shift: Double = 0) -> (values: [Float], labels: [Int]) {
        var rng = SeededRandom(seed: seed)
        var values: [Float] = []
        var labels: [Int] = []
        for _ in 0..<n {
            let k = Int(rng.next() % 3)
            for j in 0..<8 { values.append(Float((j == k ? 3.0 : 0) + (j == 7 ? shift : 0) + rng.normal())) }
            labels.append(k)
        }
        return (values, labels)
    }

    /// A fit of the unnormalised draws with the index required (these tests calibrate on a few hundred inputs, which
    /// the default leaves without an index).
    static func configuration(_ options: NeighbourOptions = NeighbourOptions(required: true)) -> FitConfiguration {
        var c = FitConfiguration(preparation: PreparationOptions(l2Normalize: false), fitBackground: false)
        c.neighbours = options
        return c
    }

    /// The reference is brute force in exact integers over the stored codes, with the query rounded and clamped as
    /// the index defines it: searching every cell must give it exactly, and lie within sqrt(d) x scale of the exact
    /// float distance to the sample (each of query and row moves by at most half a code per coordinate); searching
    /// two cells never gives less than searching all and gives the same on most rows.
    @Test func searchMatchesBruteForce() throws {
        let d = 8
        let sample = Self.draw(2_000, seed: 1).values
        let all = try #require(
            NeighbourIndex.build(
                sample: sample,
                count: 2_000,
                dimension: d,
                options: NeighbourOptions(cells: 40, probes: 40)
            )
        )
        let two = try #require(
            NeighbourIndex.build(sample: sample, count: 2_000, dimension: d, options: NeighbourOptions(cells: 40))
        )
        #expect(all.count == 2_000 && all.cellCount <= 40 && two.probes == 2 && all.usesCodes)
        let scale = try #require(all.codeScale)
        let magnitudes = sample.map { abs($0) }.sorted()
        #expect(scale == magnitudes[Int(0.9999 * Double(magnitudes.count - 1))] / NeighbourIndex.codeRange)
        guard case .codes(let codes, _, _) = all.stored else { return }
        var scratch = [Float](repeating: 0, count: all.scratchCount)
        let queries = Self.draw(300, seed: 2, shift: 1).values + [Float](repeating: 40, count: d)
        var exactTwo = 0
        var clamped = 0
        for q in 0...300 {
            let z = Array(queries[(q * d)..<((q + 1) * d)])
            let u = z.map { $0 * (1 / scale) }
            let c = u.map { Int(max(-127, min(127, $0.rounded(.toNearestOrEven)))) }
            let beyond = u.map { abs($0) > 127 ? pow(Double(abs($0)) - 127, 2) : 0 }.reduce(0, +)
            if beyond > 0 { clamped += 1 }
            var brute = Int.max
            var floatBrute = Double.infinity
            for r in 0..<all.count {
                var s = 0
                var f = 0.0
                for j in 0..<d {
                    let e = c[j] - Int(codes[r * d + j])
                    s += e * e
                    let g = Double(z[j]) - Double(codes[r * d + j]) * Double(scale)
                    f += g * g
                }
                brute = min(brute, s)
                floatBrute = min(floatBrute, f)
            }
            let reference = Double(scale) * (Double(brute) + beyond).squareRoot()
            let exact = scratch.withUnsafeMutableBufferPointer { all.nearestDistance(z, scratch: $0.baseAddress!) }
            let probed = scratch.withUnsafeMutableBufferPointer { two.nearestDistance(z, scratch: $0.baseAddress!) }
            #expect(exact == reference)
            if beyond == 0 {
                // Against the stored rows decoded, only the query's rounding is left: at most sqrt(d) x scale / 2.
                #expect(abs(exact - floatBrute.squareRoot()) <= Double(scale) * Double(d).squareRoot() / 2 + 1e-9)
            } else {
                // Clamped: a lower bound of the distance to the decoded rows, and still far.
                #expect(exact <= floatBrute.squareRoot() + 1e-9 && exact > 50)
            }
            #expect(probed >= exact)
            if probed == exact { exactTwo += 1 }
        }
        print("two of about 40 cells searched: exact on \(exactTwo) of 301 queries; \(clamped) clamped")
        #expect(exactTwo >= 200)  // 230 measured: the queries are shifted off the sample, where cells blur
        #expect(clamped >= 1)
        // Every row is kept once: the cells partition the sample (as codes).
        func rowSet(_ index: NeighbourIndex) -> Set<[Float]> {
            var set = Set<[Float]>()
            let rows = index.rows
            for r in 0..<index.count { set.insert(Array(rows[(r * d)..<((r + 1) * d)])) }
            return set
        }
        let original = sample.map { max(-127, min(127, ($0 * (1 / scale)).rounded(.toNearestOrEven))) * scale }
        var expected = Set<[Float]>()
        for r in 0..<2_000 { expected.insert(Array(original[(r * d)..<((r + 1) * d)])) }
        #expect(rowSet(two) == expected && rowSet(all) == expected && two.count == 2_000)
    }

    /// A float16 index, as format 1.4 files hold it, is searched in float32 as it was written: every cell searched
    /// gives brute force over its rows to float32 rounding, and it survives a model file round trip unchanged.
    @Test func float16IndexOfFormat14() throws {
        let d = 8
        let sample = Self.draw(600, seed: 21).values
        let rows = HalfConversion.toFloat(HalfConversion.toHalf(sample))
        let starts = [0, 150, 330, 600]
        var centres = [Float]()
        for c in 0..<3 {
            for j in 0..<d {
                var s = Float(0)
                for r in starts[c]..<starts[c + 1] { s += rows[r * d + j] }
                centres.append(s / Float(starts[c + 1] - starts[c]))
            }
        }
        let index = try #require(
            NeighbourIndex(dimension: d, rows: rows, cellStarts: starts, centres: centres, probes: 3)
        )
        #expect(!index.usesCodes && index.codeScale == nil)
        var scratch = [Float](repeating: 0, count: index.scratchCount)
        let queries = Self.draw(50, seed: 22, shift: 1).values
        for q in 0..<50 {
            let z = Array(queries[(q * d)..<((q + 1) * d)])
            var brute = Double.infinity
            for r in 0..<600 {
                var s = 0.0
                for j in 0..<d { s += pow(Double(z[j]) - Double(rows[r * d + j]), 2) }
                brute = min(brute, s)
            }
            let got = scratch.withUnsafeMutableBufferPointer { index.nearestDistance(z, scratch: $0.baseAddress!) }
            #expect(abs(got - brute.squareRoot()) <= 1e-5 * max(1, brute.squareRoot()))
        }
        let train = Self.draw(600, seed: 23)
        var model = try LatentModelFitter.fit(
            InMemoryActivations(values: train.values, shape: [8], labels: train.labels),
            configuration: Self.configuration()
        )
        model.neighbours = index
        let bytes = try ModelFile.encode(model)
        let json = try ModelFile.describe(bytes).metadataJSON
        #expect(
            json.contains("\"neighbours.rows\"") && !json.contains("neighbour_codes") && !json.contains("\"scale\"")
        )
        let back = try ModelFile.decode(bytes)
        #expect(back.neighbours == index)
        let x = Array(queries[0..<d])
        #expect(try back.score(x).neighbourDistance == model.score(x).neighbourDistance)
    }

    /// The model's combined p-value is the two-member joint calibration of its surprise and neighbour distance
    /// (whose numerics `JointCalibrationTests` checks against numpy), and a monitor alerts on it.
    @Test func combinedPValueIsTheTwoMemberJointCalibration() throws {
        let train = Self.draw(900, seed: 3)
        let cal = Self.draw(300, seed: 4)
        let model = try LatentModelFitter.fit(
            InMemoryActivations(values: train.values, shape: [8], labels: train.labels),
            calibration: InMemoryActivations(values: cal.values, shape: [8]),
            configuration: Self.configuration()
        )
        #expect(model.hasNeighbourIndex && model.neighbourCount == 900)
        let ws = model.makeWorkspace()
        var surprises: [Double] = []
        var distances: [Double] = []
        for i in 0..<300 {
            let s = try cal.values[(i * 8)..<((i + 1) * 8)].withUnsafeBufferPointer {
                try model.score($0, workspace: ws)
            }
            surprises.append(s.surprise)
            distances.append(try #require(s.neighbourDistance))
        }
        let ds = try #require(model.calibration.distributions[.surprise])
        let dn = try #require(model.calibration.distributions[.neighbour])
        #expect(ds == EmpiricalDistribution(scores: surprises) && dn == EmpiricalDistribution(scores: distances))
        let joint = JointCalibration.make(
            layers: ["a", "b"],
            memberChecksums: [0, 0],
            distributions: [ds, dn],
            surprises: [surprises, distances],
            statistic: .cauchy
        )
        #expect(model.epistemicCalibration == joint.distribution)
        let monitor = try Monitor(configuration: MonitorConfiguration(layers: [.init(name: "layer", model: model)]))
        let test = Self.draw(200, seed: 5, shift: 2)
        for i in 0..<200 {
            let x = Array(test.values[(i * 8)..<((i + 1) * 8)])
            let s = try model.score(x)
            let p = [model.pValue(.surprise, s.surprise)!, model.pValue(.neighbour, s.neighbourDistance!)!]
            let expected = p.withUnsafeBufferPointer { joint.pValue($0) }
            #expect(model.epistemicPValue(s) == expected)
            let a = try x.withUnsafeBufferPointer { try monitor.assess(.float32([$0])) }
            #expect(a.layers[0].pValue == expected)
        }
    }

    /// Validity by simulation through real fits: 60 times, a fit on 600 inputs with a neighbour index, calibrated on
    /// m = 200 others, then 500 fresh in-distribution inputs. Over the 30,000 inputs the combined p-value is at most
    /// alpha = 0.05 at a rate within [0.7 alpha, 1.1 alpha] widened by 0.006 (about 2.6 standard errors, as in
    /// `JointCalibrationTests`).
    @Test func combinedPValueIsValid() throws {
        let alpha = 0.05
        var hits = 0
        var total = 0
        for rep in 0..<60 {
            let train = Self.draw(600, seed: UInt64(2_000 + 3 * rep))
            let cal = Self.draw(200, seed: UInt64(2_001 + 3 * rep))
            let test = Self.draw(500, seed: UInt64(2_002 + 3 * rep))
            let model = try LatentModelFitter.fit(
                InMemoryActivations(values: train.values, shape: [8], labels: train.labels),
                calibration: InMemoryActivations(values: cal.values, shape: [8]),
                configuration: Self.configuration()
            )
            let ws = model.makeWorkspace()
            for i in 0..<500 {
                let s = try test.values[(i * 8)..<((i + 1) * 8)].withUnsafeBufferPointer {
                    try model.score($0, workspace: ws)
                }
                if try #require(model.epistemicPValue(s)) <= alpha { hits += 1 }
                total += 1
            }
        }
        let rate = Double(hits) / Double(total)
        print("combined epistemic p-value at alpha 0.05: realised rate \(rate) (\(total) inputs)")
        #expect(rate >= 0.7 * alpha - 0.006 && rate <= 1.1 * alpha + 0.006)
    }

    /// A second "layer" of the same inputs: their coordinates reversed and scaled (another view of one input).
    static func otherLayer(_ values: [Float]) -> [Float] {
        var out = values
        for r in 0..<(values.count / 8) {
            for j in 0..<8 { out[r * 8 + j] = 0.5 * values[r * 8 + 7 - j] + 0.1 * Float(j) }
        }
        return out
    }

    /// Layers whose models keep neighbour indices are calibrated jointly with each indexed layer's surprise and
    /// neighbour distance as two members: the monitor fuses exactly the members' p-values against the joint
    /// calibration (rebuilt here by hand), the members survive the model file (which requires the feature), and
    /// over 40 calibration sets the fused p-value's realised rate at alpha = 0.05 lies in [0.7, 1.1] alpha.
    @Test func jointCalibrationOfIndexedLayers() throws {
        let train = Self.draw(900, seed: 31)
        let cal = Self.draw(300, seed: 32)
        func fit(_ values: [Float], _ cal: [Float], index: Bool) throws -> LatentModel {
            var c = Self.configuration()
            if !index { c = c.withoutNeighbours() }
            return try LatentModelFitter.fit(
                InMemoryActivations(values: values, shape: [8], labels: train.labels),
                calibration: InMemoryActivations(values: cal, shape: [8]),
                configuration: c
            )
        }
        var a = try fit(train.values, cal.values, index: true)
        var b = try fit(Self.otherLayer(train.values), Self.otherLayer(cal.values), index: false)
        a.metadata.layer = "a"
        b.metadata.layer = "b"
        let joint = try LatentModelFitter.calibrateJointly(
            [a, b],
            calibration: [
                InMemoryActivations(values: cal.values, shape: [8]),
                InMemoryActivations(values: Self.otherLayer(cal.values), shape: [8]),
            ]
        )
        let j = try #require(joint[0].jointCalibration)
        #expect(j.layers == ["a", "a", "b"] && j.kinds == [.surprise, .neighbour, .surprise])
        #expect(j.layerNames == ["a", "b"] && j.count == 300)
        // By hand: the leave-one-out member p-values of every calibration input, their Cauchy statistic.
        var sa: [Double] = []
        var na: [Double] = []
        var sb: [Double] = []
        for i in 0..<300 {
            let x = Array(cal.values[(i * 8)..<((i + 1) * 8)])
            let s = try a.score(x)
            sa.append(s.surprise)
            na.append(try #require(s.neighbourDistance))
            sb.append(try b.score(Self.otherLayer(x)).surprise)
        }
        let dists = [
            a.calibration.distributions[.surprise]!, a.calibration.distributions[.neighbour]!,
            b.calibration.distributions[.surprise]!,
        ]
        let rebuilt = JointCalibration.make(
            layers: ["a", "a", "b"],
            memberChecksums: [0, 0, 0],
            distributions: dists,
            surprises: [sa, na, sb],
            statistic: .cauchy
        )
        #expect(rebuilt.distribution == j.distribution)
        let monitor = try Monitor(
            configuration: MonitorConfiguration(layers: [
                MonitoredLayer(model: joint[1]), MonitoredLayer(model: joint[0]),
            ])
        )
        #expect(monitor.jointCalibration == j)
        let test = Self.draw(50, seed: 33, shift: 1)
        for i in 0..<50 {
            let x = Array(test.values[(i * 8)..<((i + 1) * 8)])
            let y = Self.otherLayer(x)
            let result = try y.withUnsafeBufferPointer { by in
                try x.withUnsafeBufferPointer { bx in try monitor.assess(.float32([by, bx])) }
            }
            let s = try a.score(x)
            let p = [
                a.pValue(.surprise, s.surprise)!, a.pValue(.neighbour, s.neighbourDistance!)!,
                b.pValue(.surprise, try b.score(y).surprise)!,
            ]
            #expect(result.fusedPValue == p.withUnsafeBufferPointer { j.pValue($0) })
            // Each layer still reports its own epistemic p-value.
            #expect(result.layers[1].pValue == a.epistemicPValue(s))
        }
        // The model file keeps the members and requires the feature.
        let bytes = try ModelFile.encode(joint[0])
        #expect(try ModelFile.decode(bytes).jointCalibration == j)
        #expect(try ModelFile.describe(bytes).metadataJSON.contains("joint_neighbour_members"))
        #expect(!(try ModelFile.describe(ModelFile.encode(a)).metadataJSON.contains("joint_neighbour_members")))
        // A member refitted without its index is no longer one.
        var plain = try fit(train.values, cal.values, index: false)
        plain.metadata.layer = "a"
        plain.jointCalibration = j
        // Same surprise calibration, so only the missing neighbour member keeps it out.
        #expect(plain.calibration.distributions[.surprise] == a.calibration.distributions[.surprise])
        #expect(!j.matches([plain, joint[1]]))
        // Validity by simulation: fresh training and calibration sets, both layers indexed.
        let alpha = 0.05
        var hits = 0
        var total = 0
        for rep in 0..<40 {
            let tr = Self.draw(600, seed: UInt64(5_000 + 3 * rep))
            let ca = Self.draw(200, seed: UInt64(5_001 + 3 * rep))
            let te = Self.draw(300, seed: UInt64(5_002 + 3 * rep))
            let models = try [
                LatentModelFitter.fit(
                    InMemoryActivations(values: tr.values, shape: [8], labels: tr.labels),
                    calibration: InMemoryActivations(values: ca.values, shape: [8]),
                    configuration: Self.configuration()
                ),
                LatentModelFitter.fit(
                    InMemoryActivations(values: Self.otherLayer(tr.values), shape: [8], labels: tr.labels),
                    calibration: InMemoryActivations(values: Self.otherLayer(ca.values), shape: [8]),
                    configuration: Self.configuration()
                ),
            ]
            let jm = try LatentModelFitter.calibrateJointly(
                models,
                calibration: [
                    InMemoryActivations(values: ca.values, shape: [8]),
                    InMemoryActivations(values: Self.otherLayer(ca.values), shape: [8]),
                ]
            )
            let m = try Monitor(configuration: MonitorConfiguration(layers: jm.map { MonitoredLayer(model: $0) }))
            #expect(m.jointCalibration?.kinds.count == 4)
            for i in 0..<300 {
                let x = Array(te.values[(i * 8)..<((i + 1) * 8)])
                let y = Self.otherLayer(x)
                let r = try x.withUnsafeBufferPointer { bx in
                    try y.withUnsafeBufferPointer { by in try m.assess(.float32([bx, by])) }
                }
                if r.fusedPValue <= alpha { hits += 1 }
                total += 1
            }
        }
        let rate = Double(hits) / Double(total)
        print("joint calibration of two indexed layers at alpha 0.05: realised rate \(rate) (\(total) inputs)")
        #expect(rate >= 0.7 * alpha - 0.006 && rate <= 1.1 * alpha + 0.006)
    }

    /// The index and the combined calibration survive the model file (scores and p-values identical), the file
    /// requires the feature so that older readers refuse it, and batch scoring agrees with one-input scoring.
    @Test func modelFileAndBatchScoring() throws {
        let train = Self.draw(1_000, seed: 6)
        let model = try LatentModelFitter.fit(
            InMemoryActivations(values: train.values, shape: [8], labels: train.labels),
            configuration: Self.configuration(NeighbourOptions(sampleSize: 500, required: true))
        )
        #expect(model.neighbourCount == 500)
        let bytes = try ModelFile.encode(model)
        let back = try ModelFile.decode(bytes)
        #expect(back.neighbours == model.neighbours && back.epistemicCalibration == model.epistemicCalibration)
        let test = Self.draw(100, seed: 7, shift: 1.5)
        let batch = test.values.withUnsafeBufferPointer {
            back.scoreBatch($0, count: 100, workspace: back.makeWorkspace())
        }
        for i in 0..<100 {
            let x = Array(test.values[(i * 8)..<((i + 1) * 8)])
            let a = try model.score(x)
            let b = try back.score(x)
            #expect(a.neighbourDistance == b.neighbourDistance && model.epistemicPValue(a) == back.epistemicPValue(b))
            #expect(try batch[i].get().neighbourDistance == a.neighbourDistance)
        }
        let json = try ModelFile.describe(bytes).metadataJSON
        #expect(
            json.contains(
                "\"required_features\":[\"root_distance_posterior\",\"neighbour_index\",\"neighbour_codes\"]"
            )
        )
    }

    /// Statistics of two shards merged give the one-pass model's index (the reservoir keeps the same rows); a fit
    /// from statistics without a sample, joint calibration of such layers, and bad options are refused.
    @Test func shardsAndRefusals() throws {
        let data = Self.draw(1_200, seed: 8)
        let cal = Self.draw(300, seed: 9)
        let cfg = Self.configuration(NeighbourOptions(sampleSize: 700, required: true))
        let calSource = InMemoryActivations(values: cal.values, shape: [8])
        let whole = try LatentModelFitter.fit(
            InMemoryActivations(values: data.values, shape: [8], labels: data.labels),
            calibration: calSource,
            configuration: cfg
        )
        var first = try LatentModelFitter.statistics(
            of: InMemoryActivations(
                values: Array(data.values[0..<(500 * 8)]),
                shape: [8],
                labels: Array(data.labels[0..<500])
            ),
            configuration: cfg
        )
        func secondShard(_ c: FitConfiguration) throws -> ActivationStatistics {
            try LatentModelFitter.statistics(
                of: InMemoryActivations(
                    values: Array(data.values[(500 * 8)...]),
                    shape: [8],
                    labels: Array(data.labels[500...])
                ),
                configuration: c,
                firstIndex: 500
            )
        }
        let second = try secondShard(cfg)
        // Through statistics files (`fit --statistics-only`, `merge`): the sample and the options travel with them.
        var fromFiles = try StatisticsFile.decode(try StatisticsFile.encode(first))
        #expect(fromFiles.configuration.neighbours == cfg.neighbours && fromFiles.reservoirKeys == first.reservoirKeys)
        try fromFiles.merge(try StatisticsFile.decode(try StatisticsFile.encode(second)))
        // Options beyond the bounds in a file (crafted: the k-means would cost rows x cells) are refused, and shards
        // whose samples were keyed with another seed do not merge.
        var crafted = first
        crafted.configuration.neighbours?.cells = NeighbourOptions.maximumCells + 1
        #expect(throws: LatentWatchError.self) { try StatisticsFile.decode(try StatisticsFile.encode(crafted)) }
        var reseeded = cfg
        reseeded.mixture.seed = 7
        var otherSeed = try secondShard(reseeded)
        #expect(throws: LatentWatchError.self) { try otherSeed.merge(first) }
        try first.merge(second)
        let merged = try LatentModelFitter.fit(statistics: first, calibration: calSource, configuration: cfg)
        #expect(merged.neighbours == whole.neighbours)
        #expect(merged.epistemicCalibration == whole.epistemicCalibration)
        let mergedFromFiles = try LatentModelFitter.fit(
            statistics: fromFiles,
            calibration: calSource,
            configuration: fromFiles.configuration
        )
        #expect(mergedFromFiles.neighbours == whole.neighbours)

        var bare = try LatentModelFitter.statistics(
            of: InMemoryActivations(values: data.values, shape: [8], labels: data.labels),
            configuration: Self.configuration(NeighbourOptions(sampleSize: 0)).withoutNeighbours()
        )
        bare.configuration.neighbours = NeighbourOptions(required: true)
        #expect(throws: LatentWatchError.self) {
            try LatentModelFitter.fit(statistics: bare, calibration: calSource, configuration: cfg)
        }
        // Not required (the default): the fit goes on without an index and its notes say why.
        var optional = cfg
        optional.neighbours = NeighbourOptions(minimumCalibrationInputs: 0)
        let noSample = try LatentModelFitter.fit(statistics: bare, calibration: calSource, configuration: optional)
        #expect(!noSample.hasNeighbourIndex && noSample.metadata.notes.contains("no neighbour index: the statistics"))
        // Too few calibration inputs for the default (1,000): left out, with the count in the notes.
        let fewCalibration = try LatentModelFitter.fit(
            statistics: first,
            calibration: calSource,
            configuration: {
                var c = cfg
                c.neighbours = NeighbourOptions()
                return c
            }()
        )
        #expect(!fewCalibration.hasNeighbourIndex && fewCalibration.epistemicCalibration == nil)
        #expect(fewCalibration.calibration.distributions[.neighbour] == nil)
        #expect(
            fewCalibration.metadata.notes.contains("no neighbour index: 300 calibration inputs, fewer than the 1000")
        )
        // Carved off the fitting data, the count is known before the index would be built: none is built.
        let carved = try LatentModelFitter.fit(
            InMemoryActivations(values: data.values, shape: [8], labels: data.labels),
            configuration: {
                var c = cfg
                c.neighbours = NeighbourOptions()
                return c
            }()
        )
        #expect(!carved.hasNeighbourIndex && carved.metadata.calibrationSamples > 0)
        #expect(
            carved.metadata.notes.contains(
                "no neighbour index: \(carved.metadata.calibrationSamples) calibration inputs, fewer than the 1000"
            ),
            "\(carved.metadata.notes)"
        )
        // Calibrating on nothing (no calibration set, nothing carved off): an optional index cannot be kept, so the
        // statistics pass keeps no sample for one, and the notes say why; a required index is still built.
        var uncalibrated = cfg
        uncalibrated.calibrationFraction = 0
        uncalibrated.neighbours = NeighbourOptions()
        let source = InMemoryActivations(values: data.values, shape: [8], labels: data.labels)
        let plain = try LatentModelFitter.fit(source, configuration: uncalibrated)
        #expect(!plain.hasNeighbourIndex && plain.metadata.calibrationSamples == 0)
        #expect(plain.metadata.notes.contains("no neighbour index: 0 calibration inputs, fewer than the 1000"))
        let split = SplitAssignment(seed: uncalibrated.splitSeed, calibrationFraction: 0, validationFraction: 0)
        let withSample = try LatentModelFitter.collectStatistics(
            source,
            configuration: uncalibrated,
            split: split,
            firstIndex: 0,
            progress: nil
        )
        let withoutSample = try LatentModelFitter.collectStatistics(
            source,
            configuration: uncalibrated,
            split: split,
            firstIndex: 0,
            neighbourSample: false,
            progress: nil
        )
        #expect(withSample.reservoirKeys.count > 0 && withoutSample.reservoirKeys.isEmpty)
        #expect(withoutSample.globalTrain == withSample.globalTrain && withoutSample.classes.count == 3)
        for (label, moments) in withSample.classes {
            #expect(withoutSample.classes[label]?.train == moments.train)
        }
        uncalibrated.neighbours = NeighbourOptions(required: true)
        #expect(try LatentModelFitter.fit(source, configuration: uncalibrated).hasNeighbourIndex)
        #expect(throws: LatentWatchError.self) {
            try LatentModelFitter.fit(
                InMemoryActivations(values: data.values, shape: [8], labels: data.labels),
                configuration: Self.configuration(NeighbourOptions(probes: 0))
            )
        }
        // Sharded mixtures run EM rounds, which keep no index: a required one is refused when gathering; an
        // optional one is dropped there, so the statistics keep only the mixture's sample.
        var mixture = Self.configuration()
        mixture.family = .gmmFull
        mixture.mixture.components = 2
        mixture.mixture.reservoirSize = 100
        #expect(throws: LatentWatchError.self) {
            try LatentModelFitter.statistics(
                of: InMemoryActivations(values: data.values, shape: [8]),
                configuration: mixture
            )
        }
        mixture.neighbours = NeighbourOptions()
        let mixtureStats = try LatentModelFitter.statistics(
            of: InMemoryActivations(values: data.values, shape: [8]),
            configuration: mixture
        )
        #expect(mixtureStats.configuration.neighbours == nil && mixtureStats.reservoirKeys.count == 100)
        // One huge value does not set the codes' scale (a high quantile of the magnitudes does): the other rows keep
        // their resolution and the outlier is clamped at 127 codes.
        var huge = data.values
        huge[3] = 1e6
        let outlier = try LatentModelFitter.fit(
            InMemoryActivations(values: huge, shape: [8], labels: data.labels),
            calibration: calSource,
            configuration: Self.configuration()
        )
        let scale = try #require(outlier.neighbours?.codeScale)
        #expect(scale < 0.1 && outlier.neighbours!.rows.max()! == 127 * scale)
        // Wider than the integer kernels take exactly: no index is built, and the fitter says why.
        #expect(
            NeighbourIndex.build(
                sample: [Float](repeating: 0.5, count: NeighbourIndex.maximumCodeDimension + 1),
                count: 1,
                dimension: NeighbourIndex.maximumCodeDimension + 1,
                options: NeighbourOptions()
            ) == nil
        )
    }

    /// The codes' scale takes its quantile by histograms of the magnitudes' bit patterns instead of sorting a copy:
    /// every rank gives what sorting gives, with ties, zeros, negative zeros, subnormals and values sharing their
    /// upper 16 bits.
    @Test func magnitudeRankEqualsSorting() throws {
        var rng = SeededRandom(seed: 77)
        var values = (0..<5_000).map { _ in Float(rng.normal()) * 3 }
        values += [0, -0.0, 1e-40, -1e-40, 1, -1, 1, 1.0000001, 1.0000002, 7e30, -7e30]
        let sorted = values.map { abs($0) }.sorted()
        for rank in [0, 1, 2, 3, 100, 2_500, 4_999, 5_005, 5_009, sorted.count - 2, sorted.count - 1] {
            #expect(NeighbourIndex.magnitude(atRank: rank, of: values) == sorted[rank], "rank \(rank)")
        }
        #expect(NeighbourIndex.codeScale(of: values) == sorted[Int(0.9999 * Double(sorted.count - 1))] / 100)
        #expect(NeighbourIndex.codeScale(of: [0, 0, 0]) == 1)
    }

    /// A workspace made by another model (here one without an index, whose neighbour scratch is one float) is
    /// refused with a clear error instead of being written past.
    @Test func foreignWorkspaceIsRefused() throws {
        let data = Self.draw(600, seed: 12)
        let source = InMemoryActivations(values: data.values, shape: [8], labels: data.labels)
        let indexed = try LatentModelFitter.fit(source, configuration: Self.configuration())
        let plain = try LatentModelFitter.fit(source, configuration: Self.configuration().withoutNeighbours())
        let foreign = plain.makeWorkspace()
        let x = Array(data.values[0..<8])
        #expect(throws: LatentWatchError.self) {
            try x.withUnsafeBufferPointer { try indexed.score($0, workspace: foreign) }
        }
        let batch = data.values[0..<16].withUnsafeBufferPointer {
            indexed.scoreBatch($0, count: 2, workspace: foreign)
        }
        #expect(batch.allSatisfy { if case .failure(let e) = $0 { e.code == .invalidConfiguration } else { false } })
        // Its own workspace, and the other way round (larger buffers are fine), score.
        _ = try x.withUnsafeBufferPointer { try indexed.score($0, workspace: indexed.makeWorkspace()) }
        _ = try x.withUnsafeBufferPointer { try plain.score($0, workspace: indexed.makeWorkspace()) }
    }

    /// A neighbour sample smaller than a mixture's k-means++ sample leaves the mixture's start as it is without an
    /// index: the same mixture, with an index beside it.
    @Test func smallIndexKeepsTheMixturesSample() throws {
        let data = Self.draw(1_500, seed: 9)
        var plain = Self.configuration().withoutNeighbours()
        plain.family = .gmmFull
        plain.mixture.components = 3
        var indexed = plain
        indexed.neighbours = NeighbourOptions(sampleSize: 50, required: true)
        let a = try LatentModelFitter.fit(InMemoryActivations(values: data.values, shape: [8]), configuration: plain)
        let b = try LatentModelFitter.fit(InMemoryActivations(values: data.values, shape: [8]), configuration: indexed)
        #expect(b.neighbourCount == 50 && a.neighbourCount == 0)
        let test = Self.draw(20, seed: 10).values
        for i in 0..<20 {
            let x = Array(test[(i * 8)..<((i + 1) * 8)])
            #expect(try a.score(x).surprise == b.score(x).surprise)
        }
    }
}

extension FitConfiguration {
    fileprivate func withoutNeighbours() -> FitConfiguration {
        var c = self
        c.neighbours = nil
        return c
    }
}
