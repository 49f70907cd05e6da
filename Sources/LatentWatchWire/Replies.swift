/// One input's assessment as it travels in an ASSESSMENT frame.
public struct WireAssessment: Sendable, Equatable {
    /// 0 assessed, 1 invalid input.
    public var status: UInt8
    /// `Assessment.Flags` raw value.
    public var flags: UInt8
    /// Predicted class (−1 none).
    public var predicted: Int32
    /// The monitor's input index.
    public var index: UInt64
    /// Fused epistemic p-value.
    public var fusedPValue: Double
    /// Entropy of p(y | z).
    public var entropy: Double
    /// Its p-value (NaN none).
    public var entropyPValue: Double
    /// Log shift evidence (NaN none).
    public var shiftLogEvidence: Double
    /// Per layer: surprise and p-value.
    public var surprise: [Double]
    /// Per layer p-values.
    public var pValues: [Double]
    /// A regression model's prediction (NaN for classifiers and mixtures, and in rows without prediction
    /// fields).
    public var prediction: Double
    /// Its predictive spread (NaN none).
    public var predictiveSpread: Double
    /// The spread's p-value (NaN none).
    public var spreadPValue: Double
    /// Lower end of the prediction interval at the server's interval level (NaN none; −∞ when unbounded).
    public var intervalLow: Double
    /// Upper end of the prediction interval (NaN none; +∞ when unbounded).
    public var intervalHigh: Double
    /// The host's prediction the OBSERVE carried (NaN none; protocol 1.2).
    public var hostPrediction: Double = .nan
    /// |host prediction - prediction| (NaN none).
    public var disagreement: Double = .nan
    /// Its p-value (NaN when the model's disagreement is not calibrated).
    public var disagreementPValue: Double = .nan

    /// Creates a row.
    public init(
        status: UInt8 = 0,
        flags: UInt8 = 0,
        predicted: Int32 = -1,
        index: UInt64 = 0,
        fusedPValue: Double = .nan,
        entropy: Double = .nan,
        entropyPValue: Double = .nan,
        shiftLogEvidence: Double = .nan,
        surprise: [Double] = [],
        pValues: [Double] = [],
        prediction: Double = .nan,
        predictiveSpread: Double = .nan,
        spreadPValue: Double = .nan,
        intervalLow: Double = .nan,
        intervalHigh: Double = .nan
    ) {
        self.status = status
        self.flags = flags
        self.predicted = predicted
        self.index = index
        self.fusedPValue = fusedPValue
        self.entropy = entropy
        self.entropyPValue = entropyPValue
        self.shiftLogEvidence = shiftLogEvidence
        self.surprise = surprise
        self.pValues = pValues
        self.prediction = prediction
        self.predictiveSpread = predictiveSpread
        self.spreadPValue = spreadPValue
        self.intervalLow = intervalLow
        self.intervalHigh = intervalHigh
    }

    /// Appends the row (the caller keeps the layer count consistent); `prediction` adds the prediction
    /// fields (the frame's ``AssessmentFrame/predictionFlag`` says so), and `host` (with `prediction`) the
    /// host-prediction fields (``AssessmentFrame/hostFlag``).
    public func write(to w: inout WireWriter, prediction withPrediction: Bool = false, host withHost: Bool = false) {
        w.u8(status)
        w.u8(flags)
        w.u16(0)
        w.i32(predicted)
        w.u64(index)
        w.f64(fusedPValue)
        w.f64(entropy)
        w.f64(entropyPValue)
        w.f64(shiftLogEvidence)
        w.f64(0)
        if withPrediction {
            w.f64(prediction)
            w.f64(predictiveSpread)
            w.f64(spreadPValue)
            w.f64(intervalLow)
            w.f64(intervalHigh)
            if withHost {
                w.f64(hostPrediction)
                w.f64(disagreement)
                w.f64(disagreementPValue)
            }
        }
        for i in 0..<surprise.count {
            w.f64(surprise[i])
            w.f64(pValues[i])
        }
    }
}

/// An ASSESSMENT frame.
public struct AssessmentFrame: Sendable, Equatable {
    /// The OBSERVE's sequence.
    public var sequence: UInt64
    /// One per input.
    public var rows: [WireAssessment]
    /// Whether the rows carry the prediction fields (flag bit 0; protocol 1.1, regression models).
    public var hasPrediction: Bool
    /// Whether the rows also carry the host-prediction fields (flag bit 1; protocol 1.2, OBSERVEs with the host's
    /// predictions).
    public var hasHost: Bool

    /// The frame flag (bit 0) of rows with prediction fields.
    public static let predictionFlag: UInt8 = 1
    /// The frame flag (bit 1) of rows with host-prediction fields (set only with ``predictionFlag``).
    public static let hostFlag: UInt8 = 2

    /// Creates a frame.
    public init(sequence: UInt64, rows: [WireAssessment], hasPrediction: Bool = false, hasHost: Bool = false) {
        self.sequence = sequence
        self.rows = rows
        self.hasPrediction = hasPrediction
        self.hasHost = hasHost
    }

    /// Parses a body; `flags` is the frame header's (bit 0: the rows carry prediction fields; bit 1, with bit 0:
    /// host-prediction fields).
    public static func decode(_ body: UnsafeRawBufferPointer, flags: UInt8 = 0) throws(WireError) -> AssessmentFrame {
        guard flags & ~(predictionFlag | hostFlag) == 0, flags & hostFlag == 0 || flags & predictionFlag != 0 else {
            throw WireError(.malformedFrame, "ASSESSMENT has undefined flags \(flags)")
        }
        let withPrediction = flags & predictionFlag != 0
        let withHost = flags & hostFlag != 0
        var r = WireReader(body)
        let seq = try r.u64()
        let n = Int(try r.u32())
        let l = Int(try r.u16())
        let rowBytes =
            WireFormat.assessmentRowFixed + (withPrediction ? WireFormat.assessmentRowPrediction : 0)
            + (withHost ? WireFormat.assessmentRowHost : 0) + WireFormat.assessmentRowPerLayer * l
        let (total, overflow) = n.multipliedReportingOverflow(by: rowBytes)
        guard !overflow, total == r.remaining else {
            throw WireError(
                .malformedFrame,
                "ASSESSMENT declares \(n) rows of \(rowBytes) bytes; \(r.remaining) follow"
            )
        }
        var rows: [WireAssessment] = []
        rows.reserveCapacity(n)
        for _ in 0..<n {
            var a = WireAssessment()
            a.status = try r.u8()
            a.flags = try r.u8()
            _ = try r.u16()
            a.predicted = try r.i32()
            a.index = try r.u64()
            a.fusedPValue = try r.f64()
            a.entropy = try r.f64()
            a.entropyPValue = try r.f64()
            a.shiftLogEvidence = try r.f64()
            _ = try r.f64()
            if withPrediction {
                a.prediction = try r.f64()
                a.predictiveSpread = try r.f64()
                a.spreadPValue = try r.f64()
                a.intervalLow = try r.f64()
                a.intervalHigh = try r.f64()
                if withHost {
                    a.hostPrediction = try r.f64()
                    a.disagreement = try r.f64()
                    a.disagreementPValue = try r.f64()
                }
            }
            for _ in 0..<l {
                a.surprise.append(try r.f64())
                a.pValues.append(try r.f64())
            }
            rows.append(a)
        }
        return AssessmentFrame(sequence: seq, rows: rows, hasPrediction: withPrediction, hasHost: withHost)
    }

    /// Writes the frame header and body for `rows` rows of `layers` layers into `w`; rows are appended
    /// afterwards with ``WireAssessment/write(to:prediction:host:)`` and the same `prediction` and `host` (`host`
    /// only with `prediction`).
    public static func begin(
        sequence: UInt64,
        rows: Int,
        layers: Int,
        prediction: Bool = false,
        host: Bool = false,
        into w: inout WireWriter
    ) {
        let host = host && prediction
        let row =
            WireFormat.assessmentRowFixed + (prediction ? WireFormat.assessmentRowPrediction : 0)
            + (host ? WireFormat.assessmentRowHost : 0) + WireFormat.assessmentRowPerLayer * layers
        FrameHeader(
            length: 14 + rows * row,
            type: FrameType.assessment.rawValue,
            flags: (prediction ? predictionFlag : 0) | (host ? hostFlag : 0)
        ).write(to: &w.buffer)
        w.u64(sequence)
        w.u32(UInt32(rows))
        w.u16(UInt16(layers))
    }
}

/// An ACK frame.
public struct Ack: Sendable, Equatable {
    /// Every OBSERVE with sequence ≤ this is handled.
    public var through: UInt64
    /// Inputs assessed on the connection.
    public var assessed: UInt64
    /// Inputs dropped (policy drop).
    public var dropped: UInt64
    /// Inputs refused (overloaded).
    public var rejected: UInt64
    /// The SYNC token answered (nil when periodic).
    public var sync: UInt64?

    /// Creates an ACK.
    public init(through: UInt64, assessed: UInt64, dropped: UInt64, rejected: UInt64, sync: UInt64? = nil) {
        self.through = through
        self.assessed = assessed
        self.dropped = dropped
        self.rejected = rejected
        self.sync = sync
    }

    /// The whole frame.
    public func frame() -> [UInt8] {
        Frame.make(.ack, flags: sync == nil ? 0 : 1) { w in
            w.u64(through)
            w.u64(assessed)
            w.u64(dropped)
            w.u64(rejected)
            w.u64(sync ?? 0)
        }
    }

    /// Parses a body.
    public static func decode(_ body: UnsafeRawBufferPointer, flags: UInt8) throws(WireError) -> Ack {
        var r = WireReader(body)
        let a = Ack(through: try r.u64(), assessed: try r.u64(), dropped: try r.u64(), rejected: try r.u64())
        let token = try r.u64()
        try r.expectEnd("ACK")
        var out = a
        out.sync = flags & 1 == 1 ? token : nil
        return out
    }
}

extension WireError {
    /// The ERROR frame carrying this error.
    public func frame() -> [UInt8] {
        Frame.make(.error) { w in
            w.u16(code.rawValue)
            w.u8(code.isFatal ? 1 : 0)
            w.u8(0)
            w.u64(sequence)
            w.string(message)
        }
    }

    /// Parses an ERROR body. A code from a newer server keeps its number (``WireError/Code/name`` is "code<N>").
    public static func decode(_ body: UnsafeRawBufferPointer) throws(WireError) -> WireError {
        var r = WireReader(body)
        let raw = try r.u16()
        _ = try r.u8()
        _ = try r.u8()
        let seq = try r.u64()
        let msg = try r.string(limit: 65_535, what: "the error message")
        return WireError(Code(rawValue: raw), msg, sequence: seq)
    }
}

/// SYNC and BYE frames.
public enum Control {
    /// A SYNC with `token`.
    public static func sync(_ token: UInt64) -> [UInt8] { Frame.make(.sync) { $0.u64(token) } }
    /// A BYE.
    public static func bye() -> [UInt8] { Frame.make(.bye, body: []) }
}
