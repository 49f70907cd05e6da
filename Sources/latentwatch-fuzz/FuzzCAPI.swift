import CLatentWatch
import LatentWatchCAPI

/// The input read as a little program's operands; past the end every read is zero.
struct FuzzBytes {
    let bytes: [UInt8]
    var at = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func u8() -> UInt8 {
        guard at < bytes.count else { return 0 }
        defer { at += 1 }
        return bytes[at]
    }

    mutating func u16() -> Int { Int(u8()) | Int(u8()) << 8 }

    /// A float from four bytes: any bit pattern, NaN and infinities included.
    mutating func float() -> Float {
        Float(bitPattern: UInt32(u8()) | UInt32(u8()) << 8 | UInt32(u8()) << 16 | UInt32(u8()) << 24)
    }

    var rest: ArraySlice<UInt8> { bytes[min(at, bytes.count)...] }
}

/// The C interface's entry points that take buffers and lengths, called as a C host would: every buffer is
/// allocated at exactly the length the call declares (so AddressSanitizer reports any read past it), lengths and
/// counts disagree with the model at will, pointers are NULL at will, values are any bit pattern. Every call must
/// return a status; the handles made at start-up must stay usable.
enum FuzzCAPI {
    /// Two small models (4 and 3 inputs, 3 classes) fitted through `lw_fit` once, and an inline monitor of both.
    nonisolated(unsafe) static let fixture: (models: [OpaquePointer], monitor: OpaquePointer) = {
        var models: [OpaquePointer] = []
        for dim in [4, 3] {
            var values: [Float] = []
            var labels: [Int64] = []
            for i in 0..<90 {
                labels.append(Int64(i % 3))
                for j in 0..<dim { values.append(Float((i * 7 + j * 13) % 17) / 17 + Float(i % 3 == j % 3 ? 2 : 0)) }
            }
            var a = lw_activations()
            lw_activations_init(&a)
            a.rank = 1
            a.shape.0 = Int64(dim)
            a.count = 90
            a.length = values.count
            var config = lw_fit_config()
            lw_fit_config_init_sized(&config, MemoryLayout<lw_fit_config>.size)
            var model: OpaquePointer?
            let status = values.withUnsafeBufferPointer { v in
                labels.withUnsafeBufferPointer { l in
                    a.values = v.baseAddress
                    a.labels = l.baseAddress
                    return lw_fit(&a, nil, &config, &model)
                }
            }
            guard status == LW_OK, let model else {
                fatalError("fixture fit failed: \(String(cString: lw_last_error()))")
            }
            models.append(model)
        }
        var config = lw_monitor_config()
        lw_monitor_config_init_sized(&config, MemoryLayout<lw_monitor_config>.size)
        config.layer_count = 2
        var monitor: OpaquePointer?
        let handles: [OpaquePointer?] = models
        let status = handles.withUnsafeBufferPointer { m in
            config.models = m.baseAddress
            return lw_monitor_create(&config, &monitor)
        }
        guard status == LW_OK, let monitor else { fatalError("fixture monitor failed") }
        return (models, monitor)
    }()

    static func run(_ bytes: [UInt8]) {
        var r = FuzzBytes(bytes)
        switch r.u8() % 5 {
        case 0: loadBytes(Array(r.rest))
        case 1: score(&r)
        case 2: assess(&r)
        case 3: fit(&r)
        default: statistics(Array(r.rest))
        }
        // The fixture is unharmed: a valid input is still assessed.
        let zeros = [Float](repeating: 0, count: 4)
        var info = lw_model_info()
        info.struct_size = UInt32(MemoryLayout<lw_model_info>.size)
        var s = lw_scores()
        s.struct_size = UInt32(MemoryLayout<lw_scores>.size)
        guard lw_model_get_info(fixture.models[0], &info) == LW_OK,
            lw_model_score(fixture.models[0], zeros, 4, &s) == LW_OK
        else { fatalError("the fixture model stopped working: \(String(cString: lw_last_error()))") }
    }

    /// Statistics file bytes of any content: statistics that load are described, encoded, merged with themselves
    /// (refused: their rows overlap) and, when a row has at most 256 elements, fitted on a fixed calibration
    /// pattern; the model is scored once. Everything is freed.
    static func statistics(_ b: [UInt8]) {
        var stats: OpaquePointer?
        let status = b.withUnsafeBytes { lw_statistics_load_bytes($0.baseAddress, b.count, &stats) }
        guard status == LW_OK, let stats else { return }
        defer { _ = lw_statistics_free(stats) }
        var info = lw_statistics_info()
        info.struct_size = UInt32(MemoryLayout<lw_statistics_info>.size)
        guard lw_statistics_get_info(stats, &info) == LW_OK else { return }
        var length = 0
        _ = lw_statistics_encode(stats, nil, 0, &length)
        _ = lw_statistics_merge(stats, stats)
        let shape = withUnsafeBytes(of: info.input_shape) {
            Array($0.bindMemory(to: Int64.self).prefix(Int(info.input_rank)))
        }
        let n = shape.reduce(1) { $0 * Int($1) }
        guard n >= 1, n <= 256 else { return }
        let values = (0..<(8 * n)).map { Float($0 % 7) - 3 }
        var a = lw_activations()
        lw_activations_init(&a)
        a.rank = info.input_rank
        a.shape = info.input_shape
        a.count = 8
        a.length = values.count
        var model: OpaquePointer?
        // Mixture statistics start EM; a round runs an E-step on the 8 rows and an M-step with it.
        values.withUnsafeBufferPointer { v in
            a.values = v.baseAddress
            var round: OpaquePointer?
            var step: OpaquePointer?
            var next: OpaquePointer?
            if lw_mixture_start(stats, &round) == LW_OK { _ = lw_statistics_free(round) }
            if lw_mixture_expectation(stats, &a, 0, &step) == LW_OK {
                if lw_mixture_advance(stats, step, &next) == LW_OK { _ = lw_statistics_free(next) }
                _ = lw_statistics_free(step)
            }
        }
        let fitted = values.withUnsafeBufferPointer { v in
            a.values = v.baseAddress
            return lw_statistics_fit(stats, &a, &model)
        }
        guard fitted == LW_OK, let model else { return }
        var scores = lw_scores()
        scores.struct_size = UInt32(MemoryLayout<lw_scores>.size)
        _ = values.withUnsafeBufferPointer { lw_model_score(model, $0.baseAddress, n, &scores) }
        _ = lw_model_free(model)
    }

    /// Model bytes of any content; a model that loads is described and scored, then freed.
    static func loadBytes(_ b: [UInt8]) {
        var model: OpaquePointer?
        let status = b.withUnsafeBytes { lw_model_load_bytes($0.baseAddress, b.count, &model) }
        guard status == LW_OK, let model else { return }
        var info = lw_model_info()
        info.struct_size = UInt32(MemoryLayout<lw_model_info>.size)
        if lw_model_get_info(model, &info) == LW_OK, info.input_count <= 1 << 16 {
            let x = [Float](repeating: 0.5, count: Int(info.input_count))
            var s = lw_scores()
            s.struct_size = UInt32(MemoryLayout<lw_scores>.size)
            _ = lw_model_score(model, x, x.count, &s)
        }
        var n = 0
        _ = lw_model_class_labels(model, nil, 0, &n)
        _ = lw_model_free(model)
    }

    /// One or a batch of inputs of any length and values against a fixture model.
    static func score(_ r: inout FuzzBytes) {
        let model = fixture.models[Int(r.u8() % 2)]
        let count = Int(r.u8() % 5)
        let length = r.u16() % 64
        let x = UnsafeMutablePointer<Float>.allocate(capacity: max(1, length))
        defer { x.deallocate() }
        for i in 0..<length { x[i] = r.float() }
        let nullRow = r.u8() & 1 == 1
        var s = lw_scores()
        s.struct_size = UInt32(r.u8() & 1 == 1 ? 8 : MemoryLayout<lw_scores>.size)
        _ = lw_model_score(model, nullRow ? nil : x, length, &s)
        let columns = UnsafeMutablePointer<Double>.allocate(capacity: max(1, count))
        let status = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, count))
        defer {
            columns.deallocate()
            status.deallocate()
        }
        var c = lw_score_columns()
        c.struct_size = UInt32(MemoryLayout<lw_score_columns>.size)
        c.surprise = columns
        c.status = status
        _ = lw_model_score_batch(model, nullRow ? nil : x, length, count, &c)
    }

    /// An `lw_inputs` of any shape, element type and values given to the fixture monitor.
    static func assess(_ r: inout FuzzBytes) {
        var inputs = lw_inputs()
        lw_inputs_init(&inputs)
        let layerCount = Int(r.u8() % 4)
        inputs.layer_count = UInt32(layerCount)
        inputs.dtype = Int32(r.u8() % 4)
        let count = Int(r.u8() % 3)
        let width = inputs.dtype == LW_DTYPE_FLOAT16 ? 2 : 4
        var buffers: [UnsafeMutableRawPointer?] = []
        var lengths: [Int] = []
        var allocations: [UnsafeMutableRawPointer] = []
        for _ in 0..<layerCount {
            let n = Int(r.u8() % 12)
            let flags = r.u8()
            // Sometimes one byte off the element alignment (the library must refuse it, not read it).
            let offset = flags % 8 == 1 ? 1 : 0
            let b = UnsafeMutableRawPointer.allocate(byteCount: max(1, n * width + offset), alignment: 4)
            allocations.append(b)
            for i in 0..<(n * width) { (b + offset).storeBytes(of: r.u8(), toByteOffset: i, as: UInt8.self) }
            buffers.append(flags % 8 == 0 ? nil : b + offset)
            lengths.append(n)
        }
        defer { for b in allocations { b.deallocate() } }
        var outputs: UnsafeMutablePointer<Float>?
        if r.u8() % 4 == 0 {
            let n = Int(r.u8() % 8)
            outputs = .allocate(capacity: max(1, n))
            for i in 0..<n { outputs![i] = r.float() }
            inputs.outputs = UnsafePointer(outputs)
            inputs.outputs_length = n
        }
        defer { outputs?.deallocate() }
        let id: [CChar] = (0..<Int(r.u8() % 24)).map { _ in CChar(bitPattern: r.u8() | 1) } + [0]
        let op = r.u8() % 3
        let stride = MemoryLayout<lw_assessment>.size
        let out = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * stride, alignment: 8)
        defer { out.deallocate() }
        for k in 0..<max(1, count) {
            (out + k * stride).bindMemory(to: lw_assessment.self, capacity: 1).pointee.struct_size = UInt32(stride)
        }
        let a = out.assumingMemoryBound(to: lw_assessment.self)
        buffers.map { UnsafeRawPointer($0) }.withUnsafeBufferPointer { layers in
            lengths.withUnsafeBufferPointer { lens in
                inputs.layers = layerCount == 0 ? nil : layers.baseAddress
                inputs.lengths = layerCount == 0 ? nil : lens.baseAddress
                id.withUnsafeBufferPointer { rid in
                    switch op {
                    case 0: _ = lw_monitor_assess(fixture.monitor, &inputs, rid.baseAddress, a)
                    case 1: _ = lw_monitor_assess_batch(fixture.monitor, &inputs, count, nil, a)
                    default:
                        var accepted: Int32 = 0
                        _ = lw_monitor_submit(fixture.monitor, &inputs, rid.baseAddress, &accepted)
                    }
                }
            }
        }
    }

    /// `lw_fit` on activations of any shape, count, declared length and labels, with any configuration.
    static func fit(_ r: inout FuzzBytes) {
        var a = lw_activations()
        lw_activations_init(&a)
        a.rank = UInt32(r.u8() % 4)
        var row = 1
        withUnsafeMutableBytes(of: &a.shape) { raw in
            let shape = raw.bindMemory(to: Int64.self)
            for k in 0..<Int(min(a.rank, 3)) {
                // Mostly small entries; sometimes any 64-bit value (products that overflow, negatives).
                if r.u8() % 8 == 0 {
                    var v: UInt64 = 0
                    for _ in 0..<8 { v = v << 8 | UInt64(r.u8()) }
                    shape[k] = Int64(bitPattern: v)
                } else {
                    shape[k] = Int64(Int8(bitPattern: r.u8()))
                }
                row = row.multipliedReportingOverflow(by: max(0, Int(truncatingIfNeeded: shape[k]))).partialValue
            }
        }
        a.count = Int(r.u8() % 48)
        let declared = a.count * min(max(row, 0), 64) + Int(Int8(bitPattern: r.u8() % 4 == 0 ? r.u8() : 0))
        let length = max(0, min(declared, 4096))
        let values = UnsafeMutablePointer<Float>.allocate(capacity: max(1, length))
        defer { values.deallocate() }
        for i in 0..<length { values[i] = r.u8() % 16 == 0 ? r.float() : Float(r.u8()) / 32 }
        a.values = UnsafePointer(values)
        a.length = length
        let labels = UnsafeMutablePointer<Int64>.allocate(capacity: max(1, a.count))
        defer { labels.deallocate() }
        for i in 0..<a.count { labels[i] = Int64(r.u8() % 4) }
        if r.u8() % 4 != 0 { a.labels = UnsafePointer(labels) }
        var config = lw_fit_config()
        lw_fit_config_init_sized(&config, MemoryLayout<lw_fit_config>.size)
        let families = ["gda", "tied", "gmm-full", "gmm-diag", "bogus", ""]
        let family = families[Int(r.u8()) % families.count]
        config.pooling = Int32(r.u8() % 4)
        config.l2_normalize = Int32(r.u8() % 2)
        config.pca_components = UInt32(r.u8() % 6)
        config.calibration_fraction = [0.2, 0, 0.5, 0.99, -1, .nan][Int(r.u8()) % 6]
        config.mixture_components = UInt32(r.u8() % 5)
        config.precision = Int32(r.u8() % 3)
        var model: OpaquePointer?
        family.withCString { f in
            config.family = f
            _ = lw_fit(&a, nil, &config, &model)
        }
        if let model { _ = lw_model_free(model) }
    }
}
