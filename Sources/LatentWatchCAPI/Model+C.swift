public import CLatentWatch
import LatentWatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The object behind an `lw_model` handle: the model and the C strings `lw_model_get_info` hands out, which
/// live as long as the handle's object.
final class ModelHandle {
    let model: LatentModel
    let layer: UnsafeMutablePointer<CChar>
    let family: UnsafeMutablePointer<CChar>
    let notes: UnsafeMutablePointer<CChar>

    init(_ model: LatentModel) {
        self.model = model
        layer = strdup(model.layer)
        family = strdup(model.family)
        notes = strdup(model.fitNotes)
    }

    deinit {
        free(layer)
        free(family)
        free(notes)
    }

    static func lookup(_ handle: OpaquePointer?) throws(CallError) -> ModelHandle {
        try HandleRegistry.shared.lookup(handle, as: ModelHandle.self, kind: .model)
    }

    /// This thread's scoring workspace for the model behind `handle`.
    func workspace(_ handle: OpaquePointer, state: CallState) -> ScoringWorkspace {
        let key = HandleRegistry.key(handle)
        if let ws = state.workspaces[key] { return ws }
        state.trimCaches()
        let ws = model.makeWorkspace()
        state.workspaces[key] = ws
        return ws
    }
}

/// Copies a struct the library filled into the caller's, at most `size` bytes (the caller's `struct_size`): a
/// program compiled against an older header with a shorter struct gets the fields it knows. Its `struct_size`
/// (the first field of every such struct) then says how many bytes the library wrote.
func store<T>(_ value: T, to p: UnsafeMutablePointer<T>, size: UInt32) {
    var v = value
    let n = min(Int(size), MemoryLayout<T>.size)
    withUnsafeBytes(of: &v) { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: n) }
    if n >= 4 { UnsafeMutableRawPointer(p).storeBytes(of: UInt32(n), as: UInt32.self) }
}

/// A caller's struct read over its defaults: `defaults` overwritten by the first `struct_size` bytes at `p`. Structs
/// only grow at their end, so a program compiled against an older header passes a shorter struct; at least
/// `minimum` bytes (the fields every version has) are required.
func readGrown<T>(_ p: UnsafePointer<T>, defaults: T, minimum: Int, _ name: String) throws(CallError) -> T {
    let given = Int(UnsafeRawPointer(p).load(as: UInt32.self))
    try checkStructSize(UInt32(clamping: given), minimum, name)
    var c = defaults
    withUnsafeMutableBytes(of: &c) { dst in
        dst.copyMemory(from: UnsafeRawBufferPointer(start: p, count: min(given, dst.count)))
    }
    return c
}

/// A 0/1 switch of a C struct: 1 is true, 0 false, anything else refused.
func flag(_ value: Int32, _ name: String) throws(CallError) -> Bool {
    guard value == 0 || value == 1 else {
        throw CallError(LW_ERR_INVALID_ARGUMENT, "\(name) is \(value); it must be 1 (on, the default) or 0")
    }
    return value == 1
}

/// The machine's physical memory in bytes: what a fit or a queue can never exceed.
let physicalMemory: Int = {
    let pages = sysconf(Int32(_SC_PHYS_PAGES))
    let size = sysconf(Int32(_SC_PAGESIZE))
    return pages > 0 && size > 0 ? pages.multipliedReportingOverflow(by: size).partialValue : Int.max
}()

/// A `size_t` argument as a non-negative Int (values above INT64_MAX are refused, not wrapped).
func sizeArgument(_ v: Int, _ name: String) throws(CallError) -> Int {
    guard v >= 0 else {
        throw CallError(LW_ERR_INVALID_ARGUMENT, "\(name) is \(UInt(bitPattern: v)), beyond what any buffer can hold")
    }
    return v
}

/// Refuses a buffer that is not aligned to `alignment` bytes (its element type's). The name is built only for the
/// error, so the check allocates nothing on the hot path.
func checkAligned(
    _ p: UnsafeRawPointer,
    _ alignment: Int,
    _ name: @autoclosure () -> String
) throws(CallError) {
    guard Int(bitPattern: p) % alignment == 0 else {
        throw CallError(LW_ERR_INVALID_ARGUMENT, "\(name()) is not aligned to \(alignment) bytes")
    }
}

/// Checks a caller-owned struct's size field against the size this library needs.
func checkStructSize(_ size: UInt32, _ needed: Int, _ name: String) throws(CallError) {
    guard Int(size) >= needed else {
        throw CallError(
            LW_ERR_INVALID_ARGUMENT,
            "\(name).struct_size is \(size); this library needs at least \(needed). Set it to sizeof(\(name)) "
                + "(the *_init functions do)"
        )
    }
}

@c(lw_abi_version)
public func lwABIVersion() -> UInt32 { UInt32(LW_ABI_VERSION) }

nonisolated(unsafe) private let versionString: UnsafeMutablePointer<CChar> = strdup(LatentWatchVersion.string)

@c(lw_version)
public func lwVersion() -> UnsafePointer<CChar> { UnsafePointer(versionString) }

@c(lw_last_error)
public func lwLastError() -> UnsafePointer<CChar> { UnsafePointer(CallState.current.message) }

@c(lw_last_status)
public func lwLastStatus() -> Int32 { CallState.current.status }

@c(lw_model_load)
public func lwModelLoad(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    load(path: path, into: out, kind: .model) { (p) throws(LatentWatchError) in
        ModelHandle(try ModelFile.read(contentsOf: p))
    }
}

@c(lw_model_load_bytes)
public func lwModelLoadBytes(
    _ bytes: UnsafeRawPointer?,
    _ length: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    load(bytes: bytes, length: length, into: out, kind: .model) { (b) throws(LatentWatchError) in
        ModelHandle(try ModelFile.decode(b))
    }
}

/// `lw_*_load`: a new handle of `kind` for what `make` builds from the file at `path`, in `*out` (NULL on failure).
func load(
    path: UnsafePointer<CChar>?,
    into out: UnsafeMutablePointer<OpaquePointer?>?,
    kind: HandleRegistry.Kind,
    _ make: (String) throws(LatentWatchError) -> AnyObject
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("out") }
        out.pointee = nil
        let p = try String.argument(path, "path")
        let object = try sdk { () throws(LatentWatchError) in try make(p) }
        out.pointee = HandleRegistry.shared.insert(object, kind: kind)
    }
}

/// `lw_*_load_bytes`: a new handle of `kind` for what `make` builds from `length` bytes, in `*out`.
func load(
    bytes: UnsafeRawPointer?,
    length: Int,
    into out: UnsafeMutablePointer<OpaquePointer?>?,
    kind: HandleRegistry.Kind,
    _ make: ([UInt8]) throws(LatentWatchError) -> AnyObject
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("out") }
        out.pointee = nil
        guard let bytes else { throw .null("bytes") }
        let b = Array(UnsafeRawBufferPointer(start: bytes, count: try sizeArgument(length, "length")))
        let object = try sdk { () throws(LatentWatchError) in try make(b) }
        out.pointee = HandleRegistry.shared.insert(object, kind: kind)
    }
}

/// `lw_*_encode`: sets `*length` to the size of `bytes` and copies them into `buffer` when `capacity` suffices
/// (`LW_ERR_BUFFER_TOO_SMALL` otherwise); `what` names them in the error.
func copyOut(
    _ bytes: [UInt8],
    to buffer: UnsafeMutableRawPointer?,
    capacity: Int,
    length: UnsafeMutablePointer<Int>,
    what: String
) throws(CallError) {
    length.pointee = bytes.count
    guard let buffer, capacity >= bytes.count else {
        throw CallError(LW_ERR_BUFFER_TOO_SMALL, "\(what) needs \(bytes.count) bytes; capacity is \(capacity)")
    }
    bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
}

@c(lw_model_free)
public func lwModelFree(_ model: OpaquePointer?) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let model else { return }
        _ = try HandleRegistry.shared.remove(model, as: ModelHandle.self, kind: .model)
    }
}

@c(lw_model_get_info)
public func lwModelGetInfo(_ model: OpaquePointer?, _ info: UnsafeMutablePointer<lw_model_info>?) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try ModelHandle.lookup(model)
        guard let info else { throw .null("info") }
        try checkStructSize(
            info.pointee.struct_size,
            MemoryLayout<lw_model_info>.offset(of: \.posterior_temperature)!,
            "lw_model_info"
        )
        let m = h.model
        var i = lw_model_info()
        i.struct_size = UInt32(MemoryLayout<lw_model_info>.size)
        let shape = m.inputShape
        i.input_rank = UInt32(min(shape.count, Int(LW_MAX_RANK)))
        withUnsafeMutableBytes(of: &i.input_shape) { raw in
            let s = raw.bindMemory(to: Int64.self)
            for (k, v) in shape.prefix(Int(LW_MAX_RANK)).enumerated() { s[k] = Int64(v) }
        }
        i.input_count = UInt64(m.inputCount)
        i.latent_dimension = UInt64(m.latentDimension)
        i.component_count = UInt64(m.componentCount)
        i.calibration_count = UInt64(m.calibrationCount)
        i.fit_samples = UInt64(m.fitSamples)
        i.fingerprint = m.fingerprint ?? 0
        i.has_fingerprint = m.fingerprint == nil ? 0 : 1
        i.precision = m.precision == .float16 ? LW_DTYPE_FLOAT16 : LW_DTYPE_FLOAT32
        i.has_class_labels = m.classLabels == nil ? 0 : 1
        i.layer = UnsafePointer(h.layer)
        i.family = UnsafePointer(h.family)
        i.fit_notes = UnsafePointer(h.notes)
        i.posterior_temperature = m.posteriorTemperature ?? 0
        i.joint_count = UInt64(m.jointCalibration?.count ?? 0)
        i.target_bins = UInt64(m.targetBinCount ?? 0)
        i.interval_count = UInt64(m.intervalCalibration?.count ?? 0)
        i.disagreement_count = UInt64(m.disagreementCalibrationCount)
        i.neighbour_count = UInt64(m.neighbourCount)
        store(i, to: info, size: info.pointee.struct_size)
    }
}

@c(lw_model_class_labels)
public func lwModelClassLabels(
    _ model: OpaquePointer?,
    _ labels: UnsafeMutablePointer<Int64>?,
    _ capacity: Int,
    _ count: UnsafeMutablePointer<Int>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try ModelHandle.lookup(model)
        guard let count else { throw .null("count") }
        let capacity = try sizeArgument(capacity, "capacity")
        let l = h.model.classLabels ?? []
        count.pointee = l.count
        guard !l.isEmpty else { return }
        guard let labels, capacity >= l.count else {
            throw CallError(LW_ERR_BUFFER_TOO_SMALL, "the model has \(l.count) class labels; capacity is \(capacity)")
        }
        for (k, v) in l.enumerated() { labels[k] = Int64(v) }
    }
}

@c(lw_model_score)
public func lwModelScore(
    _ model: OpaquePointer?,
    _ activation: UnsafePointer<Float>?,
    _ length: Int,
    _ out: UnsafeMutablePointer<lw_scores>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try ModelHandle.lookup(model)
        guard let activation else { throw .null("activation") }
        try checkAligned(activation, 4, "activation")
        guard let out else { throw .null("out") }
        try checkStructSize(
            out.pointee.struct_size,
            MemoryLayout<lw_scores>.offset(of: \.prediction)!,
            "lw_scores"
        )
        let m = h.model
        guard length == m.inputCount else {
            throw CallError(
                LW_ERR_SHAPE_MISMATCH,
                "activation has \(length) elements; layer '\(m.layer)' takes \(m.inputCount) (shape \(m.inputShape))"
            )
        }
        let ws = h.workspace(model!, state: CallState.current)
        let s: LatentScores
        do throws(LatentWatchError) {
            s = try m.score(UnsafeBufferPointer(start: activation, count: length), workspace: ws)
        } catch {
            throw CallError(error)
        }
        store(cScores(s, model: m), to: out, size: out.pointee.struct_size)
    }
}

func cScores(_ s: LatentScores, model m: LatentModel) -> lw_scores {
    var r = lw_scores()
    r.struct_size = UInt32(MemoryLayout<lw_scores>.size)
    r.surprise = s.surprise
    r.surprise_p_value = m.pValue(.surprise, s.surprise) ?? .nan
    r.entropy = s.entropy
    r.entropy_p_value = m.pValue(.entropy, s.entropy) ?? .nan
    r.log_density = s.logDensity
    r.max_posterior = s.maxPosterior
    r.mahalanobis = s.mahalanobis
    r.relative_mahalanobis = s.relativeMahalanobis
    r.predicted_component = Int64(s.predictedComponent)
    r.predicted_label = s.predictedLabel.map(Int64.init) ?? -1
    r.prediction = s.prediction ?? .nan
    r.predictive_spread = s.predictiveSpread ?? .nan
    r.spread_p_value = s.predictiveSpread.flatMap { m.pValue(.spread, $0) } ?? .nan
    r.neighbour_distance = s.neighbourDistance ?? .nan
    r.epistemic_p_value = m.epistemicPValue(s) ?? .nan
    return r
}

@c(lw_model_prediction_interval)
public func lwModelPredictionInterval(
    _ model: OpaquePointer?,
    _ prediction: Double,
    _ spread: Double,
    _ level: Double,
    _ low: UnsafeMutablePointer<Double>?,
    _ high: UnsafeMutablePointer<Double>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try ModelHandle.lookup(model)
        guard let low else { throw .null("low") }
        guard let high else { throw .null("high") }
        guard level > 0, level < 1 else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "level is \(level); it must be in (0, 1)")
        }
        guard prediction.isFinite, spread.isFinite, spread >= 0 else {
            throw CallError(
                LW_ERR_INVALID_ARGUMENT,
                "prediction \(prediction) and spread \(spread) must be finite (and the spread at least 0)"
            )
        }
        let m = h.model
        guard let interval = m.predictionInterval(prediction: prediction, spread: spread, level: level) else {
            throw CallError(
                LW_ERR_INVALID_ARGUMENT,
                "the model of layer '\(m.layer)' (\(m.family)) has no prediction interval; fit a regression family "
                    + "with calibration targets"
            )
        }
        low.pointee = interval.lowerBound
        high.pointee = interval.upperBound
    }
}

@c(lw_model_score_batch)
public func lwModelScoreBatch(
    _ model: OpaquePointer?,
    _ activations: UnsafePointer<Float>?,
    _ length: Int,
    _ count: Int,
    _ columns: UnsafeMutablePointer<lw_score_columns>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try ModelHandle.lookup(model)
        guard let columns else { throw .null("columns") }
        // A struct of ABI version 4 ends at status: its prediction columns read as NULL.
        let c = try readGrown(
            UnsafePointer(columns),
            defaults: lw_score_columns(),
            minimum: MemoryLayout<lw_score_columns>.offset(of: \.prediction)!,
            "lw_score_columns"
        )
        let m = h.model
        let count = try sizeArgument(count, "count")
        let length = try sizeArgument(length, "length")
        let (total, overflow) = count.multipliedReportingOverflow(by: m.inputCount)
        guard !overflow, length == total else {
            throw CallError(
                LW_ERR_SHAPE_MISMATCH,
                "batch has \(length) elements; \(count) activations of layer '\(m.layer)' need \(count) × "
                    + "\(m.inputCount)"
            )
        }
        guard count > 0 else { return }
        guard let activations else { throw .null("activations") }
        try checkAligned(activations, 4, "activations")
        let ws = h.workspace(model!, state: CallState.current)
        let results = m.scoreBatch(UnsafeBufferPointer(start: activations, count: length), count: count, workspace: ws)
        for (i, r) in results.enumerated() {
            switch r {
            case .success(let s):
                let v = cScores(s, model: m)
                c.surprise?[i] = v.surprise
                c.surprise_p_value?[i] = v.surprise_p_value
                c.entropy?[i] = v.entropy
                c.entropy_p_value?[i] = v.entropy_p_value
                c.log_density?[i] = v.log_density
                c.max_posterior?[i] = v.max_posterior
                c.mahalanobis?[i] = v.mahalanobis
                c.relative_mahalanobis?[i] = v.relative_mahalanobis
                c.predicted_label?[i] = v.predicted_label
                c.status?[i] = LW_OK
                c.prediction?[i] = v.prediction
                c.predictive_spread?[i] = v.predictive_spread
                c.spread_p_value?[i] = v.spread_p_value
                c.neighbour_distance?[i] = v.neighbour_distance
                c.epistemic_p_value?[i] = v.epistemic_p_value
            case .failure(let e):
                for col in [
                    c.surprise, c.surprise_p_value, c.entropy, c.entropy_p_value, c.log_density, c.max_posterior,
                    c.mahalanobis, c.relative_mahalanobis,
                ] {
                    col?[i] = .nan
                }
                for col in [
                    c.prediction, c.predictive_spread, c.spread_p_value, c.neighbour_distance, c.epistemic_p_value,
                ] {
                    col?[i] = .nan
                }
                c.predicted_label?[i] = -1
                c.status?[i] = CallError.status(of: e.code)
            }
        }
    }
}
