/// Why LatentWatch refused a file, an input, a configuration or a call. One error type for the whole SDK: a
/// ``Code`` to branch on (it can grow without breaking callers), a message that says what is wrong and with
/// which input, a remedy that says what to do, and the file concerned when there is one. Bad bytes and bad
/// inputs are always errors, never crashes; the object that threw (a monitor, a model) is unaffected.
public struct LatentWatchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure. New codes may be added in later versions: a `switch` over codes needs a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Value: String, CaseIterable, Sendable {
            case truncated, trailingBytes, notAModelFile, unsupportedVersion, checksumMismatch, implausibleSize
            case sectionOutOfBounds, decompressionFailed, malformedMetadata, unsupportedFeature, inconsistentModel
            case malformedFile, io
            case shapeMismatch, nonFinite, layerCountMismatch, invalidActivation, invalidOutputs
            case queueFull, shutDown, notInBackgroundMode
            case invalidConfiguration, fitFailed
        }
        let value: Value

        /// The code's name, as in messages and logs (for example `checksumMismatch`).
        public var description: String { value.rawValue }

        /// Every code this version knows.
        package static var all: [Code] { Value.allCases.map(Code.init(value:)) }

        /// The file is shorter than its header says, or cut before its end.
        public static let truncated = Code(value: .truncated)
        /// The file has bytes after its end marker.
        public static let trailingBytes = Code(value: .trailingBytes)
        /// The magic bytes are not a LatentWatch model's.
        public static let notAModelFile = Code(value: .notAModelFile)
        /// The format version is newer (or older) than this reader supports.
        public static let unsupportedVersion = Code(value: .unsupportedVersion)
        /// A checksum does not match: the file was altered or damaged.
        public static let checksumMismatch = Code(value: .checksumMismatch)
        /// A declared count or size is beyond what a valid file can hold.
        public static let implausibleSize = Code(value: .implausibleSize)
        /// A section lies outside the file or overlaps the header.
        public static let sectionOutOfBounds = Code(value: .sectionOutOfBounds)
        /// A compressed section does not decompress to its declared size.
        public static let decompressionFailed = Code(value: .decompressionFailed)
        /// The metadata JSON does not parse or lacks required keys.
        public static let malformedMetadata = Code(value: .malformedMetadata)
        /// The file needs a feature (for example a density family) this reader does not have.
        public static let unsupportedFeature = Code(value: .unsupportedFeature)
        /// A model's metadata and tensors disagree, or its parameters are not finite.
        public static let inconsistentModel = Code(value: .inconsistentModel)
        /// An activation, label or recording file is not valid: bad header, bad element type, cut short.
        public static let malformedFile = Code(value: .malformedFile)
        /// A file could not be opened, read or written.
        public static let io = Code(value: .io)
        /// An activation holds a different number of elements than the model's input shape.
        public static let shapeMismatch = Code(value: .shapeMismatch)
        /// An activation holds NaN or infinity.
        public static let nonFinite = Code(value: .nonFinite)
        /// The number of activations differs from the number of monitored layers.
        public static let layerCountMismatch = Code(value: .layerCountMismatch)
        /// An activation given to the monitor has the wrong element count or holds NaN/Inf.
        public static let invalidActivation = Code(value: .invalidActivation)
        /// The model outputs have the wrong count, hold NaN/Inf or negative probabilities, or were not configured.
        public static let invalidOutputs = Code(value: .invalidOutputs)
        /// The background queue is full and the overflow policy is to reject.
        public static let queueFull = Code(value: .queueFull)
        /// The monitor or recorder has shut down.
        public static let shutDown = Code(value: .shutDown)
        /// `submit` was called on a monitor in inline mode.
        public static let notInBackgroundMode = Code(value: .notInBackgroundMode)
        /// A configuration value is out of range or inconsistent with another.
        public static let invalidConfiguration = Code(value: .invalidConfiguration)
        /// A fit could not be done with this data (too few samples, a covariance that cannot be factorised).
        public static let fitFailed = Code(value: .fitFailed)

        var defaultRemedy: String {
            switch value {
            case .truncated, .trailingBytes, .checksumMismatch, .sectionOutOfBounds, .decompressionFailed,
                .malformedMetadata, .implausibleSize, .inconsistentModel:
                return "The file is damaged or was altered: copy it again from its source or write it anew."
            case .notAModelFile: return "Pass a model file written by `latentwatch fit` or ModelFile.write."
            case .unsupportedVersion, .unsupportedFeature:
                return "Read it with the LatentWatch version that wrote it or a later one."
            case .malformedFile:
                return "Check that the file is a .npy, .npz, safetensors or LatentWatch recording and complete."
            case .io: return "Check that the path exists and is readable (or writable)."
            case .shapeMismatch, .invalidActivation, .layerCountMismatch:
                return "Pass one activation per monitored layer, each in the shape its model was fitted on."
            case .nonFinite: return "Check the host model's forward pass: the activation holds NaN or infinity."
            case .invalidOutputs: return "Pass the outputs configured in MonitorConfiguration.outputs, all finite."
            case .queueFull: return "Submit less often, enlarge the queue, or choose the drop overflow policy."
            case .shutDown: return "Create a new monitor; a monitor that has shut down accepts no inputs."
            case .notInBackgroundMode: return "Use assess in inline mode, or configure the monitor's background mode."
            case .invalidConfiguration: return "Correct the value named in the message."
            case .fitFailed: return "Give more data per class, raise the regularisation, or choose another family."
            }
        }
    }

    /// The kind of failure.
    public let code: Code
    /// What went wrong, naming the input concerned.
    public let message: String
    /// What to do about it.
    public let remedy: String
    /// The file concerned, when there is one.
    public var path: String?

    /// Creates an error; without a `remedy` the code's general one is used.
    public init(_ code: Code, _ message: String, remedy: String? = nil, path: String? = nil) {
        self.code = code
        self.message = message
        self.remedy = remedy ?? code.defaultRemedy
        self.path = path
    }

    /// `path: message [code]. remedy`
    public var description: String {
        let location = path.map { "\($0): " } ?? ""
        return "\(location)\(message) [\(code)]. \(remedy)"
    }

    /// The same error naming a file.
    package func at(_ path: String) -> LatentWatchError {
        var e = self
        if e.path == nil { e.path = path }
        return e
    }
}

extension LatentWatchError {
    /// Runs `body`, passing a ``LatentWatchError`` through and turning any other error into one with `code`.
    package static func converting<T>(
        _ code: Code,
        _ what: String,
        _ body: () throws -> T
    ) throws(LatentWatchError) -> T {
        do { return try body() } catch let e as LatentWatchError { throw e } catch {
            throw LatentWatchError(code, "\(what): \(error)")
        }
    }
}
