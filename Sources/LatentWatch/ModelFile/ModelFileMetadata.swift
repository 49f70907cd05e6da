/// The JSON metadata section of a model file (see Docs/ModelFormat.md).
struct ModelFileMetadata: Codable {
    struct PreparationJSON: Codable {
        struct ProjectionJSON: Codable {
            var kind: String
            var k: Int?
            var fraction: Double?
        }
        var pooling: String
        var l2Normalize: Bool
        var projection: ProjectionJSON
        var outputDimension: Int

        enum CodingKeys: String, CodingKey {
            case pooling
            case l2Normalize = "l2_normalize"
            case projection
            case outputDimension = "output_dimension"
        }
    }

    struct BackgroundJSON: Codable {
        var logNormalizer: Double
        var regularization: AppliedRegularization
        enum CodingKeys: String, CodingKey {
            case logNormalizer = "log_normalizer"
            case regularization
        }
    }

    struct CalibrationJSON: Codable {
        var scores: [String]
        var counts: [String: Int]
    }

    struct FitJSON: Codable {
        var samples: Int
        var calibrationSamples: Int
        var notes: String
        enum CodingKeys: String, CodingKey {
            case samples
            case calibrationSamples = "calibration_samples"
            case notes
        }
    }

    /// The calibrated class posterior (``LatentModel/posteriorTemperature``).
    struct PosteriorJSON: Codable {
        static let rootDistance = "root-distance"
        var kind: String
        var temperature: Double
    }

    /// The joint calibration of a fused statistic (``LatentModel/jointCalibration``); its values are the tensors
    /// `joint.values` and `joint.ranks`.
    struct JointJSON: Codable {
        var statistic: String
        var layers: [String]
        /// The score each member ranks ("surprise" or "neighbour_distance"), one per layer entry; absent: all
        /// "surprise".
        var kinds: [String]? = nil
        var memberChecksums: [UInt32]
        var count: Int

        enum CodingKeys: String, CodingKey {
            case statistic, layers, kinds
            case memberChecksums = "member_checksums"
            case count
        }
    }

    /// A regression model's interval calibration (``LatentModel/intervalCalibration``); its values are the tensors
    /// `interval.values` and `interval.ranks`.
    struct IntervalJSON: Codable {
        var count: Int
    }

    /// A neighbour index (``LatentModel/neighbours``): its rows, cell starts and centres are the tensors
    /// `neighbours.codes` (or `.rows`), `neighbours.cell_starts` and `neighbours.centre_codes` (or `.centres`), and the calibration of the combined
    /// epistemic statistic the tensors `epistemic.values` and `epistemic.ranks`.
    struct NeighboursJSON: Codable {
        var count: Int
        var cells: Int
        var probes: Int
        /// The codes' scale (a value is code x scale): rows and centres are the i8 tensors `neighbours.codes` and
        /// `neighbours.centre_codes`. Absent (format 1.4): f16 `neighbours.rows` and f32 `neighbours.centres`.
        var scale: Float? = nil
        var epistemicCount: Int?

        enum CodingKeys: String, CodingKey {
            case count, cells, probes, scale
            case epistemicCount = "epistemic_count"
        }
    }

    var format: String
    var libraryVersion: String
    var created: String
    var layer: String
    var inputShape: [Int]
    var requiredFeatures: [String]
    var preparation: PreparationJSON
    var density: DensityDescriptor
    var background: BackgroundJSON?
    var calibration: CalibrationJSON
    /// Absent: Bayes' rule on the density.
    var posterior: PosteriorJSON? = nil
    /// Absent: no joint calibration.
    var joint: JointJSON? = nil
    /// Absent: no prediction interval.
    var interval: IntervalJSON? = nil
    /// Absent: no neighbour index.
    var neighbours: NeighboursJSON? = nil
    var tensors: [TensorDescriptor]
    var fit: FitJSON

    enum CodingKeys: String, CodingKey {
        case format
        case libraryVersion = "library_version"
        case created, layer
        case inputShape = "input_shape"
        case requiredFeatures = "required_features"
        case preparation, density, background, calibration, posterior, joint, interval, neighbours, tensors, fit
    }
}

/// Reader features this version understands (see `required_features`).
enum ModelFileFeatures {
    /// The class posterior is calibrated (`posterior`); a reader that ignored it would compute entropies on
    /// another scale than the calibration's.
    static let rootDistancePosterior = "root_distance_posterior"
    /// The model keeps a neighbour index (`neighbours`); a reader that ignored it would alert on the surprise's
    /// p-value instead of the combined one the model was calibrated for.
    static let neighbourIndex = "neighbour_index"
    /// The neighbour index holds integer codes (`neighbours.scale`); a 1.4 reader would look for float16 rows.
    static let neighbourCodes = "neighbour_codes"
    /// The joint calibration has neighbour-distance members (`joint.kinds`); a reader that ignored them would
    /// compute the fused statistic from fewer p-values than it was calibrated on.
    static let jointNeighbourMembers = "joint_neighbour_members"
    static let known: Set<String> = [rootDistancePosterior, neighbourIndex, neighbourCodes, jointNeighbourMembers]
}
