import Dispatch
import LatentWatchNumerics
import Logging
import Metrics

extension Monitor {
    /// Assesses one input on the caller's thread (either mode): scores every layer, fuses the layers' p-values,
    /// feeds the stream detectors, raises alerts, and writes the assessment into `result`, reusing its storage.
    /// With one `result` and one `activations` array kept per thread, a call allocates nothing in steady state
    /// unless it raises an alert or the recorder writes a chunk.
    ///
    /// - Parameters:
    ///   - activations: one buffer per monitored layer, each holding exactly one activation.
    ///   - outputs: the classifier's logits or probabilities for this input, or a regression host's prediction, as
    ///     configured in ``MonitorConfiguration/outputs``; the assessment then carries their summary and the
    ///     ``Assessment/Flags/disagreement`` flag when they predict another class than p(y | z), or the
    ///     prediction's distance from the latent density's (``Assessment/disagreement``) and its p-value.
    ///   - requestID: the host's id for this input, carried into alerts and recordings.
    /// - Throws: ``LatentWatchError`` (`layerCountMismatch`, `invalidActivation`, `invalidOutputs`) for an input
    ///   that cannot be assessed; the stream is unaffected.
    public func assess(
        _ activations: ActivationBuffers,
        outputs: UnsafeBufferPointer<Float>? = nil,
        requestID: String? = nil,
        into result: inout Assessment
    ) throws(LatentWatchError) {
        let ws = takeWorkspaces()
        defer { returnWorkspaces(ws) }
        try checkShape(activations, rows: 1)
        let summary = try summariseOutputs(outputs)
        try score(activations, row: 0, ws: ws)
        finish(requestID: requestID, outputs: outputs, summary: summary, ws: ws, into: &result)
    }

    /// Assesses one input and returns a new assessment (allocates it; see ``assess(_:outputs:requestID:into:)``).
    public func assess(
        _ activations: ActivationBuffers,
        outputs: UnsafeBufferPointer<Float>? = nil,
        requestID: String? = nil
    ) throws(LatentWatchError) -> Assessment {
        var a = Assessment()
        try assess(activations, outputs: outputs, requestID: requestID, into: &a)
        return a
    }

    /// Assesses `count` inputs in order, as `count` calls of ``assess(_:outputs:requestID:into:)`` would, after
    /// checking all of them first: when any row is invalid the call throws and no input is assessed.
    ///
    /// - Parameters:
    ///   - activations: one buffer per monitored layer, each holding `count` activations back to back.
    ///   - count: number of inputs.
    ///   - outputs: `count` rows of model outputs back to back, when configured.
    ///   - requestIDs: one id per input, or nil.
    ///   - results: resized to `count`; its elements' storage is reused.
    public func assessBatch(
        _ activations: ActivationBuffers,
        count: Int,
        outputs: UnsafeBufferPointer<Float>? = nil,
        requestIDs: [String?]? = nil,
        into results: inout [Assessment]
    ) throws(LatentWatchError) {
        let ws = takeWorkspaces()
        defer { returnWorkspaces(ws) }
        try checkShape(activations, rows: count)
        if let requestIDs, requestIDs.count != count {
            metrics.rejected.increment()
            throw LatentWatchError(.invalidConfiguration, "\(requestIDs.count) request ids for \(count) inputs")
        }
        let width = configuration.outputs?.count ?? 0
        if let outputs, outputs.count != count * width {
            metrics.rejected.increment()
            throw LatentWatchError(
                .invalidOutputs,
                "\(outputs.count) output values for \(count) inputs of \(width) outputs each"
            )
        }
        for r in 0..<count {
            try validate(activations, row: r, of: count)
            _ = try summariseOutputs(outputs.map { UnsafeBufferPointer(rebasing: $0[(r * width)..<((r + 1) * width)]) })
        }
        if results.count != count { results = Array(repeating: Assessment(), count: count) }
        for r in 0..<count {
            let rowOutputs = outputs.map { UnsafeBufferPointer(rebasing: $0[(r * width)..<((r + 1) * width)]) }
            let summary = try summariseOutputs(rowOutputs)
            try score(activations, row: r, ws: ws)
            finish(
                requestID: requestIDs?[r] ?? nil,
                outputs: rowOutputs,
                summary: summary,
                ws: ws,
                into: &results[r]
            )
        }
    }

    // MARK: Checks and scoring

    /// Refuses (and counts) a call whose layer count or buffer sizes do not hold `rows` inputs. Sizes do not depend on
    /// which models are current (a replacement keeps them), so the monitor's first models check them, without a lock.
    func checkShape(_ a: ActivationBuffers, rows: Int) throws(LatentWatchError) {
        let layers = configuration.layers
        guard a.layerCount == layers.count else {
            metrics.rejected.increment()
            throw LatentWatchError(
                .layerCountMismatch,
                "got \(a.layerCount) activations for \(layers.count) monitored layers (\(layerNames))"
            )
        }
        guard rows >= 0 else {
            metrics.rejected.increment()
            throw LatentWatchError(.invalidConfiguration, "a batch of \(rows) inputs")
        }
        for l in 0..<layers.count where a.count(layer: l) != rows * layers[l].model.inputCount {
            metrics.rejected.increment()
            throw LatentWatchError(
                .invalidActivation,
                "layer '\(layers[l].name)': \(a.count(layer: l)) elements for \(rows) input(s) of "
                    + "\(layers[l].model.inputCount) (shape \(layers[l].model.inputShape))"
            )
        }
    }

    /// Checks row `r` of every layer (finite values), counting a refusal.
    func validate(_ a: ActivationBuffers, row r: Int, of rows: Int = 1) throws(LatentWatchError) {
        let layers = configuration.layers
        for l in 0..<layers.count {
            do throws(LatentWatchError) {
                let n = layers[l].model.inputCount
                switch a {
                case .float32(let b):
                    try layers[l].model.validate(UnsafeBufferPointer(rebasing: b[l][(r * n)..<((r + 1) * n)]))
                case .float16(let b):
                    try layers[l].model.validate(half: UnsafeBufferPointer(rebasing: b[l][(r * n)..<((r + 1) * n)]))
                }
            } catch {
                metrics.rejected.increment()
                let which = rows > 1 ? "input \(r) of the batch of \(rows), " : ""
                throw LatentWatchError(.invalidActivation, "\(which)layer '\(layers[l].name)': \(error.message)")
            }
        }
    }

    /// Layer `l`'s activation of row `r` as float32 (binary16 converted into the workspace).
    func activation(_ a: ActivationBuffers, layer l: Int, row r: Int, ws: LayerWorkspaces) -> UnsafeBufferPointer<Float>
    {
        let n = inputCounts[l]
        switch a {
        case .float32(let b):
            return UnsafeBufferPointer(rebasing: b[l][(r * n)..<((r + 1) * n)])
        case .float16(let b):
            UnsafeRawPointer(b[l].baseAddress! + r * n).withMemoryRebound(to: UInt16.self, capacity: n) {
                HalfConversion.convert($0, to: ws.converted[l].baseAddress!, count: n)
            }
            return UnsafeBufferPointer(start: ws.converted[l].baseAddress, count: n)
        }
    }

    /// Scores row `r` of every layer into `ws.scores`, leaving the float32 activations in `ws.current`.
    func score(_ a: ActivationBuffers, row r: Int, ws: LayerWorkspaces) throws(LatentWatchError) {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { metrics.scoringDuration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start)) }
        for l in 0..<ws.layers.count {
            let x = activation(a, layer: l, row: r, ws: ws)
            ws.current[l] = x
            do {
                ws.scores[l] = try ws.layers[l].model.score(x, workspace: ws.scoring[l])
            } catch {
                metrics.rejected.increment()
                throw LatentWatchError(.invalidActivation, "layer '\(ws.layers[l].name)': \(error.message)")
            }
        }
    }

    /// Checks and summarises one input's model outputs.
    func summariseOutputs(_ outputs: UnsafeBufferPointer<Float>?) throws(LatentWatchError) -> OutputSummary? {
        guard let outputs else { return nil }
        guard let expected = configuration.outputs else {
            metrics.rejected.increment()
            throw LatentWatchError(.invalidOutputs, "outputs were passed, but the monitor is not configured for them")
        }
        guard outputs.count == expected.count else {
            metrics.rejected.increment()
            throw LatentWatchError(
                .invalidOutputs,
                "expected \(expected.count) outputs (\(expected.kind.rawValue)), got \(outputs.count)"
            )
        }
        if expected.kind == .prediction {
            guard outputs[0].isFinite else {
                metrics.rejected.increment()
                throw LatentWatchError(.invalidOutputs, "the host's prediction is \(outputs[0]); it must be finite")
            }
            return nil
        }
        guard let s = OutputSummary.summarise(outputs, kind: expected.kind) else {
            metrics.rejected.increment()
            throw LatentWatchError(.invalidOutputs, "outputs hold NaN/Inf or negative probabilities")
        }
        return s
    }

    /// Decides on the input scored into `ws`, adds the output summary and disagreement flag, and records it.
    func finish(
        requestID: String?,
        outputs: UnsafeBufferPointer<Float>?,
        summary: OutputSummary?,
        ws: LayerWorkspaces,
        into result: inout Assessment
    ) {
        let hostPrediction = configuration.outputs?.kind == .prediction ? outputs.map { Double($0[0]) } : nil
        conclude(requestID: requestID, hostPrediction: hostPrediction, ws: ws, into: &result)
        result.output = summary
        if let summary, let predicted = result.predictedLabel {
            // Output index i is class i of the primary layer's model (its sorted class labels).
            let labels = ws.layers[primary].model.classLabels
            let outputLabel =
                labels.map { summary.predicted < $0.count ? $0[summary.predicted] : -1 } ?? summary.predicted
            if outputLabel != predicted { result.flags.insert(.disagreement) }
        }
        if configuration.recorder != nil {
            record(UnsafeBufferPointer(ws.current), outputs: outputs, assessment: result)
        }
    }

    /// Hands an assessed input to the recorder; a failure is logged and counted.
    func record(
        _ activations: UnsafeBufferPointer<UnsafeBufferPointer<Float>>,
        outputs: UnsafeBufferPointer<Float>? = nil,
        assessment a: Assessment
    ) {
        guard let recorder = configuration.recorder else { return }
        do {
            try recorder.record(Array(activations), outputs: outputs, requestID: a.requestID, index: a.index)
        } catch {
            metrics.recorderFailures.increment()
            logger.warning("recording an input failed", metadata: ["error": "\(error)", "index": "\(a.index)"])
        }
    }
}
