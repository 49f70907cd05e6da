"""Monitors the digits MLP under ONNX Runtime, in process.

Runs digits_mlp.onnx (made by export_onnx.py beside this file) on the bundled stream of 400 images with
latentwatch.onnx.MonitoredSession: every run also fetches the hidden layers h1 and h2, hands them to an in-process
latentwatch.Monitor, and returns exactly the model's outputs. The stream's first 200 images are digits the model
learned; from input 200 on they are digits it never saw (6 to 9), and the alerts start there.

    pip install ./Sources/Python onnx onnxruntime       # from the repository root
    python3 Samples/PythonInProcess/onnx_monitor.py
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import digits
from digits import latentwatch

import latentwatch.onnx  # noqa: E402  (after digits, which makes the package importable from the repository)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(digits.HERE, "digits_mlp.onnx"), help="the ONNX model")
    ap.add_argument("--batch", type=int, default=8, help="images per onnxruntime run")
    args = ap.parse_args()

    if not os.path.exists(args.model):
        import export_onnx

        import onnx

        onnx.save(export_onnx.build_model(), args.model)
    pixels, ood_start = digits.stream()
    summary = digits.Summary(ood_start, print_inputs=False)  # the loop prints flagged inputs with predictions
    monitor = latentwatch.Monitor(digits.fit_models(), on_alert=summary.on_alert)
    session = latentwatch.onnx.MonitoredSession(args.model, monitor, layers=["h1", "h2"])
    print(f"monitoring {[o.name for o in session.get_outputs()]} of {os.path.basename(args.model)} "
          f"through layers {monitor.layer_names}")
    for start in range(0, len(pixels), args.batch):
        x = pixels[start:start + args.batch]
        probabilities, logits = session.run(None, {"pixels": x})
        batch = session.last_assessments
        for i in np.flatnonzero(batch.out_of_distribution):
            print(f"input {start + i:3d}: predicted {probabilities[i].argmax()} ({probabilities[i].max():.0%}), "
                  f"fused p = {batch.fused_p_value[i]:.4f}: out of distribution")
        monitor.flush()  # lets this batch's alerts print before the next batch's lines
    assessed = monitor.stats()["assessed"]
    monitor.close()
    print(summary.line(assessed))


if __name__ == "__main__":
    main()
