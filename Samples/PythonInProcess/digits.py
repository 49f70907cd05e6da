"""What the in-process samples share: the package import, the bundled digits data, the models, the alert printer.

The models are fitted here, in process, with latentwatch.fit on the bundled train activations of the digits MLP's
two hidden layers and calibrated on its labelled calibration split (the same as `latentwatch fit --calibration
--calibration-labels`; the labels calibrate the class posterior behind the "ambiguous" alerts), then calibrated
jointly on the same calibration inputs (latentwatch.calibrate_jointly, as `latentwatch calibrate-fusion`), so that a
monitor of both layers fuses their p-values into one conformal p-value. The samples need no command-line tool.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "Samples", "Data", "digits-mlp")

try:
    import latentwatch  # pip install ./Sources/Python
except ImportError:  # running from the repository: the source tree, with $LATENTWATCH_LIBRARY or a bundled library
    sys.path.insert(0, os.path.join(ROOT, "Sources", "Python"))
    import latentwatch  # noqa: E402


def fit_models() -> List["latentwatch.Model"]:
    """gda models of the layers h1 (128 units) and h2 (64 units), calibrated jointly."""
    labels = np.load(os.path.join(DATA, "train_labels.npy"))
    models = []
    calibration = [np.load(os.path.join(DATA, f"calibration_{layer}.npy")) for layer in ("h1", "h2")]
    for layer, cal in zip(("h1", "h2"), calibration):
        models.append(latentwatch.fit(
            np.load(os.path.join(DATA, f"train_{layer}.npy")),
            labels,
            family="gda",
            layer_name=layer,
            calibration=cal,
            calibration_labels=np.load(os.path.join(DATA, "calibration_labels.npy")),
        ))
    return latentwatch.calibrate_jointly(models, calibration)


def stream() -> Tuple[np.ndarray, int]:
    """The 400 images of the demo stream (rows of 64 pixels in [0, 1]) and the first out-of-distribution index."""
    pixels = np.load(os.path.join(DATA, "stream_pixels.npy"))
    start = int(np.load(os.path.join(DATA, "stream_ood_start.npy")).reshape(-1)[0])
    return pixels, start


def weights() -> Dict[str, np.ndarray]:
    """The MLP's weights: W1 [64, 128], b1, W2 [128, 64], b2, W3 [64, 6], b3 (float32)."""
    with np.load(os.path.join(DATA, "mlp_weights.npz")) as w:
        return {k: w[k] for k in w.files}


class Summary:
    """Prints alerts as the monitor raises them and counts them for the last line."""

    def __init__(self, ood_start: int, print_inputs: bool = True) -> None:
        self.ood_start = ood_start
        self.print_inputs = print_inputs
        self.flagged = {"before": 0, "after": 0}
        self.first: Dict[str, Optional[int]] = {"shift": None, "window": None}

    def on_alert(self, alert: "latentwatch.Alert") -> None:
        """The monitor's on_alert callback (runs on the library's alert thread)."""
        if alert.kind == "input":
            self.flagged["before" if alert.index < self.ood_start else "after"] += 1
        if alert.kind in self.first and self.first[alert.kind] is None:
            self.first[alert.kind] = alert.index
        if alert.kind == "input" and not self.print_inputs:
            return
        p = "" if alert.p_value is None else f" (p = {alert.p_value:.4f})"
        rid = f" [{alert.request_id}]" if alert.request_id else ""
        print(f"ALERT {alert.kind:9s} input {alert.index:3d}{rid}{p}: {alert.detail}", flush=True)

    def line(self, assessed: int) -> str:
        return (
            f"{assessed} inputs assessed; out of distribution before input {self.ood_start}: {self.flagged['before']}, "
            f"from {self.ood_start} on: {self.flagged['after']}; shift alarm at input {self.first['shift']}, "
            f"window alarm at input {self.first['window']}"
        )
