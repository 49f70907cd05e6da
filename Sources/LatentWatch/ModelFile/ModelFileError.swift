/// Why a model file could not be read or written. Every reader failure has its own ``Code`` and a message
/// that says what is wrong and what to do; bad bytes never crash the process.
public struct ModelFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: String, Sendable, Equatable, CaseIterable {
        /// The file is shorter than its header says, or cut before the trailer.
        case truncated
        /// The file has bytes after the trailer.
        case trailingBytes
        /// The magic bytes are not a LatentWatch model's.
        case notAModelFile
        /// The format version is newer (or older) than this reader supports.
        case unsupportedVersion
        /// A checksum does not match: the file was altered or damaged.
        case checksumMismatch
        /// A declared count or size is beyond what a valid file can hold.
        case implausibleSize
        /// A section lies outside the file or overlaps the header.
        case sectionOutOfBounds
        /// A compressed section does not decompress to its declared size.
        case decompressionFailed
        /// The metadata JSON does not parse or lacks required keys.
        case malformedMetadata
        /// The file needs a feature this reader does not have.
        case unsupportedFeature
        /// Metadata and tensors disagree, or parameters are not finite.
        case inconsistentModel
        /// The file could not be opened, read or written.
        case io
    }

    /// The kind of failure.
    public let code: Code
    /// What went wrong.
    public let message: String
    /// What to do about it.
    public let remedy: String
    /// The file concerned, when known.
    public var path: String?

    /// Creates an error.
    public init(_ code: Code, _ message: String, remedy: String, path: String? = nil) {
        self.code = code
        self.message = message
        self.remedy = remedy
        self.path = path
    }

    public var description: String {
        let location = path.map { "\($0): " } ?? ""
        return "\(location)\(message) [\(code.rawValue)]. \(remedy)"
    }
}
