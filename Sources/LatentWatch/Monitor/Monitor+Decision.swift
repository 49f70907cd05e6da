import Foundation
import Logging
import Metrics

extension Monitor {
    /// The decision on one scored input, by role: each layer's conformal p-value from its calibration, the
    /// fused p-value (the models' joint calibration, or ``AlertPolicy/fusion``), the stream detectors' update (``StreamState``), the alerts
    /// (worded by ``Alert``'s factories, handed to the ``AlertDispatcher``), and the assessment written into
    /// `result` in place (its `layers` storage is reused when it already has one entry per layer).
    func conclude(requestID: String?, hostPrediction: Double? = nil, ws: LayerWorkspaces, into result: inout Assessment)
    {
        let scores = ws.scores
        let layers = ws.layers
        let policy = configuration.policy
        if result.layers.count != layers.count {
            result.layers = layers.map { Assessment.Layer(name: $0.name, surprise: 0, pValue: 1) }
        }
        for i in 0..<layers.count {
            let s = scores[i].surprise
            let p = layers[i].model.epistemicPValue(scores[i]) ?? 1
            ws.pValues[i] = p
            metrics.pValue[i].record(p)
            if result.layers[i].name != layers[i].name { result.layers[i].name = layers[i].name }
            result.layers[i].surprise = s
            result.layers[i].pValue = p
        }
        let fused: Double
        if let joint = ws.joint {
            // The members' own p-values: each layer's surprise, and its neighbour distance where it keeps an index
            // (the statistic is symmetric, so their order does not matter).
            var k = 0
            for i in 0..<layers.count where k < ws.memberPValues.count {
                let calibration = layers[i].model.calibration
                ws.memberPValues[k] = calibration.pValue(.surprise, scores[i].surprise) ?? 1
                k += 1
                if layers[i].model.jointWithNeighbourDistance, k < ws.memberPValues.count {
                    ws.memberPValues[k] =
                        scores[i].neighbourDistance.flatMap { calibration.pValue(.neighbour, $0) } ?? 1
                    k += 1
                }
            }
            assert(k == ws.memberPValues.count, "the joint calibration's members and the layers disagree")
            fused = joint.pValue(UnsafeBufferPointer(rebasing: ws.memberPValues[0..<k]))
        } else {
            fused = policy.fusion.fuse(UnsafeBufferPointer(ws.pValues))
        }
        let prim = scores[primary]
        let primaryCalibration = layers[primary].model.calibration
        let entropyP = primaryCalibration.pValue(.entropy, prim.entropy)
        let spreadP = prim.predictiveSpread.flatMap { primaryCalibration.pValue(.spread, $0) }
        let disagreement = hostPrediction.flatMap { h in prim.prediction.map { abs(h - $0) } }
        let disagreementP = disagreement.flatMap { primaryCalibration.pValue(.disagreement, $0) }
        // The stream update and the alerts it raises happen under one lock, so alerts reach the sinks in stream
        // order even when many threads assess at once. Only inputs that raise an alert do more than O(1) work
        // here (the alert's text).
        let now = Date().timeIntervalSince1970
        let (index, flags, evidence, fresh) = state.withLock { s -> (Int, Assessment.Flags, Double?, Bool) in
            let fresh = s.generation == ws.generation
            let r = fresh ? s.observe(fused, layers: UnsafeBufferPointer(ws.pValues)) : s.skip()
            let index = r.index
            let events = r.events
            var flags: Assessment.Flags = []
            if fused <= policy.inputAlpha {
                flags.insert(.outOfDistribution)
                alerts.emit(.outOfDistribution(index: index, requestID: requestID, pValue: fused, time: now))
            }
            if let a = policy.aleatoricAlpha {
                if let y = prim.prediction, let spread = prim.predictiveSpread {
                    if let sp = spreadP, sp <= a {
                        flags.insert(.ambiguous)
                        alerts.emit(
                            .uncertainPrediction(
                                index: index,
                                requestID: requestID,
                                prediction: y,
                                spread: spread,
                                pValue: sp,
                                time: now
                            )
                        )
                    }
                } else if let ep = entropyP, ep <= a {
                    flags.insert(.ambiguous)
                    alerts.emit(
                        .ambiguous(index: index, requestID: requestID, entropy: prim.entropy, pValue: ep, time: now)
                    )
                }
            }
            if let a = policy.disagreementAlpha, let dp = disagreementP, dp <= a, let h = hostPrediction,
                let y = prim.prediction
            {
                flags.insert(.disagreement)
                alerts.emit(
                    .predictionDisagreement(
                        index: index,
                        requestID: requestID,
                        hostPrediction: h,
                        prediction: y,
                        pValue: dp,
                        time: now
                    )
                )
            }
            switch events.window {
            case .fired(let count):
                alerts.emit(
                    .windowFired(
                        index: index,
                        requestID: requestID,
                        count: count,
                        length: policy.window?.length ?? 0,
                        alpha: policy.inputAlpha,
                        time: now
                    )
                )
            case .resolved:
                alerts.emit(.resolved(.window, index: index, time: now))
            case .none: break
            }
            if events.shiftFired {
                alerts.emit(.shiftFired(index: index, requestID: requestID, time: now))
            }
            if events.shiftResolved {
                alerts.emit(.resolved(.shift, index: index, time: now))
            }
            if events.windowOpen { flags.insert(.windowAlarm) }
            if events.shiftOpen { flags.insert(.shiftAlarm) }
            if fresh { s.shift?.copyLayerLogCapitals(into: ws.layerLogCapital) }
            // An input the restarted detectors did not see carries no shift evidence.
            return (index, flags, fresh ? s.shift?.logEvidence : nil, fresh)
        }
        metrics.inputs.increment()
        metrics.fusedPValue.record(fused)
        if fresh, let evidence, evidence.isFinite {
            metrics.shiftEvidence.record(evidence)
            for l in 0..<metrics.layerLogCapital.count { metrics.layerLogCapital[l].record(ws.layerLogCapital[l]) }
        }
        result.index = index
        result.requestID = requestID
        result.fusedPValue = fused
        result.entropy = prim.entropy
        result.entropyPValue = entropyP
        result.prediction = prim.prediction
        result.predictiveSpread = prim.predictiveSpread
        result.spreadPValue = spreadP
        if let level = policy.predictionIntervalLevel, let y = prim.prediction, let spread = prim.predictiveSpread {
            result.predictionInterval = layers[primary].model.predictionInterval(
                prediction: y,
                spread: spread,
                level: level
            )
        } else {
            result.predictionInterval = nil
        }
        result.hostPrediction = hostPrediction
        result.disagreement = disagreement
        result.disagreementPValue = disagreementP
        result.predictedLabel = prim.predictedLabel
        result.flags = flags
        result.shiftLogEvidence = evidence
    }
}
