// swift-tools-version:6.0
import PackageDescription

// Dependencies point one way: C shims -> numeric kernels -> LatentWatch (the SDK hosts link)
// -> LatentWatchCLI -> thin executables. LatentWatch never depends on NIO, Hummingbird or ArgumentParser.
let package = Package(
    name: "LatentWatch",
    products: [
        .library(name: "LatentWatch", targets: ["LatentWatch"]),
        .library(name: "LatentWatchClient", targets: ["LatentWatchClient"]),
        // The C interface, liblatentwatch.so (built as libLatentWatchC.so and renamed by
        // Sources/LatentWatchC/build-library; Docs/CAPI.md).
        .library(name: "LatentWatchC", type: .dynamic, targets: ["LatentWatchC"]),
        .executable(name: "latentwatch", targets: ["latentwatch"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // libzstd through pkg-config (Debian: libzstd-dev).
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]
        ),
        // zlib through pkg-config (Debian: zlib1g-dev): inflating deflated .npz members.
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // CBLAS + LAPACKE, implemented by OpenBLAS (Debian: libopenblas-dev, liblapacke-dev).
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]
        ),
        // Hand-written SIMD loops with per-function target attributes and run-time CPU dispatch.
        .target(name: "CLatentKernels"),
        // Benchmark only: counts heap allocations by interposing malloc (never linked into the SDK).
        .target(name: "CMallocCounter"),
        .target(
            name: "LatentWatchNumerics",
            dependencies: ["COpenBLAS", "CLatentKernels"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "LatentWatch",
            dependencies: [
                "LatentWatchNumerics",
                "CZstd",
                "CZlib",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The C interface's header (Sources/CLatentWatch/include/latentwatch.h) and its plain-C part.
        .target(name: "CLatentWatch"),
        // The C interface: @c functions over the SDK, declared by CLatentWatch's header.
        .target(
            name: "LatentWatchCAPI",
            dependencies: ["CLatentWatch", "LatentWatch", .product(name: "Logging", package: "swift-log")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // liblatentwatch.so: the C interface linked with the Swift runtime inside (-static-stdlib) and a version
        // script that exports only the lw_ symbols. Nothing depends on this target: a test bundle or executable
        // linking it would get these flags too (the fuzz harness links LatentWatchCAPI instead).
        .target(
            name: "LatentWatchC",
            dependencies: ["LatentWatchCAPI"],
            exclude: ["latentwatch.map", "build-library"],
            swiftSettings: [.swiftLanguageMode(.v6)],
            linkerSettings: [
                .unsafeFlags([
                    "-static-stdlib",
                    // The static runtime's own dependencies, which the driver does not add for a shared library.
                    // (An unresolved symbol fails the link of every C test program.)
                    "-lFoundationInternationalization", "-lCoreFoundation", "-l_FoundationICU",
                    "-l_FoundationCollections",
                    "-l_FoundationCShims", "-lswiftSynchronization",
                    "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/LatentWatchC/latentwatch.map",
                    "-Xlinker", "-soname=liblatentwatch.so",
                    // Never unloaded by dlclose: per-thread state destructors and the runtime's threads point into it.
                    "-Xlinker", "-z", "-Xlinker", "nodelete",
                ])
            ]
        ),
        // The sidecar's wire protocol (Docs/WireProtocol.md): encoder and checking decoder, no dependencies.
        .target(name: "LatentWatchWire", swiftSettings: [.swiftLanguageMode(.v6)]),
        // Blocking Swift client of `latentwatch serve` (POSIX sockets; no NIO).
        .target(name: "LatentWatchClient", dependencies: ["LatentWatchWire"], swiftSettings: [.swiftLanguageMode(.v6)]),
        // `latentwatch serve`: the monitor behind a Unix socket / loopback TCP (NIO) and HTTP (Hummingbird).
        .target(
            name: "LatentWatchSidecar",
            dependencies: [
                "LatentWatch",
                "LatentWatchNumerics",
                "LatentWatchWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .target(
            name: "LatentWatchCLI",
            dependencies: [
                "LatentWatch",
                "LatentWatchSidecar",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "latentwatch",
            dependencies: ["LatentWatchCLI"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // What the research tools share: argument types, data loading and checks, the stream designs, timing,
        // order statistics, synthetic data. Internal to this package; never linked into the SDK.
        .target(
            name: "LatentWatchLab",
            dependencies: [
                "LatentWatch",
                "LatentWatchNumerics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "latentwatch-bench",
            dependencies: [
                "LatentWatch", "LatentWatchNumerics", "LatentWatchLab", "CMallocCounter", "CLatentWatch",
                "LatentWatchCAPI",
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Stream-alert guarantees measured on real activations (Docs/Statistics.md).
        .executableTarget(
            name: "latentwatch-streams",
            dependencies: ["LatentWatch", "LatentWatchNumerics", "LatentWatchLab"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Evaluation on real activations against the Python references (Docs/Evaluation.md).
        .executableTarget(
            name: "latentwatch-eval",
            dependencies: ["LatentWatch", "LatentWatchNumerics", "LatentWatchLab"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The libFuzzer driver of latentwatch-fuzz: its entry point, LLVMFuzzerRunDriver when linked with libFuzzer,
        // a corpus replay otherwise.
        .target(name: "CFuzzDriver"),
        // Fuzz targets for every parser of outside bytes and the C interface (.ci/fuzz, Docs/Reliability.md).
        .executableTarget(
            name: "latentwatch-fuzz",
            dependencies: [
                "CFuzzDriver", "CLatentWatch", "LatentWatch", "LatentWatchCAPI", "LatentWatchWire", "LatentWatchCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Bounded load test of `latentwatch serve` (Docs/Performance.md).
        .executableTarget(
            name: "latentwatch-loadtest",
            dependencies: [
                "LatentWatch", "LatentWatchNumerics", "LatentWatchLab", "LatentWatchClient", "LatentWatchWire",
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Samples/EmbeddedServer: a Hummingbird service with the monitor in its forward pass (not part of the SDK).
        .executableTarget(
            name: "latentwatch-sample-server",
            dependencies: [
                "LatentWatch",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Samples/EmbeddedServer",
            exclude: ["README.md"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "LatentWatchNumericsTests",
            dependencies: ["LatentWatchNumerics"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Test helper shared by the test targets that run the real executable.
        .target(
            name: "LatentWatchTestSupport",
            path: "Tests/LatentWatchTestSupport",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Runs the real executables as child processes (kill -9, demo, fit/score/replay, the tools' input checks,
        // the fuzz harness's replay). latentwatch-bench is not a dependency: its malloc interposer
        // (CMallocCounter) would be linked into the test bundle, where it crashes under the thread sanitizer.
        .testTarget(
            name: "LatentWatchCLITests",
            dependencies: [
                "LatentWatch", "LatentWatchTestSupport", "latentwatch", "latentwatch-eval", "latentwatch-streams",
                "latentwatch-loadtest", "latentwatch-fuzz",
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // Runs the real `latentwatch serve` process over real sockets.
        .testTarget(
            name: "LatentWatchSidecarTests",
            dependencies: [
                "LatentWatch", "LatentWatchClient", "LatentWatchWire", "LatentWatchTestSupport", "latentwatch",
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The C interface as hosts use it: C and C++ programs compiled with gcc/g++ against the header and the
        // built liblatentwatch.so, run as child processes. It does not depend on LatentWatchC (whose link flags
        // would come along); `swift build` and `swift test` build that product.
        .testTarget(
            name: "LatentWatchCAPITests",
            dependencies: ["LatentWatch", "LatentWatchTestSupport"],
            path: "Tests/CAPITests",
            exclude: ["c"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "LatentWatchTests",
            dependencies: [
                "LatentWatch",
                "LatentWatchLab",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)

// The upcoming-feature settings swift-log's manifest uses: `any` spelled out, members visible only through a
// module's own imports, imports internal unless marked `public` or `package`. On every target but the sidecar and
// the CLI, whose NIO and Hummingbird imports have not been sorted out yet.
for target in package.targets
where target.type != .system && !["LatentWatchSidecar", "LatentWatchCLI"].contains(target.name) {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    target.swiftSettings = settings
}
