public import CLatentWatch
import Dispatch
import LatentWatch
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The object behind an `lw_monitor` handle: the monitor, the task running its `run()`, and the counts
/// `lw_monitor_get_stats` and `lw_monitor_flush` read.
final class MonitorHandle: Sendable {
    let monitor: Monitor
    let inputCounts: [Int]
    let outputCount: Int
    /// A recorder that stores outputs: every assessed input must carry them.
    let recordsOutputs: Bool
    let background: Bool
    let recorder: ActivationRecorder?
    let finished = DispatchSemaphore(value: 0)
    let assessed = Atomic<UInt64>(0)
    let refused = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
    let accepted = Atomic<Int>(0)
    let alertsDelivered: Counter

    /// A count shared with the monitor's tasks (its handler and sinks are closures that outlive one call).
    final class Counter: Sendable {
        let value = Atomic<UInt64>(0)
    }

    init(
        configuration: MonitorConfiguration,
        sinks: [any AlertSink],
        logger: Logger,
        alertsDelivered: Counter
    ) throws(LatentWatchError) {
        let assessedBox = Counter()
        monitor = try Monitor(configuration: configuration, sinks: sinks, logger: logger) { _ in
            assessedBox.value.add(1, ordering: .relaxed)
        }
        backgroundAssessed = assessedBox
        inputCounts = configuration.layers.map(\.model.inputCount)
        outputCount = configuration.outputs?.count ?? 0
        if case .background = configuration.mode { background = true } else { background = false }
        recorder = configuration.recorder
        recordsOutputs = configuration.recorder != nil && outputCount > 0
        self.alertsDelivered = alertsDelivered
        let monitor = monitor
        let finished = finished
        Task.detached {
            try? await monitor.run()
            finished.signal()
        }
    }

    /// Inputs the background worker assessed (counted by the monitor's assessment handler).
    let backgroundAssessed: Counter

    static func lookup(_ handle: OpaquePointer?) throws(CallError) -> MonitorHandle {
        try HandleRegistry.shared.lookup(handle, as: MonitorHandle.self, kind: .monitor)
    }

    /// This thread's buffers for the monitor behind `handle`.
    func scratch(_ handle: OpaquePointer, state: CallState) -> MonitorScratch {
        let key = HandleRegistry.key(handle)
        if let s = state.scratch[key] { return s }
        state.trimCaches()
        let s = MonitorScratch(layers: inputCounts.count)
        state.scratch[key] = s
        return s
    }

    /// Checks an `lw_inputs` struct for `count` rows and points this thread's buffers at its layers.
    func bind(_ p: UnsafePointer<lw_inputs>?, count: Int, scratch s: MonitorScratch) throws(CallError) -> Bool {
        guard let p else { throw .null("inputs") }
        let i = p.pointee
        try checkStructSize(i.struct_size, MemoryLayout<lw_inputs>.size, "lw_inputs")
        guard Int(i.layer_count) == inputCounts.count else {
            throw CallError(
                LW_ERR_SHAPE_MISMATCH,
                "inputs.layer_count is \(i.layer_count); the monitor has \(inputCounts.count) layers"
            )
        }
        guard let layers = i.layers else { throw .null("inputs.layers") }
        guard let lengths = i.lengths else { throw .null("inputs.lengths") }
        let half: Bool
        switch i.dtype {
        case LW_DTYPE_FLOAT32: half = false
        case LW_DTYPE_FLOAT16: half = true
        default:
            throw CallError(LW_ERR_INVALID_ARGUMENT, "inputs.dtype \(i.dtype) is not LW_DTYPE_FLOAT32 or _FLOAT16")
        }
        for l in 0..<inputCounts.count {
            let (need, overflow) = count.multipliedReportingOverflow(by: inputCounts[l])
            guard !overflow, lengths[l] == need else {
                throw CallError(
                    LW_ERR_SHAPE_MISMATCH,
                    "layer \(l) ('\(monitor.layerNames[l])') has \(lengths[l]) elements; \(count) input(s) of "
                        + "\(inputCounts[l]) need \(count) × \(inputCounts[l])"
                )
            }
            guard let b = layers[l] else { throw .null("inputs.layers[\(l)]") }
            try checkAligned(b, half ? 2 : 4, "inputs.layers[\(l)]")
            if half {
                s.f16[l] = UnsafeBufferPointer(start: b.assumingMemoryBound(to: Float16.self), count: need)
            } else {
                s.f32[l] = UnsafeBufferPointer(start: b.assumingMemoryBound(to: Float.self), count: need)
            }
        }
        if let o = i.outputs {
            guard outputCount > 0 else {
                throw CallError(
                    LW_ERR_INVALID_ARGUMENT,
                    "outputs were passed, but the monitor was not configured for them (lw_monitor_config.outputs)"
                )
            }
            let (need, overflow) = count.multipliedReportingOverflow(by: outputCount)
            guard !overflow, i.outputs_length == need else {
                throw CallError(
                    LW_ERR_SHAPE_MISMATCH,
                    "inputs.outputs_length is \(UInt(bitPattern: i.outputs_length)); \(count) input(s) of "
                        + "\(outputCount) outputs need \(count) × \(outputCount)"
                )
            }
            try checkAligned(o, 4, "inputs.outputs")
            let outputs = UnsafeBufferPointer(start: o, count: need)
            if let k = outputs.firstIndex(where: { !$0.isFinite }) {
                throw CallError(LW_ERR_NON_FINITE, "output \(k) is \(outputs[k]); NaN/Inf outputs are not assessed")
            }
            s.outputs = outputs
        } else {
            guard i.outputs_length == 0 else { throw .null("inputs.outputs (outputs_length is not 0)") }
            guard !recordsOutputs else {
                throw CallError(
                    LW_ERR_INVALID_ARGUMENT,
                    "this monitor records the classifier's outputs with every input (record_path and outputs are "
                        + "configured); pass them in inputs.outputs"
                )
            }
            s.outputs = nil
        }
        return half
    }
}

/// One thread's buffers for one monitor: the layer buffer arrays handed to the SDK (reused, so a call
/// allocates nothing) and the assessments it fills.
final class MonitorScratch {
    var f32: [UnsafeBufferPointer<Float>]
    var f16: [UnsafeBufferPointer<Float16>]
    var outputs: UnsafeBufferPointer<Float>?
    var assessment = Assessment()
    var batch: [Assessment] = []

    init(layers: Int) {
        f32 = Array(repeating: UnsafeBufferPointer(start: nil, count: 0), count: layers)
        f16 = Array(repeating: UnsafeBufferPointer(start: nil, count: 0), count: layers)
    }

    func buffers(half: Bool) -> ActivationBuffers { half ? .float16(f16) : .float32(f32) }

    /// Drops the caller's pointers once the call is done.
    func release() {
        for l in f32.indices {
            f32[l] = UnsafeBufferPointer(start: nil, count: 0)
            f16[l] = UnsafeBufferPointer(start: nil, count: 0)
        }
        outputs = nil
    }
}

/// A pointer the monitor's sink task may carry (the host promised it stays valid while the monitor lives).
struct CallbackContext: @unchecked Sendable {
    let function: lw_alert_callback
    let context: UnsafeMutableRawPointer?
}

@c(lw_monitor_config_init)
public func lwMonitorConfigInit(_ config: UnsafeMutablePointer<lw_monitor_config>?) {
    lwMonitorConfigInitSized(config, firstAppendedMonitorField)
}

@c(lw_monitor_config_init_sized)
public func lwMonitorConfigInitSized(_ config: UnsafeMutablePointer<lw_monitor_config>?, _ size: Int) {
    guard let config, size > 0 else { return }
    let p = AlertPolicy()
    let w = AlertPolicy.WindowPolicy()
    var c = lw_monitor_config()
    c.struct_size = UInt32(MemoryLayout<lw_monitor_config>.size)
    c.primary_layer = -1
    c.input_alpha = p.inputAlpha
    c.aleatoric_alpha = p.aleatoricAlpha ?? 0
    c.window_length = UInt32(w.length)
    c.window_cooldown = 0
    c.window_level = w.windowLevel
    c.shift = LW_SHIFT_ANYTIME
    c.fusion = LW_FUSION_AUTOMATIC
    c.shift_delta = 0.01
    c.shift_mean_run_length = 10_000
    c.mode = LW_MODE_INLINE
    c.overflow = LW_OVERFLOW_DROP_NEWEST
    c.queue_capacity = 4096
    c.batch_size = 32
    c.outputs = LW_OUTPUTS_NONE
    c.output_count = 0
    c.log_level = LW_LOG_OFF
    c.sink_buffer_capacity = 4096
    c.record_path = nil
    c.record_rate = 1
    c.shift_betting = LW_BETTING_MIXTURE
    c.calibration_correction = p.correctForCalibrationSet ? 1 : 0
    c.shift_jump_rate = p.jumpRate
    c.shift_reference =
        p.shiftReference == .calibrationAndStream
        ? LW_SHIFT_REFERENCE_CALIBRATION_AND_STREAM : LW_SHIFT_REFERENCE_CALIBRATION_SET
    c.reserved = 0
    c.interval_level = p.predictionIntervalLevel ?? 0
    c.disagreement_alpha = p.disagreementAlpha ?? 0
    store(c, to: config, size: UInt32(clamping: size))
}

private func level(_ alpha: Double, _ name: String) throws(CallError) -> Double {
    guard alpha > 0 && alpha < 1 else {
        throw CallError(LW_ERR_INVALID_CONFIGURATION, "\(name) is \(alpha); it must be in (0, 1)")
    }
    return alpha
}

/// Bytes of `lw_monitor_config` up to `record_rate`: what programs compiled before `shift_betting` pass.
private let firstAppendedMonitorField = MemoryLayout<lw_monitor_config>.offset(of: \.shift_betting)!

/// The SDK's monitor configuration and sinks from a C configuration.
func monitorParts(
    _ p: UnsafePointer<lw_monitor_config>,
    delivered: MonitorHandle.Counter
) throws(CallError) -> (MonitorConfiguration, [any AlertSink], Logger) {
    var defaults = lw_monitor_config()
    lwMonitorConfigInitSized(&defaults, MemoryLayout<lw_monitor_config>.size)
    let c = try readGrown(p, defaults: defaults, minimum: firstAppendedMonitorField, "lw_monitor_config")
    guard c.layer_count >= 1 && c.layer_count <= UInt32(LW_MAX_LAYERS) else {
        throw CallError(
            LW_ERR_INVALID_CONFIGURATION,
            "layer_count is \(c.layer_count); it must be 1 to \(LW_MAX_LAYERS)"
        )
    }
    guard let models = c.models else { throw .null("config.models") }
    var layers: [MonitoredLayer] = []
    for l in 0..<Int(c.layer_count) {
        guard let m = models[l] else { throw .null("config.models[\(l)]") }
        let h = try ModelHandle.lookup(m)
        let name = c.layer_names?[l].map { String(cString: $0) }
        layers.append(MonitoredLayer(name: name, model: h.model))
    }
    guard c.primary_layer == -1 || (c.primary_layer >= 0 && c.primary_layer < Int32(c.layer_count)) else {
        throw CallError(LW_ERR_INVALID_CONFIGURATION, "primary_layer \(c.primary_layer) is not -1 or a layer index")
    }
    var policy = AlertPolicy()
    policy.inputAlpha = try level(c.input_alpha, "input_alpha")
    policy.aleatoricAlpha = c.aleatoric_alpha == 0 ? nil : try level(c.aleatoric_alpha, "aleatoric_alpha")
    if c.window_length == 0 {
        policy.window = nil
    } else {
        guard c.window_length <= 1_000_000 && c.window_cooldown <= 1_000_000 else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "window_length and window_cooldown must be at most 1,000,000 inputs"
            )
        }
        policy.window = AlertPolicy.WindowPolicy(
            length: Int(c.window_length),
            windowLevel: try level(c.window_level, "window_level"),
            cooldown: c.window_cooldown == 0 ? nil : Int(c.window_cooldown)
        )
    }
    switch c.shift {
    case LW_SHIFT_OFF: policy.shift = nil
    case LW_SHIFT_ANYTIME: policy.shift = .anytime(delta: try level(c.shift_delta, "shift_delta"))
    case LW_SHIFT_CHANGE_DETECTION:
        guard c.shift_mean_run_length.isFinite && c.shift_mean_run_length >= 1 else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "shift_mean_run_length is \(c.shift_mean_run_length); it must be a finite number of at least 1"
            )
        }
        policy.shift = .changeDetection(meanRunLength: c.shift_mean_run_length)
    default: throw CallError(LW_ERR_INVALID_ARGUMENT, "shift \(c.shift) is not one of LW_SHIFT_*")
    }
    switch c.shift_betting {
    case LW_BETTING_MIXTURE: policy.shiftBetting = .mixture
    case LW_BETTING_POWER: policy.shiftBetting = .power
    case LW_BETTING_LINEAR: policy.shiftBetting = .linear
    default:
        throw CallError(LW_ERR_INVALID_ARGUMENT, "shift_betting \(c.shift_betting) is not one of LW_BETTING_*")
    }
    guard c.shift_jump_rate >= 0 && c.shift_jump_rate <= 1 else {
        throw CallError(
            LW_ERR_INVALID_CONFIGURATION,
            "shift_jump_rate is \(c.shift_jump_rate); it must be in [0, 1] (default 0.001)"
        )
    }
    policy.jumpRate = c.shift_jump_rate
    policy.predictionIntervalLevel = c.interval_level == 0 ? nil : try level(c.interval_level, "interval_level")
    policy.disagreementAlpha =
        c.disagreement_alpha == 0 ? nil : try level(c.disagreement_alpha, "disagreement_alpha")
    policy.correctForCalibrationSet = try flag(c.calibration_correction, "calibration_correction")
    guard c.reserved == 0 else {
        throw CallError(LW_ERR_INVALID_ARGUMENT, "reserved is \(c.reserved); it must be 0")
    }
    switch c.shift_reference {
    case LW_SHIFT_REFERENCE_CALIBRATION_AND_STREAM: policy.shiftReference = .calibrationAndStream
    case LW_SHIFT_REFERENCE_CALIBRATION_SET: policy.shiftReference = .calibrationSet
    default:
        throw CallError(
            LW_ERR_INVALID_ARGUMENT,
            "shift_reference \(c.shift_reference) is not one of LW_SHIFT_REFERENCE_*"
        )
    }
    switch c.fusion {
    case LW_FUSION_BONFERRONI: policy.fusion = .bonferroni
    case LW_FUSION_CAUCHY: policy.fusion = .cauchy
    case LW_FUSION_AUTOMATIC: policy.fusion = .automatic
    case LW_FUSION_CALIBRATED: policy.fusion = .calibrated
    default: throw CallError(LW_ERR_INVALID_ARGUMENT, "fusion \(c.fusion) is not one of LW_FUSION_*")
    }
    let mode: MonitorMode
    switch c.mode {
    case LW_MODE_INLINE: mode = .inline
    case LW_MODE_BACKGROUND:
        let overflow: OverflowPolicy
        switch c.overflow {
        case LW_OVERFLOW_DROP_NEWEST: overflow = .dropNewest
        case LW_OVERFLOW_REJECT: overflow = .reject
        default: throw CallError(LW_ERR_INVALID_ARGUMENT, "overflow \(c.overflow) is not one of LW_OVERFLOW_*")
        }
        guard c.queue_capacity >= 1 && c.queue_capacity <= 1 << 24 else {
            throw CallError(LW_ERR_INVALID_CONFIGURATION, "queue_capacity is \(c.queue_capacity); it must be 1 to 2^24")
        }
        guard c.batch_size >= 1 && c.batch_size <= min(c.queue_capacity, 4096) else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "batch_size is \(c.batch_size); it must be 1 to min(queue_capacity, 4096)"
            )
        }
        let perInput = layers.reduce(0) { $0 + $1.model.inputCount }
        let (bytes, wraps) = perInput.multipliedReportingOverflow(by: Int(c.queue_capacity) * 4)
        guard !wraps, bytes <= physicalMemory / 2 else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "a queue of \(c.queue_capacity) inputs of \(perInput) floats needs more than half of this machine's "
                    + "\(physicalMemory >> 20) MiB; lower queue_capacity"
            )
        }
        mode = .background(capacity: Int(c.queue_capacity), batchSize: Int(c.batch_size), whenFull: overflow)
    default: throw CallError(LW_ERR_INVALID_ARGUMENT, "mode \(c.mode) is not one of LW_MODE_*")
    }
    var outputs: (kind: ModelOutputKind, count: Int)?
    switch c.outputs {
    case LW_OUTPUTS_NONE: outputs = nil
    case LW_OUTPUTS_LOGITS, LW_OUTPUTS_PROBABILITIES:
        guard c.output_count >= 1 else {
            throw CallError(LW_ERR_INVALID_CONFIGURATION, "outputs are configured but output_count is 0")
        }
        outputs = (c.outputs == LW_OUTPUTS_LOGITS ? .logits : .probabilities, Int(c.output_count))
    case LW_OUTPUTS_PREDICTION:
        guard c.output_count == 1 else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "output_count is \(c.output_count); LW_OUTPUTS_PREDICTION takes one prediction per input"
            )
        }
        outputs = (.prediction, 1)
    default: throw CallError(LW_ERR_INVALID_ARGUMENT, "outputs \(c.outputs) is not one of LW_OUTPUTS_*")
    }
    let logLevel: Logger.Level?
    switch c.log_level {
    case LW_LOG_OFF: logLevel = nil
    case LW_LOG_ERROR: logLevel = .error
    case LW_LOG_WARNING: logLevel = .warning
    case LW_LOG_INFO: logLevel = .info
    case LW_LOG_DEBUG: logLevel = .debug
    default: throw CallError(LW_ERR_INVALID_ARGUMENT, "log_level \(c.log_level) is not one of LW_LOG_*")
    }
    var logger: Logger
    if let logLevel {
        logger = Logger(label: "latentwatch") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = logLevel
    } else {
        logger = Logger(label: "latentwatch") { _ in SwiftLogNoOpLogHandler() }
    }
    guard c.sink_buffer_capacity >= 1 && c.sink_buffer_capacity <= 1 << 20 else {
        throw CallError(LW_ERR_INVALID_CONFIGURATION, "sink_buffer_capacity must be 1 to 2^20 alerts")
    }
    for l in layers where l.model.calibrationCount == 0 {
        throw CallError(
            LW_ERR_INVALID_CONFIGURATION,
            "the model of layer '\(l.name)' has no calibration scores, so its p-values would always be 1 and it "
                + "could never raise an alert; fit it with calibration rows or calibration_fraction > 0"
        )
    }
    if c.record_path != nil, outputs != nil, case .background = mode {
        throw CallError(
            LW_ERR_INVALID_CONFIGURATION,
            "a background monitor cannot record outputs (its queue carries activations only); record inline, or "
                + "configure no outputs"
        )
    }
    var sinks: [any AlertSink] = []
    if let f = c.on_alert {
        sinks.append(callbackSink(CallbackContext(function: f, context: c.on_alert_context), delivered: delivered))
    }
    if let path = c.alerts_path { sinks.append(JSONLinesSink(path: String(cString: path))) }
    if let logLevel { sinks.append(LoggerSink(logger: logger, level: max(logLevel, .warning))) }
    var recorder: ActivationRecorder?
    if let path = c.record_path {
        guard c.record_rate > 0 && c.record_rate <= 1 else {
            throw CallError(LW_ERR_INVALID_CONFIGURATION, "record_rate is \(c.record_rate); it must be in (0, 1]")
        }
        do throws(LatentWatchError) {
            recorder = try ActivationRecorder(
                configuration: .init(
                    path: String(cString: path),
                    layers: layers.map { RecordedLayer(name: $0.name, shape: $0.model.inputShape) },
                    outputCount: outputs?.count ?? 0,
                    sampling: c.record_rate == 1 ? .all : .rate(c.record_rate)
                )
            )
        } catch { throw CallError(error) }
    }

    let configuration = MonitorConfiguration(
        layers: layers,
        policy: policy,
        mode: mode,
        primaryLayer: c.primary_layer == -1 ? nil : Int(c.primary_layer),
        sinkBufferCapacity: Int(c.sink_buffer_capacity),
        recorder: recorder,
        outputs: outputs
    )
    return (configuration, sinks, logger)
}

nonisolated(unsafe) private let kindNames: [Alert.Kind: UnsafeMutablePointer<CChar>] = Dictionary(
    uniqueKeysWithValues: Alert.Kind.allCases.map { ($0, strdup($0.rawValue)) }
)

private func kindCode(_ k: Alert.Kind) -> Int32 {
    switch k {
    case .input: return LW_ALERT_INPUT
    case .aleatoric: return LW_ALERT_ALEATORIC
    case .window: return LW_ALERT_WINDOW
    case .shift: return LW_ALERT_SHIFT
    case .resolved: return LW_ALERT_RESOLVED
    case .disagreement: return LW_ALERT_DISAGREEMENT
    }
}

/// A sink that hands every alert to the host's C callback, on the monitor's sink task.
func callbackSink(_ target: CallbackContext, delivered: MonitorHandle.Counter) -> CallbackSink {
    CallbackSink(name: "c-callback") { alert in
        let state = CallState.current
        state.inCallback = true
        defer { state.inCallback = false }
        var a = lw_alert()
        a.struct_size = UInt32(MemoryLayout<lw_alert>.size)
        a.kind = kindCode(alert.kind)
        a.kind_name = UnsafePointer(kindNames[alert.kind]!)
        a.index = Int64(alert.index)
        a.p_value = alert.pValue ?? .nan
        a.episode = alert.episode.map(kindCode) ?? 0
        a.time = alert.time
        alert.detail.withCString { detail in
            a.detail = detail
            if let id = alert.requestID {
                id.withCString { rid in
                    a.request_id = rid
                    target.function(&a, target.context)
                }
            } else {
                target.function(&a, target.context)
            }
        }
        delivered.value.add(1, ordering: .relaxed)
    }
}

@c(lw_monitor_create)
public func lwMonitorCreate(
    _ config: UnsafePointer<lw_monitor_config>?,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("out") }
        out.pointee = nil
        guard let config else { throw .null("config") }
        let delivered = MonitorHandle.Counter()
        let (configuration, sinks, logger) = try monitorParts(config, delivered: delivered)
        let h: MonitorHandle
        do throws(LatentWatchError) {
            h = try MonitorHandle(
                configuration: configuration,
                sinks: sinks,
                logger: logger,
                alertsDelivered: delivered
            )
        } catch { throw CallError(error) }
        out.pointee = HandleRegistry.shared.insert(h, kind: .monitor)
    }
}

@c(lw_inputs_init)
public func lwInputsInit(_ inputs: UnsafeMutablePointer<lw_inputs>?) {
    guard let inputs else { return }
    inputs.pointee = lw_inputs()
    inputs.pointee.struct_size = UInt32(MemoryLayout<lw_inputs>.size)
    inputs.pointee.dtype = LW_DTYPE_FLOAT32
}

/// Bytes of `lw_assessment` up to its regression fields: what programs compiled before ABI version 5 pass.
let assessmentWithoutPredictions = MemoryLayout<lw_assessment>.offset(of: \.prediction)!
/// Bytes of `lw_assessment` up to its prediction interval.
let assessmentWithoutInterval = MemoryLayout<lw_assessment>.offset(of: \.interval_low)!
/// Bytes of `lw_assessment` up to its host-prediction fields.
let assessmentWithoutHostPrediction = MemoryLayout<lw_assessment>.offset(of: \.host_prediction)!

/// Writes an assessment into a caller's struct of `size` bytes (at least ``assessmentWithoutPredictions``); the
/// regression fields only when the struct has them.
func fill(_ out: UnsafeMutablePointer<lw_assessment>, from a: Assessment, size: Int) {
    out.pointee.struct_size = UInt32(min(size, MemoryLayout<lw_assessment>.size))
    out.pointee.flags = UInt32(a.flags.rawValue)
    out.pointee.index = Int64(a.index)
    out.pointee.fused_p_value = a.fusedPValue
    out.pointee.entropy = a.entropy
    out.pointee.entropy_p_value = a.entropyPValue ?? .nan
    out.pointee.shift_log_evidence = a.shiftLogEvidence ?? .nan
    out.pointee.predicted_label = a.predictedLabel.map(Int64.init) ?? -1
    out.pointee.output_predicted = a.output.map { Int64($0.predicted) } ?? -1
    out.pointee.output_confidence = a.output?.confidence ?? .nan
    out.pointee.output_entropy = a.output?.entropy ?? .nan
    out.pointee.output_energy = a.output?.energy ?? .nan
    let n = min(a.layers.count, Int(LW_MAX_LAYERS))
    out.pointee.layer_count = UInt32(n)
    withUnsafeMutableBytes(of: &out.pointee.layers) { raw in
        let layers = raw.bindMemory(to: lw_layer_assessment.self)
        for l in 0..<n {
            layers[l] = lw_layer_assessment(surprise: a.layers[l].surprise, p_value: a.layers[l].pValue)
        }
    }
    if size >= assessmentWithoutInterval {
        out.pointee.prediction = a.prediction ?? .nan
        out.pointee.predictive_spread = a.predictiveSpread ?? .nan
        out.pointee.spread_p_value = a.spreadPValue ?? .nan
    }
    if size >= assessmentWithoutHostPrediction {
        out.pointee.interval_low = a.predictionInterval?.lowerBound ?? .nan
        out.pointee.interval_high = a.predictionInterval?.upperBound ?? .nan
    }
    if size >= MemoryLayout<lw_assessment>.size {
        out.pointee.host_prediction = a.hostPrediction ?? .nan
        out.pointee.disagreement = a.disagreement ?? .nan
        out.pointee.disagreement_p_value = a.disagreementPValue ?? .nan
    }
}

/// Counts refused inputs (all of a refused batch) and passes the error on.
func refused(_ h: MonitorHandle, _ e: CallError, inputs: Int = 1) -> CallError {
    h.refused.add(UInt64(inputs), ordering: .relaxed)
    return e
}

@c(lw_monitor_assess)
public func lwMonitorAssess(
    _ monitor: OpaquePointer?,
    _ inputs: UnsafePointer<lw_inputs>?,
    _ requestID: UnsafePointer<CChar>?,
    _ out: UnsafeMutablePointer<lw_assessment>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try MonitorHandle.lookup(monitor)
        guard let out else { throw .null("out") }
        let size = Int(out.pointee.struct_size)
        try checkStructSize(out.pointee.struct_size, assessmentWithoutPredictions, "lw_assessment")
        let s = h.scratch(monitor!, state: CallState.current)
        defer { s.release() }
        let half: Bool
        do throws(CallError) { half = try h.bind(inputs, count: 1, scratch: s) } catch { throw refused(h, error) }
        let id = requestID.map { String(cString: $0) }
        do throws(LatentWatchError) {
            try h.monitor.assess(s.buffers(half: half), outputs: s.outputs, requestID: id, into: &s.assessment)
        } catch {
            throw refused(h, CallError(error))
        }
        h.assessed.add(1, ordering: .relaxed)
        fill(out, from: s.assessment, size: size)
    }
}

@c(lw_monitor_assess_batch)
public func lwMonitorAssessBatch(
    _ monitor: OpaquePointer?,
    _ inputs: UnsafePointer<lw_inputs>?,
    _ count: Int,
    _ requestIDs: UnsafePointer<UnsafePointer<CChar>?>?,
    _ out: UnsafeMutablePointer<lw_assessment>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try MonitorHandle.lookup(monitor)
        guard count > 0 else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "count is \(UInt(bitPattern: count)); it must be 1 to 2^63 - 1")
        }
        guard let out else { throw .null("out") }
        let stride = Int(out.pointee.struct_size)
        guard stride % 8 == 0, Int(bitPattern: out) % 8 == 0 else {
            throw CallError(
                LW_ERR_INVALID_ARGUMENT,
                "out is not aligned to 8 bytes, or out[0].struct_size (the stride) \(stride) is not a multiple of 8"
            )
        }
        try checkStructSize(out.pointee.struct_size, assessmentWithoutPredictions, "lw_assessment")
        let s = h.scratch(monitor!, state: CallState.current)
        defer { s.release() }
        let half: Bool
        do throws(CallError) { half = try h.bind(inputs, count: count, scratch: s) } catch {
            throw refused(h, error, inputs: count)
        }
        let ids = requestIDs.map { p in (0..<count).map { p[$0].map { String(cString: $0) } } }
        do throws(LatentWatchError) {
            try h.monitor.assessBatch(
                s.buffers(half: half),
                count: count,
                outputs: s.outputs,
                requestIDs: ids,
                into: &s.batch
            )
        } catch {
            throw refused(h, CallError(error), inputs: count)
        }
        h.assessed.add(UInt64(count), ordering: .relaxed)
        let raw = UnsafeMutableRawPointer(out)
        for r in 0..<count {
            let entry = (raw + r * stride).assumingMemoryBound(to: lw_assessment.self)
            fill(entry, from: s.batch[r], size: stride)
            entry.pointee.struct_size = UInt32(stride)
        }
    }
}

@c(lw_monitor_submit)
public func lwMonitorSubmit(
    _ monitor: OpaquePointer?,
    _ inputs: UnsafePointer<lw_inputs>?,
    _ requestID: UnsafePointer<CChar>?,
    _ accepted: UnsafeMutablePointer<Int32>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        accepted?.pointee = 0
        let h = try MonitorHandle.lookup(monitor)
        guard h.background else {
            throw CallError(
                LW_ERR_WRONG_STATE,
                "lw_monitor_submit needs a monitor in background mode; this one is inline (use lw_monitor_assess)"
            )
        }
        let s = h.scratch(monitor!, state: CallState.current)
        defer { s.release() }
        let half: Bool
        do throws(CallError) { half = try h.bind(inputs, count: 1, scratch: s) } catch { throw refused(h, error) }
        guard s.outputs == nil else {
            throw refused(h, CallError(LW_ERR_INVALID_ARGUMENT, "the background queue does not carry outputs"))
        }
        let id = requestID.map { String(cString: $0) }
        let queued: Bool
        do throws(LatentWatchError) {
            queued = try h.monitor.submit(s.buffers(half: half), requestID: id)
        } catch {
            if error.code == .queueFull {
                h.dropped.add(1, ordering: .relaxed)
            } else {
                h.refused.add(1, ordering: .relaxed)
            }
            throw CallError(error)
        }
        if queued {
            h.accepted.add(1, ordering: .releasing)
        } else {
            h.dropped.add(1, ordering: .relaxed)
        }
        accepted?.pointee = queued ? 1 : 0
    }
}

@c(lw_monitor_flush)
public func lwMonitorFlush(_ monitor: OpaquePointer?, _ timeoutMilliseconds: UInt32) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try MonitorHandle.lookup(monitor)
        guard !CallState.current.inCallback else {
            throw CallError(LW_ERR_WRONG_STATE, "lw_monitor_flush was called from an alert callback")
        }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMilliseconds) * 1_000_000
        while true {
            let accepted = h.accepted.load(ordering: .acquiring)
            let idle = h.monitor.backgroundCompleted >= accepted && h.monitor.pendingAlerts == 0
            if idle { return }
            if DispatchTime.now().uptimeNanoseconds >= deadline {
                throw CallError(
                    LW_ERR_WRONG_STATE,
                    "flush timed out after \(timeoutMilliseconds) ms with \(h.monitor.queuedInputs) inputs queued and "
                        + "\(h.monitor.pendingAlerts) alerts undelivered; nothing was lost"
                )
            }
            usleep(200)
        }
    }
}

@c(lw_monitor_get_stats)
public func lwMonitorGetStats(_ monitor: OpaquePointer?, _ stats: UnsafeMutablePointer<lw_monitor_stats>?) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try MonitorHandle.lookup(monitor)
        guard let stats else { throw .null("stats") }
        // Programs compiled before `replacements` pass a struct that ends at `alerts`.
        try checkStructSize(
            stats.pointee.struct_size,
            MemoryLayout<lw_monitor_stats>.offset(of: \.replacements)!,
            "lw_monitor_stats"
        )
        var s = lw_monitor_stats()
        s.struct_size = UInt32(MemoryLayout<lw_monitor_stats>.size)
        s.layer_count = UInt32(h.inputCounts.count)
        s.assessed = h.assessed.load(ordering: .relaxed) + h.backgroundAssessed.value.load(ordering: .relaxed)
        s.refused = h.refused.load(ordering: .relaxed)
        s.dropped = h.dropped.load(ordering: .relaxed)
        s.queued = UInt64(h.monitor.queuedInputs)
        s.alerts = h.alertsDelivered.value.load(ordering: .relaxed)
        s.replacements = UInt64(h.monitor.modelGeneration)
        store(s, to: stats, size: stats.pointee.struct_size)
    }
}

@c(lw_monitor_replace_models)
public func lwMonitorReplaceModels(
    _ monitor: OpaquePointer?,
    _ models: UnsafePointer<OpaquePointer?>?,
    _ layerCount: UInt32
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try MonitorHandle.lookup(monitor)
        guard let models else { throw .null("models") }
        let names = h.monitor.layerNames
        guard Int(layerCount) == names.count else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "layer_count is \(layerCount); the monitor has \(names.count) layers (\(names))"
            )
        }
        var layers: [MonitoredLayer] = []
        for l in 0..<names.count {
            guard let m = models[l] else { throw .null("models[\(l)]") }
            let model = try ModelHandle.lookup(m).model
            guard model.calibrationCount > 0 else {
                throw CallError(
                    LW_ERR_INVALID_CONFIGURATION,
                    "the model for layer '\(names[l])' has no calibration scores, so its p-values would always be 1"
                )
            }
            layers.append(MonitoredLayer(name: names[l], model: model))
        }
        try sdk { () throws(LatentWatchError) in try h.monitor.replaceModels(layers) }
    }
}

@c(lw_monitor_close)
public func lwMonitorClose(_ monitor: OpaquePointer?) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let monitor else { return }
        guard !CallState.current.inCallback else {
            throw CallError(LW_ERR_WRONG_STATE, "lw_monitor_close was called from an alert callback")
        }
        let h = try HandleRegistry.shared.remove(monitor, as: MonitorHandle.self, kind: .monitor)
        h.monitor.shutDown()
        h.finished.wait()
        if let r = h.recorder {
            try sdk { () throws(LatentWatchError) in try r.close() }
        }
    }
}
