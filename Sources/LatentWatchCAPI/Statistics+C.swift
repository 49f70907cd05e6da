public import CLatentWatch
import Foundation
import LatentWatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The object behind an `lw_statistics` handle: the statistics (merged in place, under their lock) and the strings
/// `lw_statistics_get_info` hands out.
final class StatisticsHandle: @unchecked Sendable {
    let statistics: LockedValue<ActivationStatistics>
    let layer: UnsafeMutablePointer<CChar>
    let family: UnsafeMutablePointer<CChar>

    init(_ s: ActivationStatistics) {
        statistics = LockedValue(s)
        layer = strdup(s.configuration.layerName)
        family = strdup(s.configuration.family.rawValue)
    }

    deinit {
        free(layer)
        free(family)
    }

    static func lookup(_ handle: OpaquePointer?) throws(CallError) -> StatisticsHandle {
        try HandleRegistry.shared.lookup(handle, as: StatisticsHandle.self, kind: .statistics)
    }

    /// A copy of the statistics as they are now.
    var value: ActivationStatistics { statistics.withLock { $0 } }
}

@c(lw_statistics_gather)
public func lwStatisticsGather(
    _ rows: UnsafePointer<lw_activations>?,
    _ config: UnsafePointer<lw_fit_config>?,
    _ firstIndex: Int64,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("out") }
        out.pointee = nil
        guard let rows else { throw .null("rows") }
        guard let config else { throw .null("config") }
        let cfg = try fitConfiguration(config)
        guard cfg.family == .gda || cfg.family == .tied else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "family '\(cfg.family)' needs passes over the rows, so it cannot be fitted from statistics; use gda or "
                    + "tied, or lw_fit"
            )
        }
        guard firstIndex >= 0 else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "first_index is \(firstIndex); it must be at least 0")
        }
        let source = try BorrowedActivations(rows, name: "rows")
        guard source.labels != nil else { throw .null("rows.labels (gda and tied need class labels)") }
        try checkFitMemory(source, cfg)
        let stats = try fitting("gathering statistics") {
            try LatentModelFitter.statistics(of: source, configuration: cfg, firstIndex: Int(firstIndex))
        }
        out.pointee = HandleRegistry.shared.insert(StatisticsHandle(stats), kind: .statistics)
    }
}

@c(lw_statistics_merge)
public func lwStatisticsMerge(_ statistics: OpaquePointer?, _ other: OpaquePointer?) -> Int32 {
    CallState.run { () throws(CallError) in
        let into = try StatisticsHandle.lookup(statistics)
        let from = try StatisticsHandle.lookup(other).value
        // Merged into a copy, stored only on success: a refused merge changes nothing.
        try into.statistics.withLock { (s) throws(CallError) in
            var merged = s
            try fitting("merging") { try merged.merge(from) }
            s = merged
        }
    }
}

@c(lw_statistics_load)
public func lwStatisticsLoad(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    load(path: path, into: out, kind: .statistics) { (p) throws(LatentWatchError) in
        StatisticsHandle(try StatisticsFile.read(contentsOf: p))
    }
}

@c(lw_statistics_load_bytes)
public func lwStatisticsLoadBytes(
    _ bytes: UnsafeRawPointer?,
    _ length: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    load(bytes: bytes, length: length, into: out, kind: .statistics) { (b) throws(LatentWatchError) in
        StatisticsHandle(try StatisticsFile.decode(b))
    }
}

@c(lw_statistics_write)
public func lwStatisticsWrite(_ statistics: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
    CallState.run { () throws(CallError) in
        let s = try StatisticsHandle.lookup(statistics).value
        let p = try String.argument(path, "path")
        try sdk { () throws(LatentWatchError) in try StatisticsFile.write(s, to: p) }
    }
}

@c(lw_statistics_encode)
public func lwStatisticsEncode(
    _ statistics: OpaquePointer?,
    _ buffer: UnsafeMutableRawPointer?,
    _ capacity: Int,
    _ length: UnsafeMutablePointer<Int>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let s = try StatisticsHandle.lookup(statistics).value
        guard let length else { throw .null("length") }
        let bytes = try sdk { () throws(LatentWatchError) in try StatisticsFile.encode(s) }
        try copyOut(bytes, to: buffer, capacity: capacity, length: length, what: "the statistics file")
    }
}

@c(lw_statistics_get_info)
public func lwStatisticsGetInfo(
    _ statistics: OpaquePointer?,
    _ info: UnsafeMutablePointer<lw_statistics_info>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try StatisticsHandle.lookup(statistics)
        guard let info else { throw .null("info") }
        try checkStructSize(info.pointee.struct_size, MemoryLayout<lw_statistics_info>.size, "lw_statistics_info")
        let s = h.value
        var i = lw_statistics_info()
        i.struct_size = UInt32(MemoryLayout<lw_statistics_info>.size)
        let shape = s.inputShape.prefix(Int(LW_MAX_RANK))
        i.input_rank = UInt32(shape.count)
        withUnsafeMutableBytes(of: &i.input_shape) { raw in
            let b = raw.bindMemory(to: Int64.self)
            for (k, v) in shape.enumerated() { b[k] = Int64(v) }
        }
        i.samples = UInt64(s.fitSamples)
        i.range_count = UInt64(s.rows.count)
        i.first_row = Int64(s.rows.first?.lowerBound ?? 0)
        i.end_row = Int64(s.rows.last?.upperBound ?? 0)
        i.layer = UnsafePointer(h.layer)
        i.family = UnsafePointer(h.family)
        store(i, to: info, size: info.pointee.struct_size)
    }
}

@c(lw_statistics_fit)
public func lwStatisticsFit(
    _ statistics: OpaquePointer?,
    _ calibration: UnsafePointer<lw_activations>?,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("out") }
        out.pointee = nil
        let s = try StatisticsHandle.lookup(statistics).value
        guard let calibration else { throw .null("calibration (the statistics hold no calibration rows)") }
        let held = try BorrowedActivations(calibration, name: "calibration")
        guard held.sampleShape.reduce(1, *) == s.inputShape.reduce(1, *) else {
            throw CallError(
                LW_ERR_SHAPE_MISMATCH,
                "calibration rows have shape \(held.sampleShape); the statistics \(s.inputShape)"
            )
        }
        let model = try fitting("fitting") {
            try LatentModelFitter.fit(statistics: s, calibration: held, configuration: s.configuration)
        }
        out.pointee = HandleRegistry.shared.insert(ModelHandle(model), kind: .model)
    }
}

@c(lw_statistics_free)
public func lwStatisticsFree(_ statistics: OpaquePointer?) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let statistics else { return }
        _ = try HandleRegistry.shared.remove(statistics, as: StatisticsHandle.self, kind: .statistics)
    }
}
