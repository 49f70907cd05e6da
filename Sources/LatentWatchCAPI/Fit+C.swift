public import CLatentWatch
import LatentWatch

/// Activations borrowed from a C caller for the duration of `lw_fit`: read in batches, never copied whole.
struct BorrowedActivations: ActivationSource {
    let values: UnsafeBufferPointer<Float>
    let labels: [Int]?
    /// Regression targets, one per row, when the caller gave them.
    let targets: [Double]?
    let sampleShape: [Int]
    let count: Int
    var hasLabels: Bool { labels != nil }

    func forEachBatch(_ body: (ActivationBatch) throws -> Void) throws {
        let n = sampleShape.reduce(1, *)
        let batch = 4096
        var start = 0
        while start < count {
            let end = min(count, start + batch)
            let v = UnsafeBufferPointer(rebasing: values[(start * n)..<(end * n)])
            if let labels {
                try labels.withUnsafeBufferPointer { l in
                    try body(
                        ActivationBatch(
                            values: v,
                            count: end - start,
                            labels: UnsafeBufferPointer(rebasing: l[start..<end])
                        )
                    )
                }
            } else {
                try body(ActivationBatch(values: v, count: end - start, labels: nil))
            }
            start = end
        }
    }

    /// Checks an `lw_activations` struct and borrows its buffers.
    init(_ p: UnsafePointer<lw_activations>, name: String) throws(CallError) {
        var empty = lw_activations()
        empty.struct_size = 0
        let a = try readGrown(
            p,
            defaults: empty,
            minimum: MemoryLayout<lw_activations>.offset(of: \.targets)!,
            "lw_activations"
        )
        guard a.rank >= 1 && a.rank <= UInt32(LW_MAX_RANK) else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "\(name).rank is \(a.rank); it must be 1 to \(LW_MAX_RANK)")
        }
        let shape = withUnsafeBytes(of: a.shape) { raw in
            Array(raw.bindMemory(to: Int64.self).prefix(Int(a.rank)))
        }
        guard shape.allSatisfy({ $0 > 0 && $0 <= 1 << 31 }) else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "\(name).shape \(shape) has an entry that is not in 1...2^31")
        }
        var row = 1
        for v in shape {
            let (p, overflow) = row.multipliedReportingOverflow(by: Int(v))
            guard !overflow, p <= 1 << 31 else {
                throw CallError(
                    LW_ERR_INVALID_ARGUMENT,
                    "\(name).shape \(shape) has more than 2^31 elements per row"
                )
            }
            row = p
        }
        let count = try sizeArgument(a.count, "\(name).count")
        let length = try sizeArgument(a.length, "\(name).length")
        let (total, overflow) = count.multipliedReportingOverflow(by: row)
        guard count > 0, !overflow, total == length else {
            throw CallError(
                LW_ERR_SHAPE_MISMATCH,
                "\(name) has \(length) values; \(count) rows of shape \(shape) need \(count) × \(row)"
            )
        }
        guard let values = a.values else { throw .null("\(name).values") }
        try checkAligned(values, 4, "\(name).values")
        self.values = UnsafeBufferPointer(start: values, count: total)
        self.sampleShape = shape.map { Int($0) }
        self.count = count
        self.labels = a.labels.map { l in (0..<count).map { Int(l[$0]) } }
        if let t = a.targets {
            try checkAligned(t, 8, "\(name).targets")
            let targets = (0..<count).map { t[$0] }
            if let i = targets.firstIndex(where: { !$0.isFinite }) {
                throw CallError(LW_ERR_NON_FINITE, "\(name).targets[\(i)] is \(targets[i]); targets must be finite")
            }
            self.targets = targets
        } else {
            self.targets = nil
        }
    }
}

/// Bytes of `lw_fit_config` up to `mixture_seed`: what programs compiled before `calibrate_posterior` pass.
private let firstAppendedFitField = MemoryLayout<lw_fit_config>.offset(of: \.calibrate_posterior)!

@c(lw_fit_config_init)
public func lwFitConfigInit(_ config: UnsafeMutablePointer<lw_fit_config>?) {
    lwFitConfigInitSized(config, firstAppendedFitField)
}

@c(lw_fit_config_init_sized)
public func lwFitConfigInitSized(_ config: UnsafeMutablePointer<lw_fit_config>?, _ size: Int) {
    guard let config, size > 0 else { return }
    let d = FitConfiguration()
    var c = lw_fit_config()
    c.struct_size = UInt32(MemoryLayout<lw_fit_config>.size)
    c.pooling = LW_POOL_FLATTEN
    c.family = nil
    c.layer_name = nil
    c.l2_normalize = d.preparation.l2Normalize ? 1 : 0
    c.precision = LW_DTYPE_FLOAT32
    c.pca_components = 0
    c.pca_variance_fraction = 0
    c.calibration_fraction = d.calibrationFraction
    c.split_seed = d.splitSeed
    c.mixture_components = UInt32(d.mixture.components)
    c.fit_background = d.fitBackground ? 1 : 0
    c.mixture_seed = d.mixture.seed
    c.calibrate_posterior = d.calibratePosterior ? 1 : 0
    c.target_bins = 0
    c.neighbour_rows = 0
    c.neighbour_cells = 0
    c.neighbour_probes = 0
    c.neighbour_index = LW_NEIGHBOURS_AUTOMATIC
    store(c, to: config, size: UInt32(clamping: size))
}

@c(lw_activations_init)
public func lwActivationsInit(_ a: UnsafeMutablePointer<lw_activations>?) {
    guard let a else { return }
    a.pointee = lw_activations()
    a.pointee.struct_size = UInt32(MemoryLayout<lw_activations>.size)
}

/// The SDK's fit configuration from a C one.
func fitConfiguration(_ p: UnsafePointer<lw_fit_config>) throws(CallError) -> FitConfiguration {
    var defaults = lw_fit_config()
    lwFitConfigInitSized(&defaults, MemoryLayout<lw_fit_config>.size)
    let c = try readGrown(
        p,
        defaults: defaults,
        minimum: firstAppendedFitField,
        "lw_fit_config"
    )
    var f = FitConfiguration()
    f.calibratePosterior = try flag(c.calibrate_posterior, "calibrate_posterior")
    if let family = c.family { f.family = DensityFamilyName(String(cString: family)) }
    if let layer = c.layer_name { f.layerName = String(cString: layer) }
    switch c.pooling {
    case LW_POOL_FLATTEN: f.preparation.pooling = .flatten
    case LW_POOL_GLOBAL_AVERAGE: f.preparation.pooling = .globalAverage
    case LW_POOL_MEAN_TOKENS: f.preparation.pooling = .meanTokens
    default: throw CallError(LW_ERR_INVALID_ARGUMENT, "pooling \(c.pooling) is not one of LW_POOL_*")
    }
    f.preparation.l2Normalize = c.l2_normalize != 0
    if c.pca_components > 0 && c.pca_variance_fraction > 0 {
        throw CallError(LW_ERR_INVALID_CONFIGURATION, "set pca_components or pca_variance_fraction, not both")
    }
    if c.pca_components > 0 {
        f.preparation.projection = .components(Int(c.pca_components))
    } else if c.pca_variance_fraction != 0 {
        guard c.pca_variance_fraction > 0 && c.pca_variance_fraction <= 1 else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "pca_variance_fraction is \(c.pca_variance_fraction); it must be in (0, 1]"
            )
        }
        f.preparation.projection = .varianceFraction(c.pca_variance_fraction)
    }
    switch c.precision {
    case LW_DTYPE_FLOAT32: f.precision = .float32
    case LW_DTYPE_FLOAT16: f.precision = .float16
    default: throw CallError(LW_ERR_INVALID_ARGUMENT, "precision \(c.precision) is not LW_DTYPE_FLOAT32 or _FLOAT16")
    }
    guard c.calibration_fraction.isFinite && c.calibration_fraction >= 0 && c.calibration_fraction < 1 else {
        throw CallError(
            LW_ERR_INVALID_CONFIGURATION,
            "calibration_fraction is \(c.calibration_fraction); it must be in [0, 1)"
        )
    }
    f.calibrationFraction = c.calibration_fraction
    f.splitSeed = c.split_seed
    guard c.mixture_components >= 1 && c.mixture_components <= 4096 else {
        throw CallError(
            LW_ERR_INVALID_CONFIGURATION,
            "mixture_components is \(c.mixture_components); it must be 1 to 4096"
        )
    }
    f.mixture.components = Int(c.mixture_components)
    f.mixture.seed = c.mixture_seed
    f.fitBackground = c.fit_background != 0
    // target_bins was `reserved` before ABI version 5: only regression fits read it.
    if f.fitsTargets {
        guard c.target_bins <= 1000 else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "target_bins is \(c.target_bins); it must be 0 (10) to 1000"
            )
        }
        if c.target_bins > 0 { f.targetBinCount = Int(c.target_bins) }
    }
    guard c.neighbour_rows <= NeighbourOptions.maximumSampleSize, c.neighbour_cells <= NeighbourOptions.maximumCells,
        c.neighbour_probes <= NeighbourOptions.maximumCells
    else {
        throw CallError(
            LW_ERR_INVALID_CONFIGURATION,
            "neighbour_rows, _cells and _probes are \(c.neighbour_rows), \(c.neighbour_cells) and \(c.neighbour_probes); they must be 0 (the default) to \(NeighbourOptions.maximumSampleSize), \(NeighbourOptions.maximumCells) and \(NeighbourOptions.maximumCells)"
        )
    }
    let d = NeighbourOptions()
    let options = NeighbourOptions(
        sampleSize: c.neighbour_rows > 0 ? Int(c.neighbour_rows) : d.sampleSize,
        cells: c.neighbour_cells > 0 ? Int(c.neighbour_cells) : nil,
        probes: c.neighbour_probes > 0 ? Int(c.neighbour_probes) : d.probes,
        required: c.neighbour_index == LW_NEIGHBOURS_REQUIRED
    )
    switch c.neighbour_index {
    case LW_NEIGHBOURS_AUTOMATIC, LW_NEIGHBOURS_REQUIRED: f.neighbours = options
    case LW_NEIGHBOURS_OFF:
        guard c.neighbour_rows == 0, c.neighbour_cells == 0, c.neighbour_probes == 0 else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "neighbour_rows, _cells or _probes are set with neighbour_index LW_NEIGHBOURS_OFF"
            )
        }
        f.neighbours = nil
    default:
        throw CallError(
            LW_ERR_INVALID_CONFIGURATION,
            "neighbour_index \(c.neighbour_index) is not one of LW_NEIGHBOURS_*"
        )
    }
    return f
}

@c(lw_fit)
public func lwFit(
    _ train: UnsafePointer<lw_activations>?,
    _ calibration: UnsafePointer<lw_activations>?,
    _ config: UnsafePointer<lw_fit_config>?,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("out") }
        out.pointee = nil
        guard let train else { throw .null("train") }
        guard let config else { throw .null("config") }
        let cfg = try fitConfiguration(config)
        let source = try BorrowedActivations(train, name: "train")
        let held = try calibration.map { (c) throws(CallError) in try BorrowedActivations(c, name: "calibration") }
        if let held, held.sampleShape != source.sampleShape {
            throw CallError(
                LW_ERR_SHAPE_MISMATCH,
                "calibration rows have shape \(held.sampleShape); the training rows \(source.sampleShape)"
            )
        }
        try checkFitMemory(source, cfg)
        let regression = cfg.fitsTargets
        if regression && source.targets == nil {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "family '\(cfg.family)' needs train->targets (one finite target per row)"
            )
        }
        if !regression && (source.targets != nil || held?.targets != nil) {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "targets were given for family '\(cfg.family)'; they go with \"regression\" or \"regression-tied\""
            )
        }
        let model = try fitting("fitting") {
            if regression, let targets = source.targets {
                return try LatentModelFitter.fit(
                    source,
                    targets: targets,
                    calibration: held,
                    calibrationTargets: held?.targets,
                    configuration: cfg
                )
            }
            return try LatentModelFitter.fit(source, calibration: held, configuration: cfg)
        }
        out.pointee = HandleRegistry.shared.insert(ModelHandle(model), kind: .model)
    }
}

@c(lw_calibrate_jointly)
public func lwCalibrateJointly(
    _ models: UnsafePointer<OpaquePointer?>?,
    _ calibration: UnsafePointer<UnsafePointer<lw_activations>?>?,
    _ count: Int,
    _ carvedBy: UnsafePointer<lw_fit_config>?,
    _ statistic: Int32,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("out") }
        guard count >= 2, count <= Int(LW_MAX_LAYERS) else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "count is \(count); it must be 2 to \(LW_MAX_LAYERS)")
        }
        for i in 0..<count { out[i] = nil }
        guard let models else { throw .null("models") }
        guard let calibration else { throw .null("calibration") }
        let stat: JointCalibration.Statistic
        switch statistic {
        case LW_JOINT_CAUCHY: stat = .cauchy
        case LW_JOINT_FISHER: stat = .fisher
        default: throw CallError(LW_ERR_INVALID_ARGUMENT, "statistic \(statistic) is not one of LW_JOINT_*")
        }
        var fitted: [LatentModel] = []
        var sources: [any ActivationSource] = []
        for i in 0..<count {
            fitted.append(try ModelHandle.lookup(models[i]).model)
            guard let c = calibration[i] else { throw .null("calibration[\(i)]") }
            let source = try BorrowedActivations(c, name: "calibration[\(i)]")
            guard source.sampleShape.reduce(1, *) == fitted[i].inputCount else {
                throw CallError(
                    LW_ERR_SHAPE_MISMATCH,
                    "calibration[\(i)] rows have shape \(source.sampleShape); model \(i) ('\(fitted[i].layer)') "
                        + "expects \(fitted[i].inputShape)"
                )
            }
            sources.append(source)
        }
        let carve = try carvedBy.map { (c) throws(CallError) in try fitConfiguration(c) }
        let joint = try fitting("calibrating jointly") {
            try LatentModelFitter.calibrateJointly(fitted, calibration: sources, carvedBy: carve, statistic: stat)
        }
        for i in 0..<count { out[i] = HandleRegistry.shared.insert(ModelHandle(joint[i]), kind: .model) }
    }
}

/// Refuses a fit whose sufficient statistics could not fit in this machine's memory: two float64 D × D matrices
/// per class (or mixture component, or the background), D the dimension after pooling. Such a fit would
/// otherwise end the host process when the allocation fails.
func checkFitMemory(_ s: BorrowedActivations, _ cfg: FitConfiguration) throws(CallError) {
    let shape = s.sampleShape
    let d: Int
    switch cfg.preparation.pooling {
    case .globalAverage: d = shape.first ?? 1
    case .meanTokens: d = shape.last ?? 1
    default: d = shape.reduce(1, *)
    }
    let regression = cfg.fitsTargets
    let groups = (regression ? cfg.targetBinCount : (s.labels.map { Set($0).count } ?? cfg.mixture.components)) + 1
    let (dd, o1) = d.multipliedReportingOverflow(by: d)
    let (per, o2) = dd.multipliedReportingOverflow(by: 16)
    let (bytes, o3) = per.multipliedReportingOverflow(by: groups)
    guard !o1, !o2, !o3, bytes <= physicalMemory else {
        throw CallError(
            LW_ERR_FIT_FAILED,
            "fitting \(groups - 1) classes or components of dimension \(d) needs \(groups) × 2 matrices of "
                + "\(d) × \(d) doubles, more than this machine's \(physicalMemory >> 20) MiB. Pool the activations "
                + "(LW_POOL_GLOBAL_AVERAGE, LW_POOL_MEAN_TOKENS) or fit fewer classes"
        )
    }
}

func writeOptions(precision: Int32, level: Int32) throws(CallError) -> ModelFile.WriteOptions {
    var o = ModelFile.WriteOptions()
    switch precision {
    case 0: break
    case LW_DTYPE_FLOAT32: o.precision = .float32
    case LW_DTYPE_FLOAT16: o.precision = .float16
    default: throw CallError(LW_ERR_INVALID_ARGUMENT, "precision \(precision) is not 0 or an LW_DTYPE_FLOAT*")
    }
    if level != 0 {
        guard (1...22).contains(level) else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "compression_level \(level) is not 0 (default) or 1 to 22")
        }
        o.compressionLevel = level
    }
    return o
}

@c(lw_model_write)
public func lwModelWrite(
    _ model: OpaquePointer?,
    _ path: UnsafePointer<CChar>?,
    _ precision: Int32,
    _ compressionLevel: Int32
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try ModelHandle.lookup(model)
        let p = try String.argument(path, "path")
        let options = try writeOptions(precision: precision, level: compressionLevel)
        try sdk { () throws(LatentWatchError) in try ModelFile.write(h.model, to: p, options: options) }
    }
}

@c(lw_model_encode)
public func lwModelEncode(
    _ model: OpaquePointer?,
    _ precision: Int32,
    _ compressionLevel: Int32,
    _ buffer: UnsafeMutableRawPointer?,
    _ capacity: Int,
    _ length: UnsafeMutablePointer<Int>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try ModelHandle.lookup(model)
        guard let length else { throw .null("length") }
        let options = try writeOptions(precision: precision, level: compressionLevel)
        let bytes = try sdk { () throws(LatentWatchError) in try ModelFile.encode(h.model, options: options) }
        try copyOut(bytes, to: buffer, capacity: capacity, length: length, what: "the model file")
    }
}

@c(lw_calibrate_disagreement)
public func lwCalibrateDisagreement(
    _ model: OpaquePointer?,
    _ calibration: UnsafePointer<lw_activations>?,
    _ hostPredictions: UnsafePointer<Double>?,
    _ count: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("out") }
        out.pointee = nil
        let fitted = try ModelHandle.lookup(model).model
        guard let calibration else { throw .null("calibration") }
        guard let hostPredictions else { throw .null("host_predictions") }
        try checkAligned(hostPredictions, 8, "host_predictions")
        let source = try BorrowedActivations(calibration, name: "calibration")
        guard source.sampleShape.reduce(1, *) == fitted.inputCount else {
            throw CallError(
                LW_ERR_SHAPE_MISMATCH,
                "calibration rows have shape \(source.sampleShape); the model ('\(fitted.layer)') expects "
                    + "\(fitted.inputShape)"
            )
        }
        guard count == source.count else {
            throw CallError(
                LW_ERR_SHAPE_MISMATCH,
                "count is \(count); calibration holds \(source.count) rows (one host prediction per row)"
            )
        }
        let predictions = (0..<count).map { hostPredictions[$0] }
        let calibrated = try fitting("calibrating the disagreement") {
            try LatentModelFitter.calibrateDisagreement(fitted, calibration: source, hostPredictions: predictions)
        }
        out.pointee = HandleRegistry.shared.insert(ModelHandle(calibrated), kind: .model)
    }
}
