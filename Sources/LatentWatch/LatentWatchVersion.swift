/// The library's version, written into every model file.
public enum LatentWatchVersion {
    /// Semantic version of this build of the SDK.
    public static let string = "0.1.0"
}
