import ArgumentParser
import LatentWatch
import LatentWatchNumerics

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
