import Foundation
import LatentWatch
import LatentWatchNumerics
import Testing

// "Adding a density family is one new file plus one registration line": this file is that new file. It
// defines a family the library does not ship (nearest class mean), and the suite below registers it with one
// line and drives it through fitting, model files and scoring without touching anything in Sources.

// MARK: - The family (what a new family's file holds)

/// Nearest class mean ("ncm"): per class an isotropic unit-variance Gaussian centred on the class mean, with
/// equal priors. log p(z | k) = -0.5 ||z - mu_k||^2 - 0.5 D log(2 pi), log pi_k = log(1 / K).
struct NearestClassMean: LatentDensity {
    static let familyName = "test-ncm"

    /// Class means, row-major [K, D].
    let means: [Float]
    /// Label of each class.
    let labels: [Int]
    let dimension: Int
    /// log(1 / K), the same for every class.
    let logPrior: Double
    /// -0.5 D log(2 pi), the same for every class.
    let logNormalizer: Double

    init(means: [Float], labels: [Int], dimension: Int) {
        precondition(!labels.isEmpty && dimension > 0 && means.count == labels.count * dimension)
        self.means = means
        self.labels = labels
        self.dimension = dimension
        self.logPrior = -log(Double(labels.count))
        self.logNormalizer = -0.5 * Double(dimension) * log(2 * Double.pi)
    }

    var componentCount: Int { labels.count }
    var classLabels: [Int]? { labels }
    var precision: ElementType { .float32 }
    var regularization: [AppliedRegularization] {
        Array(repeating: AppliedRegularization(shrinkage: 0, diagonalLoad: 0, method: "none"), count: labels.count)
    }

    func evaluate(
        _ z: UnsafePointer<Float>,
        logJoint: UnsafeMutablePointer<Double>,
        distances: UnsafeMutablePointer<Double>,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let d = dimension
        means.withUnsafeBufferPointer { m in
            for k in 0..<labels.count {
                let row = m.baseAddress! + k * d
                var s = 0.0
                for j in 0..<d {
                    let diff = Double(z[j]) - Double(row[j])
                    s += diff * diff
                }
                distances[k] = s
                logJoint[k] = logPrior + logNormalizer - 0.5 * s
            }
        }
    }

    /// The means stay float32 whatever the requested precision.
    func converted(to precision: ElementType) -> NearestClassMean { self }

    func encode(into sections: inout ModelSectionWriter) {
        sections.density = DensityDescriptor(
            family: family,
            dimension: dimension,
            components: componentCount,
            precision: precision,
            classLabels: labels,
            logWeights: Array(repeating: logPrior, count: componentCount),
            logNormalizers: Array(repeating: logNormalizer, count: componentCount),
            regularization: regularization
        )
        sections.addFloats("density.means", means, shape: [componentCount, dimension], precision: precision)
    }

    static func decode(from sections: ModelSectionReader) throws(LatentWatchError) -> NearestClassMean {
        let m = sections.density
        let k = m.components
        let d = m.dimension
        guard m.family == familyName, (1...100_000).contains(k), (1...65_536).contains(d) else {
            throw LatentWatchError(
                .inconsistentModel,
                "'\(m.family)' density of \(k) components in \(d) dimensions is not a plausible \(familyName) one",
                remedy: "refit the model"
            )
        }
        guard let labels = m.classLabels, labels.count == k, Set(labels).count == k else {
            throw LatentWatchError(
                .inconsistentModel,
                "a \(familyName) density needs \(k) distinct class labels",
                remedy: "refit the model"
            )
        }
        guard m.precision == .float32, m.logWeights.count == k, m.logNormalizers.count == k,
            m.regularization.count == k
        else {
            throw LatentWatchError(
                .inconsistentModel,
                "\(familyName) metadata lists \(m.logWeights.count) weights, \(m.logNormalizers.count) normalisers, "
                    + "\(m.regularization.count) regularisation records for \(k) components at \(m.precision)",
                remedy: "refit the model"
            )
        }
        // floats(_:shape:) checks the tensor's presence, shape, byte count and finiteness.
        let means = try sections.floats("density.means", shape: [k, d])
        let density = NearestClassMean(means: means, labels: labels, dimension: d)
        // Weights and normalisers follow from K and D; the file's copies must agree (1e-12 relative, far above
        // the JSON round trip's error and far below any real disagreement).
        func agrees(_ stored: [Double], _ expected: Double) -> Bool {
            stored.allSatisfy { abs($0 - expected) <= 1e-12 * max(1, abs(expected)) }
        }
        guard agrees(m.logWeights, density.logPrior), agrees(m.logNormalizers, density.logNormalizer) else {
            throw LatentWatchError(
                .inconsistentModel,
                "\(familyName) weights or normalisers disagree with \(k) classes in \(d) dimensions",
                remedy: "refit the model"
            )
        }
        return density
    }
}

extension DensityFamily {
    /// `test-ncm`: the nearest class mean family, defined by the tests only.
    static let nearestClassMean = DensityFamily(
        name: DensityFamilyName(NearestClassMean.familyName),
        summary: "nearest class mean: an isotropic unit-variance Gaussian per class (needs labels)",
        needsLabels: true,
        fit: { (ctx) throws(LatentWatchError) -> any LatentDensity in
            let stats = ctx.statistics
            let d = ctx.dimension
            let labels = stats.classLabels
            guard !labels.isEmpty else {
                throw LatentWatchError(.fitFailed, "no labelled activations to fit class means on")
            }
            var means: [Float] = []
            means.reserveCapacity(labels.count * d)
            for label in labels {
                // The class mean over all fitting samples: training and validation moments merged.
                let merged = stats.moments(ofClass: label).all
                guard merged.weight >= 1 else {
                    throw LatentWatchError(.fitFailed, "class \(label) has no fitting samples")
                }
                means += merged.mean.map { Float($0) }
            }
            ctx.note("test-ncm: \(labels.count) class means")
            return NearestClassMean(means: means, labels: labels, dimension: d)
        },
        decode: { (r) throws(LatentWatchError) -> any LatentDensity in try NearestClassMean.decode(from: r) }
    )
}

// MARK: - The seam

@Suite struct DensityFamilySeamTests {
    static let dimension = 4
    static let centres: [[Float]] = [[0, 0, 0, 0], [3, 3, 3, 3]]

    /// 200 rows of dimension 4, alternating classes 0 and 1, each coordinate its class centre plus
    /// 0.5 N(0, 1) noise from a fixed seed.
    static func twoClasses(rows: Int = 200) -> InMemoryActivations {
        var g = SeededRandom(seed: 20_240_601)
        var values: [Float] = []
        values.reserveCapacity(rows * dimension)
        var labels: [Int] = []
        labels.reserveCapacity(rows)
        for i in 0..<rows {
            let c = i % 2
            labels.append(c)
            for j in 0..<dimension { values.append(centres[c][j] + Float(0.5 * g.normal())) }
        }
        return InMemoryActivations(values: values, shape: [dimension], labels: labels)
    }

    /// The standard families plus the test's own.
    static func registryWithNearestClassMean() -> DensityFamilyRegistry {
        var families = DensityFamilyRegistry.standard
        families.register(.nearestClassMean)  // The one registration line a new family needs.
        return families
    }

    /// Fits the test family on ``twoClasses(rows:)`` with unprepared activations (z is the raw vector).
    static func fitNearestClassMean(_ families: DensityFamilyRegistry) throws -> LatentModel {
        var cfg = FitConfiguration(family: DensityFamilyName(NearestClassMean.familyName), preparation: .raw)
        cfg.families = families
        return try LatentModelFitter.fit(twoClasses(), configuration: cfg)
    }

    @Test func registeredFamilyFitsWritesReadsAndScores() throws {
        let families = Self.registryWithNearestClassMean()
        let model = try Self.fitNearestClassMean(families)
        #expect(model.family == "test-ncm")
        #expect(model.classLabels == [0, 1])
        #expect(model.metadata.notes.contains("test-ncm: 2 class means"))
        let fitted = try #require(model.density as? NearestClassMean)
        let d = Self.dimension
        // About 80 fitting samples per class (20 % go to calibration) with noise sd 0.5: each mean coordinate
        // has sd about 0.06, so 0.3 (5 sd) holds for the fixed seed with a wide margin.
        for k in 0..<2 {
            for j in 0..<d {
                #expect(abs(fitted.means[k * d + j] - Self.centres[k][j]) <= 0.3, "class \(k) coordinate \(j)")
            }
        }

        let bytes = try ModelFile.encode(model, options: .init())
        let back = try ModelFile.decode(bytes, families: families)
        #expect(back.family == "test-ncm")
        #expect(back.classLabels == [0, 1])
        #expect(back.density is NearestClassMean)
        #expect(back.calibration == model.calibration)
        #expect(back.metadata.notes == model.metadata.notes)

        let probes: [[Float]] = [[0, 0, 0, 0], [3, 3, 3, 3], [1.5, 1.5, 1.5, 1.5], [-1, 2, 0.5, 4]]
        for x in probes {
            // The means are stored as float32, so scores after the round trip are bit-identical.
            let s = try back.score(x)
            #expect(try s == model.score(x), "probe \(x)")
            // The scores come from this file's evaluate: log p(z) = logsumexp_k(log 1/2 + log N(z; mu_k, I)),
            // distance min_k ||z - mu_k||^2 (1e-9 relative: only the summation order differs).
            var a = [Double](repeating: 0, count: 2)
            var d2 = [Double](repeating: 0, count: 2)
            for k in 0..<2 {
                for j in 0..<d {
                    let diff = Double(x[j]) - Double(fitted.means[k * d + j])
                    d2[k] += diff * diff
                }
                a[k] = log(0.5) - 0.5 * Double(d) * log(2 * Double.pi) - 0.5 * d2[k]
            }
            let top = max(a[0], a[1])
            let logDensity = top + log(exp(a[0] - top) + exp(a[1] - top))
            #expect(abs(s.logDensity - logDensity) <= 1e-9 * max(1, abs(logDensity)), "probe \(x)")
            #expect(abs(s.mahalanobis - min(d2[0], d2[1])) <= 1e-9 * max(1, min(d2[0], d2[1])), "probe \(x)")
        }
        #expect(try back.score(Self.centres[1]).predictedLabel == 1)
        #expect(try back.score(Self.centres[0]).predictedLabel == 0)
    }

    @Test func readerWithoutTheFamilyRefusesTheFile() throws {
        let bytes = try ModelFile.encode(Self.fitNearestClassMean(Self.registryWithNearestClassMean()))
        do throws(LatentWatchError) {
            _ = try ModelFile.decode(bytes)
            Issue.record("the standard registry decoded a test-ncm model")
        } catch {
            #expect(error.code == .unsupportedFeature, "\(error)")
            #expect(error.message.contains("test-ncm"), "\(error)")
        }
    }

    @Test func unregisteredFamilyNameIsRefusedWhenFitting() throws {
        // FitConfiguration's registry defaults to the standard one, which lacks test-ncm.
        let cfg = FitConfiguration(family: DensityFamilyName(NearestClassMean.familyName), preparation: .raw)
        do {
            _ = try LatentModelFitter.fit(Self.twoClasses(), configuration: cfg)
            Issue.record("fitted an unregistered family")
        } catch let error as LatentWatchError {
            #expect(error.code == .invalidConfiguration, "\(error)")
            #expect(error.message.contains("test-ncm"), "\(error)")
            #expect((error.message + " " + error.remedy).contains("gda"), "\(error)")
        }
    }

    @Test func standardFamiliesAreAllRegistered() {
        let standard = DensityFamilyRegistry.standard
        let names = standard.allNames
        for name in ["gda", "tied", "gmm-full", "gmm-diag", "gmm"] {
            #expect(names.contains(name), "\(name) missing from \(names)")
        }
        #expect(standard.family(named: "gmm")?.name == .gmmFull)
        // Registering in a copy leaves the standard registry as it was (no global state).
        #expect(!names.contains(NearestClassMean.familyName))
        let extended = Self.registryWithNearestClassMean()
        #expect(extended.family(named: NearestClassMean.familyName)?.name == DensityFamilyName("test-ncm"))
        #expect(extended.allNames == names + ["test-ncm"])
    }
}
