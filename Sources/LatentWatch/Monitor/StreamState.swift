/// The stream detectors of a monitor and their episodes. Updated under the monitor's lock, in O(1) per input
/// and without allocation unless an alert is raised.
struct StreamState: Sendable {
    var next = 0
    var window: WindowRateDetector?
    var shift: LayerMixtureShiftDetector?
    var shiftEpisodeOpen = false
    var lastShiftAlarm = 0
    let shiftCooldown: Int

    /// `windowNullRate`: the rate of fused p <= alpha under the null given the calibration sets.
    init(policy: AlertPolicy, windowNullRate: Double, corrections: [CalibrationCorrection]) {
        if let w = policy.window {
            window = WindowRateDetector(
                window: w.length,
                alpha: policy.inputAlpha,
                windowLevel: w.windowLevel,
                nullRate: windowNullRate,
                cooldown: w.cooldown
            )
        }
        if let mode = policy.shift {
            shift = LayerMixtureShiftDetector(
                mode: mode,
                betting: policy.shiftBetting,
                jumpRate: policy.jumpRate,
                corrections: corrections
            )
        }
        shiftCooldown = policy.window?.length ?? 200
    }

    /// Events of one input.
    struct Events {
        var window: WindowRateDetector.Event = .none
        var shiftFired = false
        var shiftResolved = false
        var shiftOpen = false
        var windowOpen = false
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
