extension LatentModelFitter {
    /// Calibrates the fused p-value of several layers' models together and returns the models, in the same order,
    /// each carrying the same ``LatentModel/jointCalibration``. A layer whose model keeps a neighbour index joins
    /// with its surprise and its neighbour distance as two members, so the statistic combines every score the
    /// layers' epistemic p-values combine, in one step. A ``Monitor`` of exactly these layers then fuses
    /// their p-values into a conformal p-value (``PValueFusion/automatic``): its alert rate is at most the level
    /// asked for on average over calibration sets, as a single layer's is, where Bonferroni is conservative and
    /// Cauchy's combination only asymptotically valid.
    ///
    /// The inputs must be the ones each model's surprise calibration was made on, row i being the same input on
    /// every layer: the `calibration` source each fit was given, or, when the fits carved their calibration inputs
    /// off their fitting activations, those activations with `carvedBy` set to the fits' configuration (its
    /// ``FitConfiguration/splitSeed`` and ``FitConfiguration/calibrationFraction`` pick the same rows). Each
    /// layer's surprises are checked against its stored calibration; other inputs are refused.
    ///
    /// - Parameters:
    ///   - models: two or more models fitted on the same inputs' activations of different layers.
    ///   - calibration: one source per model, in the same order.
    ///   - carvedBy: the fits' configuration when their calibration inputs were carved off `calibration`.
    ///   - statistic: how the layers' p-values combine (Cauchy by default; Docs/Evaluation.md).
    public static func calibrateJointly(
        _ models: [LatentModel],
        calibration: [any ActivationSource],
        carvedBy configuration: FitConfiguration? = nil,
        statistic: JointCalibration.Statistic = .cauchy
    ) throws -> [LatentModel] {
        guard calibration.count == models.count else {
            throw LatentWatchError(
                .invalidConfiguration,
                "\(models.count) models and \(calibration.count) calibration sources",
                remedy: "pass one calibration source per model, in the same order"
            )
        }
        let carve = configuration.map {
            SplitAssignment(seed: $0.splitSeed, calibrationFraction: $0.calibrationFraction, validationFraction: 0)
        }
        var surprises: [[Double]] = []
        var distances: [[Double]] = []
        for (model, source) in zip(models, calibration) {
            let n = model.preparation.inputCount
            guard source.sampleShape.reduce(1, *) == n else {
                throw LatentWatchError(
                    .invalidConfiguration,
                    "layer '\(model.layer)': activations of shape \(source.sampleShape), the model expects "
                        + "\(model.inputShape)",
                    remedy: "pass each model's own layer's activations, in the models' order"
                )
            }
            // Scored as the fit's calibration pass scores them, so each layer's surprises reproduce its calibration.
            var s: [Double] = []
            var d: [Double] = []
            try scoreCalibrationInputs(model, source, carve: carve) {
                s.append($0.surprise)
                if let n = $0.neighbourDistance { d.append(n) }
            }
            surprises.append(s)
            distances.append(d)
        }
        let joint = try JointCalibration.make(
            models: models,
            surprises: surprises,
            neighbourDistances: distances,
            statistic: statistic
        )
        return models.map {
            var m = $0
            m.jointCalibration = joint
            m.fingerprint = nil
            return m
        }
    }
}
