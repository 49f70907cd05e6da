import Foundation
import Logging
import Metrics

extension Monitor {
    /// Replaces the models of every monitored layer at once, while inputs keep arriving (a retrained model, a new
    /// calibration).
    ///
    /// - Every input is scored, calibrated and concluded by exactly one set of models: the set current when its
    ///   assessment starts (inline) or when the background worker takes its batch. None is dropped or counted twice,
    ///   and stream indices continue.
    /// - The stream detectors (window and shift) restart on the new models' calibration: their guarantees are
    ///   stated for one calibration set. An open window or shift episode is closed with a `resolved` alert. An input
    ///   scored by the old models that concludes after the swap keeps its own p-values and per-input alerts, but is
    ///   not fed to the restarted detectors.
    ///
    /// The replacement must monitor the same layers: the same names, in the same order, with activations of the same
    /// sizes. Family, preparation and calibration may all differ; the fusion follows the replacement's joint
    /// calibration (``PValueFusion/automatic``), and with ``PValueFusion/calibrated`` the replacement must carry one.
    /// - Throws: ``LatentWatchError`` with `invalidConfiguration` when the replacement does not fit; the current
    ///   models then stay in use.
    public func replaceModels(_ replacement: [MonitoredLayer]) throws(LatentWatchError) {
        guard replacement.count == layerNames.count else {
            throw LatentWatchError(
                .invalidConfiguration,
                "the replacement has \(replacement.count) layers; the monitor watches \(layerNames.count) (\(layerNames))",
                remedy: "give one model per monitored layer, in the same order"
            )
        }
        for (l, r) in replacement.enumerated() {
            guard r.name == layerNames[l] else {
                throw LatentWatchError(
                    .invalidConfiguration,
                    "layer \(l) of the replacement is '\(r.name)'; the monitor's layer \(l) is '\(layerNames[l])'",
                    remedy: "give the layers in the monitor's order, with the same names"
                )
            }
            guard r.model.preparation.inputCount == inputCounts[l] else {
                throw LatentWatchError(
                    .invalidConfiguration,
                    "the replacement model for layer '\(r.name)' takes \(r.model.preparation.inputCount) values "
                        + "(shape \(r.model.inputShape)); the layer's activations have \(inputCounts[l])",
                    remedy: "fit the replacement on the same layer's activations"
                )
            }
        }
        if configuration.outputs?.kind == .prediction, replacement[primary].model.targetBinCount == nil {
            throw LatentWatchError(
                .invalidConfiguration,
                "the monitor takes the host's predictions; the replacement model for its primary layer "
                    + "'\(replacement[primary].name)' (family '\(replacement[primary].model.family)') predicts none",
                remedy: "replace it with a regression model of the same layer"
            )
        }
        let joint = try configuration.policy.fusion.jointCalibration(for: replacement) { logger.warning("\($0)") }
        let now = Date().timeIntervalSince1970
        let generation = state.withLock { s -> Int in
            let generation = s.generation + 1
            // Under the stream lock: an input that concludes after this sees the new generation and is not fed
            // to the new detectors unless it was scored by the new models.
            models.withLock {
                $0 = ModelSlot(set: ModelSet(generation: generation, layers: replacement, joint: joint), pool: [])
            }
            let last = s.next - 1
            let open = s.restart(
                policy: configuration.policy,
                layers: replacement,
                joint: joint,
                generation: generation
            )
            let why = "the models were replaced; the detector restarted on their calibration"
            if open.window { alerts.emit(.resolved(.window, index: last, time: now, detail: why)) }
            if open.shift { alerts.emit(.resolved(.shift, index: last, time: now, detail: why)) }
            return generation
        }
        metrics.modelReplacements.increment()
        logger.info(
            "models replaced",
            metadata: ["generation": "\(generation)", "layers": "\(layerNames.joined(separator: ","))"]
        )
    }
}
