public enum LatentWatchVersion { public static let string = "0.1.0" }
