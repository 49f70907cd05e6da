import ArgumentParser
import LatentWatch
import LatentWatchNumerics
import LatentWatchSidecar

// Typed command-line values: each is parsed once, where ArgumentParser reads it, and its allowed values and
// help come from the SDK (the density family registry, the enums' cases), never from copied strings.

extension DensityFamilyName: ExpressibleByArgument {
    /// A registered family's name or alias ("gmm" is gmm-full); the canonical name is kept.
    public init?(argument: String) {
        guard let family = DensityFamilyRegistry.standard.family(named: argument) else { return nil }
        self = family.name
    }

    public static var allValueStrings: [String] { DensityFamilyRegistry.standard.allNames }

    /// One line per registered family, for `--family`'s help.
    static var helpText: String {
        DensityFamilyRegistry.standard.families.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ")
    }
}

extension PreparationOptions.Pooling: ExpressibleByArgument {}

extension ElementType: ExpressibleByArgument {
    /// float32/float16, or the short tags f32/f16 that model files and recordings use.
    public init?(argument: String) {
        guard let t = ElementType(rawValue: argument) ?? ElementType(tag: argument), t.isParameterPrecision else {
            return nil
        }
        self = t
    }

    public static var allValueStrings: [String] { ["float32", "float16", "f32", "f16"] }
}

/// `--regularization`: held-out, oas, or a fixed lambda in [0, 1].
struct ShrinkageArgument: ExpressibleByArgument {
    let value: Regularization.Shrinkage

    init?(argument: String) {
        switch argument {
        case "held-out": value = .heldOutLikelihood
        case "oas": value = .oracleApproximating
        default:
            guard let l = Double(argument), l >= 0, l <= 1 else { return nil }
            value = .fixed(l)
        }
    }

    static var allValueStrings: [String] { ["held-out", "oas", "<lambda in [0, 1]>"] }
}

extension PValueFusion: ExpressibleByArgument {}
extension ShiftBetting: ExpressibleByArgument {}
extension ShiftReference: ExpressibleByArgument {}

extension QueueFullPolicy: ExpressibleByArgument {}

/// `fit --neighbours`: a number of rows (an index that must be built) or `off`.
struct NeighboursArgument: ExpressibleByArgument {
    /// Rows, or nil for off.
    let rows: Int?

    init?(argument: String) {
        if argument == "off" || argument == "0" {
            rows = nil
        } else if let n = Int(argument), n >= 1, n <= NeighbourOptions.maximumSampleSize {
            rows = n
        } else {
            return nil
        }
    }
}

/// `--shift`: which shift detector runs.
enum ShiftChoice: String, CaseIterable, ExpressibleByArgument {
    /// Alarm once; P(any false alarm) <= delta.
    case anytime
    /// Restart after each alarm; mean run length between false alarms.
    case change
    /// No shift detector.
    case off
}

/// `evaluate --score`: the score that ranks inputs (command-line spelling of ``ScoreKind``).
enum RankingScore: String, CaseIterable, ExpressibleByArgument {
    /// What a monitor alerts on: the surprise, or with a neighbour index the surprise and the distance combined.
    case epistemic
    case surprise
    case neighbour
    case mahalanobis
    case relativeMahalanobis = "relative-mahalanobis"
    case entropy

    /// The score kind behind it; nil for `epistemic`, which is not one kind.
    var kind: ScoreKind? {
        switch self {
        case .epistemic: return nil
        case .surprise: return .surprise
        case .neighbour: return .neighbour
        case .mahalanobis: return .mahalanobis
        case .relativeMahalanobis: return .relativeMahalanobis
        case .entropy: return .entropy
        }
    }
}

/// `score --format`: the output file's format.
enum ScoreFileFormat: String, CaseIterable, ExpressibleByArgument {
    case npy
    case csv
}
