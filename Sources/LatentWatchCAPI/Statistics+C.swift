public import CLatentWatch
import Foundation
import LatentWatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The object behind an `lw_statistics` handle: a statistics file's contents (statistics, a mixture round or an
/// E-step; merged in place, under their lock) and the strings `lw_statistics_get_info` hands out.
final class StatisticsHandle: @unchecked Sendable {
    let contents: LockedValue<StatisticsFile.Contents>
    let layer: UnsafeMutablePointer<CChar>
    let family: UnsafeMutablePointer<CChar>
    let fingerprint: UnsafeMutablePointer<CChar>

    init(_ c: StatisticsFile.Contents) {
        contents = LockedValue(c)
        switch c {
        case .statistics(let s):
            layer = strdup(s.configuration.layerName)
            family = strdup(s.configuration.family.rawValue)
            fingerprint = strdup("")
        case .mixtureRound(let r):
            layer = strdup(r.configuration.layerName)
            family = strdup(r.configuration.family.rawValue)
            fingerprint = strdup(r.fingerprint)
        case .mixtureStep(let e):
            layer = strdup(e.layer)
            family = strdup("")
            fingerprint = strdup(e.fingerprint)
        }
    }

    deinit {
        free(layer)
        free(family)
        free(fingerprint)
    }

    static func lookup(_ handle: OpaquePointer?) throws(CallError) -> StatisticsHandle {
        try HandleRegistry.shared.lookup(handle, as: StatisticsHandle.self, kind: .statistics)
    }

    /// A copy of the contents as they are now.
    var value: StatisticsFile.Contents { contents.withLock { $0 } }

    /// The mixture round this handle holds, or an error naming what `call` needs.
    func round(_ call: String) throws(CallError) -> MixtureRound {
        guard case .mixtureRound(let r) = value else {
            throw CallError(
                LW_ERR_INVALID_ARGUMENT,
                "\(call) needs a mixture round (from lw_mixture_start or _advance)"
            )
        }
        return r
    }
}

@c(lw_statistics_gather)
public func lwStatisticsGather(
    _ rows: UnsafePointer<lw_activations>?,
    _ config: UnsafePointer<lw_fit_config>?,
    _ firstIndex: Int64,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    gather(rows, config, firstIndex, out) { (source, cfg, first) throws(CallError) in
        let mixture = cfg.family == .gmmFull || cfg.family == .gmmDiagonal
        guard cfg.family == .gda || cfg.family == .tied || mixture else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "statistics are gathered for gda, tied, gmm-full and gmm-diag, not '\(cfg.family)'"
                    + (cfg.fitsTargets ? " (regression families: lw_statistics_gather_targets)" : "")
            )
        }
        guard source.labels != nil || mixture else { throw .null("rows.labels (gda and tied need class labels)") }
        try checkFitMemory(source, cfg)
        return try fitting("gathering statistics") {
            try LatentModelFitter.statistics(of: source, configuration: cfg, firstIndex: first)
        }
    }
}

@c(lw_statistics_gather_targets)
public func lwStatisticsGatherTargets(
    _ rows: UnsafePointer<lw_activations>?,
    _ binning: UnsafePointer<Double>?,
    _ binningCount: Int,
    _ config: UnsafePointer<lw_fit_config>?,
    _ firstIndex: Int64,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    gather(rows, config, firstIndex, out) { (source, cfg, first) throws(CallError) in
        guard cfg.fitsTargets else {
            throw CallError(
                LW_ERR_INVALID_CONFIGURATION,
                "lw_statistics_gather_targets gathers for regression and regression-tied, not '\(cfg.family)' "
                    + "(class and mixture families: lw_statistics_gather)"
            )
        }
        guard let binning else { throw .null("binning") }
        guard binningCount >= 2 else {
            throw CallError(
                LW_ERR_INVALID_ARGUMENT,
                "binning_count is \(binningCount); give the whole data set's fitting targets (at least 2)"
            )
        }
        // Copied and sorted: refused when that would not fit in memory.
        guard UInt64(binningCount) <= ProcessInfo.processInfo.physicalMemory / 32 else {
            throw CallError(
                LW_ERR_FIT_FAILED,
                "binning_count \(binningCount) targets need more memory than this machine has"
            )
        }
        try checkAligned(binning, 8, "binning")
        let bins = Array(UnsafeBufferPointer(start: binning, count: binningCount))
        if let i = bins.firstIndex(where: { !$0.isFinite }) {
            throw CallError(LW_ERR_NON_FINITE, "binning[\(i)] is \(bins[i]); targets must be finite")
        }
        guard let targets = source.targets else { throw .null("rows.targets (one finite target per row)") }
        try checkFitMemory(source, cfg)
        return try fitting("gathering statistics") {
            try LatentModelFitter.statistics(
                of: source,
                targets: targets,
                binning: bins,
                configuration: cfg,
                firstIndex: first
            )
        }
    }
}

/// What both gathers share: the pointers and the first index checked, the configuration and the rows read, the
/// statistics `body` gathers stored as a new handle in `out`.
private func gather(
    _ rows: UnsafePointer<lw_activations>?,
    _ config: UnsafePointer<lw_fit_config>?,
    _ firstIndex: Int64,
    _ out: UnsafeMutablePointer<OpaquePointer?>?,
    _ body: (BorrowedActivations, FitConfiguration, Int) throws(CallError) -> ActivationStatistics
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("out") }
        out.pointee = nil
        guard let rows else { throw .null("rows") }
        guard let config else { throw .null("config") }
        let cfg = try fitConfiguration(config)
        guard firstIndex >= 0 else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "first_index is \(firstIndex); it must be at least 0")
        }
        let stats = try body(try BorrowedActivations(rows, name: "rows"), cfg, Int(firstIndex))
        out.pointee = HandleRegistry.shared.insert(StatisticsHandle(.statistics(stats)), kind: .statistics)
    }
}

@c(lw_statistics_merge)
public func lwStatisticsMerge(_ statistics: OpaquePointer?, _ other: OpaquePointer?) -> Int32 {
    CallState.run { () throws(CallError) in
        let into = try StatisticsHandle.lookup(statistics)
        let from = try StatisticsHandle.lookup(other).value
        // Merged into a copy, stored only on success: a refused merge changes nothing.
        try into.contents.withLock { (c) throws(CallError) in
            switch (c, from) {
            case (.statistics(var merged), .statistics(let other)):
                try fitting("merging") { try merged.merge(other) }
                c = .statistics(merged)
            case (.mixtureStep(var merged), .mixtureStep(let other)):
                try fitting("merging") { try merged.merge(other) }
                c = .mixtureStep(merged)
            default:
                throw CallError(
                    LW_ERR_INVALID_ARGUMENT,
                    "lw_statistics_merge merges two shards' statistics or two E-steps of one round; a round does not merge, nor two kinds"
                )
            }
        }
    }
}

@c(lw_statistics_load)
public func lwStatisticsLoad(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    load(path: path, into: out, kind: .statistics) { (p) throws(LatentWatchError) in
        StatisticsHandle(try StatisticsFile.readContents(contentsOf: p))
    }
}

@c(lw_statistics_load_bytes)
public func lwStatisticsLoadBytes(
    _ bytes: UnsafeRawPointer?,
    _ length: Int,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    load(bytes: bytes, length: length, into: out, kind: .statistics) { (b) throws(LatentWatchError) in
        StatisticsHandle(try StatisticsFile.decodeContents(b))
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

/// ABI version 2's `lw_statistics_info` ends where `kind` starts; such a struct is filled up to `family`.
private let firstAppendedInfoField = MemoryLayout<lw_statistics_info>.offset(of: \.kind)!

@c(lw_statistics_get_info)
public func lwStatisticsGetInfo(
    _ statistics: OpaquePointer?,
    _ info: UnsafeMutablePointer<lw_statistics_info>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        let h = try StatisticsHandle.lookup(statistics)
        guard let info else { throw .null("info") }
        try checkStructSize(info.pointee.struct_size, firstAppendedInfoField, "lw_statistics_info")
        var i = lw_statistics_info()
        i.struct_size = UInt32(MemoryLayout<lw_statistics_info>.size)
        let shape: [Int]
        let rows: [Range<Int>]
        i.log_likelihood = .nan
        switch h.value {
        case .statistics(let s):
            (shape, rows) = (s.inputShape, s.rows)
            i.kind = LW_STATISTICS_SHARD
        case .mixtureRound(let r):
            (shape, rows) = (r.inputShape, r.rows)
            i.kind = LW_STATISTICS_MIXTURE_ROUND
            i.round = Int32(clamping: r.round)
            i.converged = r.converged ? 1 : 0
            i.finished = r.finished ? 1 : 0
            i.log_likelihood = r.logLikelihoods.last ?? .nan
        case .mixtureStep(let e):
            (shape, rows) = ([], e.rows)
            i.kind = LW_STATISTICS_MIXTURE_STEP
            i.round = Int32(clamping: e.round)
            i.log_likelihood = e.logLikelihoodSum
        }
        let kept = shape.prefix(Int(LW_MAX_RANK))
        i.input_rank = UInt32(kept.count)
        withUnsafeMutableBytes(of: &i.input_shape) { raw in
            let b = raw.bindMemory(to: Int64.self)
            for (k, v) in kept.enumerated() { b[k] = Int64(v) }
        }
        i.samples = UInt64(rows.reduce(0) { $0 + $1.count })
        i.range_count = UInt64(rows.count)
        i.first_row = Int64(rows.first?.lowerBound ?? 0)
        i.end_row = Int64(rows.last?.upperBound ?? 0)
        i.fingerprint = UnsafePointer(h.fingerprint)
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
        let contents = try StatisticsHandle.lookup(statistics).value
        guard let calibration else { throw .null("calibration (the statistics hold no calibration rows)") }
        let held = try BorrowedActivations(calibration, name: "calibration")
        func checked(_ shape: [Int]) throws(CallError) -> BorrowedActivations {
            guard held.sampleShape.reduce(1, *) == shape.reduce(1, *) else {
                throw CallError(
                    LW_ERR_SHAPE_MISMATCH,
                    "calibration rows have shape \(held.sampleShape); the statistics \(shape)"
                )
            }
            return held
        }
        let model: LatentModel
        switch contents {
        case .statistics(let s):
            let cal = try checked(s.inputShape)
            model = try fitting("fitting") {
                try LatentModelFitter.fit(
                    statistics: s,
                    calibration: cal,
                    // Calibration targets matter to regression statistics only (ignored otherwise, as lw_fit does
                    // not read the targets of class families' calibration rows either).
                    calibrationTargets: s.configuration.fitsTargets ? cal.targets : nil,
                    configuration: s.configuration
                )
            }
        case .mixtureRound(let r):
            let cal = try checked(r.inputShape)
            model = try fitting("fitting") { try LatentModelFitter.fit(mixture: r, calibration: cal) }
        case .mixtureStep:
            throw CallError(
                LW_ERR_INVALID_ARGUMENT,
                "an E-step does not fit a model: advance the round with it (lw_mixture_advance), then fit the finished round"
            )
        }
        out.pointee = HandleRegistry.shared.insert(ModelHandle(model), kind: .model)
    }
}

@c(lw_mixture_start)
public func lwMixtureStart(_ statistics: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("round") }
        out.pointee = nil
        guard case .statistics(let s) = try StatisticsHandle.lookup(statistics).value else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "lw_mixture_start needs a shard's (merged) statistics")
        }
        let round = try fitting("starting EM") { try MixtureRound(statistics: s) }
        out.pointee = HandleRegistry.shared.insert(StatisticsHandle(.mixtureRound(round)), kind: .statistics)
    }
}

@c(lw_mixture_expectation)
public func lwMixtureExpectation(
    _ round: OpaquePointer?,
    _ rows: UnsafePointer<lw_activations>?,
    _ firstIndex: Int64,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("step") }
        out.pointee = nil
        let r = try StatisticsHandle.lookup(round).round("lw_mixture_expectation")
        guard let rows else { throw .null("rows") }
        guard firstIndex >= 0 else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "first_index is \(firstIndex); it must be at least 0")
        }
        let source = try BorrowedActivations(rows, name: "rows")
        guard source.sampleShape.reduce(1, *) == r.inputShape.reduce(1, *) else {
            throw CallError(LW_ERR_SHAPE_MISMATCH, "rows have shape \(source.sampleShape); the round \(r.inputShape)")
        }
        let step = try fitting("the E-step") { try r.expectation(of: source, firstIndex: Int(firstIndex)) }
        out.pointee = HandleRegistry.shared.insert(StatisticsHandle(.mixtureStep(step)), kind: .statistics)
    }
}

@c(lw_mixture_advance)
public func lwMixtureAdvance(
    _ round: OpaquePointer?,
    _ steps: OpaquePointer?,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let out else { throw .null("next") }
        out.pointee = nil
        let r = try StatisticsHandle.lookup(round).round("lw_mixture_advance")
        guard case .mixtureStep(let step) = try StatisticsHandle.lookup(steps).value else {
            throw CallError(LW_ERR_INVALID_ARGUMENT, "lw_mixture_advance needs the round's merged E-steps")
        }
        let next = try fitting("the M-step") { try r.advanced(by: step) }
        out.pointee = HandleRegistry.shared.insert(StatisticsHandle(.mixtureRound(next)), kind: .statistics)
    }
}

@c(lw_statistics_free)
public func lwStatisticsFree(_ statistics: OpaquePointer?) -> Int32 {
    CallState.run { () throws(CallError) in
        guard let statistics else { return }
        _ = try HandleRegistry.shared.remove(statistics, as: StatisticsHandle.self, kind: .statistics)
    }
}
