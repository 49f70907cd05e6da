/// The stream detectors of a monitor and their episodes. Updated under the monitor's lock, in O(1) per input
/// and without allocation unless an alert is raised.
struct StreamState: Sendable {
    /// The stream index of the next input (continues across model replacements).
    var next = 0
    /// The model generation whose calibration the detectors test against.
    var generation: Int
    var window: WindowRateDetector?
    var shift: LayerMixtureShiftDetector?
    var shiftEpisodeOpen = false
    var lastShiftAlarm = 0
    let shiftCooldown: Int

    /// Detectors for `layers`' calibration sets, and their joint calibration when the fused p-value comes from it.
    init(policy: AlertPolicy, layers: [MonitoredLayer], joint: JointCalibration?, generation: Int) {
        // Bonferroni: fused p <= alpha needs some layer at <= alpha / L; the corrections make the window's
        // guarantee, and the shift detector's against the calibration sets alone, hold given the fixed
        // calibration sets (Docs/Statistics.md). A jointly calibrated fused p-value is one conformal p-value
        // against the joint calibration set, with that set's bound (approximate for the leave-one-out statistic).
        let counts = layers.map { $0.model.calibration.distributions[.surprise]?.count ?? 0 }
        let corrections = policy.calibrationCorrections(calibrationCounts: counts)
        self.init(
            policy: policy,
            windowNullRate: joint.map { policy.windowNullRate(jointCalibrationCount: $0.count) }
                ?? corrections.windowNullRate,
            calibrationCounts: counts,
            corrections: corrections.shift,
            generation: generation
        )
    }

    /// `windowNullRate`: the rate of fused p <= alpha under the null given the calibration sets.
    init(
        policy: AlertPolicy,
        windowNullRate: Double,
        calibrationCounts: [Int],
        corrections: [CalibrationCorrection],
        generation: Int = 0
    ) {
        self.generation = generation
        if let w = policy.window {
            window = WindowRateDetector(
                window: w.length,
                alpha: policy.inputAlpha,
                windowLevel: w.windowLevel,
                nullRate: windowNullRate,
                cooldown: w.cooldown
            )
        }
        shift = policy.shiftDetector(calibrationCounts: calibrationCounts, corrections: corrections)
        shiftCooldown = policy.window?.length ?? 200
    }

    /// Restarts the detectors on new models' calibration, keeping the stream index. Returns the episodes that
    /// were open (they end with the old detectors).
    mutating func restart(
        policy: AlertPolicy,
        layers: [MonitoredLayer],
        joint: JointCalibration?,
        generation: Int
    ) -> (
        window: Bool, shift: Bool
    ) {
        let open = (window: window?.active ?? false, shift: shiftEpisodeOpen)
        let index = next
        self = StreamState(policy: policy, layers: layers, joint: joint, generation: generation)
        next = index
        return open
    }

    /// Events of one input.
    struct Events {
        var window: WindowRateDetector.Event = .none
        var shiftFired = false
        var shiftResolved = false
        var shiftOpen = false
        var windowOpen = false
    }

    /// Gives the next stream index to an input scored by models since replaced: it is concluded on its own
    /// models' calibration, and the detectors (restarted on the new calibration) do not see it.
    mutating func skip() -> (index: Int, events: Events) {
        let index = next
        next += 1
        return (index, Events(shiftOpen: shiftEpisodeOpen, windowOpen: window?.active ?? false))
    }

    /// Feeds the next input's fused p-value (`p`, to the window test) and its per-layer p-values (`layers`, to
    /// the shift detector, which applies the calibration correction itself).
    mutating func observe(_ p: Double, layers: UnsafeBufferPointer<Double>) -> (index: Int, events: Events) {
        let index = next
        next += 1
        var e = Events()
        if window != nil {
            e.window = window!.update(p)
            e.windowOpen = window!.active
        }
        if shift != nil {
            let alarm = shift!.update(layers)
            if case .anytime = shift!.mode {
                if alarm {
                    e.shiftFired = true
                    shiftEpisodeOpen = true
                }
            } else if alarm {
                lastShiftAlarm = index
                if !shiftEpisodeOpen {
                    shiftEpisodeOpen = true
                    e.shiftFired = true
                }
            } else if shiftEpisodeOpen && index - lastShiftAlarm >= shiftCooldown {
                shiftEpisodeOpen = false
                e.shiftResolved = true
            }
            e.shiftOpen = shiftEpisodeOpen
        }
        return (index, e)
    }
}
