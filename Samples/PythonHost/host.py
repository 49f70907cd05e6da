"""A Python model host that streams its activations to the LatentWatch sidecar.

It runs a real model, the bundled digits MLP (Samples/Data/digits-mlp/mlp_weights.npz: 64 -> 128 -> 64 -> 6,
ReLU), forward in numpy on the bundled stream of 8x8 images (in-distribution digits, then from input 200 on
images the model never learned), sends each batch's hidden activations h1 and h2 to `latentwatch serve`, and
prints what the monitor flags. See README.md beside this file for the commands.
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
try:
    from latentwatch.sidecar import Client  # pip install ./Sources/Python
except ImportError:  # not installed: the same client from the repository, standard library only
    sys.path.insert(0, os.path.join(ROOT, "Sources", "PythonClient"))
    from latentwatch_client import Client  # noqa: E402

DATA = os.path.join(ROOT, "Samples", "Data", "digits-mlp")


class DigitsMLP:
    """The bundled 3-layer MLP; `forward` returns the two hidden layers and the class probabilities."""

    def __init__(self, path):
        w = np.load(path)
        self.params = [(w["W1"], w["b1"]), (w["W2"], w["b2"]), (w["W3"], w["b3"])]

    def forward(self, x):
        (w1, b1), (w2, b2), (w3, b3) = self.params
        h1 = np.maximum(x @ w1 + b1, 0)
        h2 = np.maximum(h1 @ w2 + b2, 0)
        logits = h2 @ w3 + b3
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return h1, h2, e / e.sum(axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", default="latentwatch.sock", help="the sidecar's Unix socket")
    ap.add_argument("--token", default="", help="bearer token, when the sidecar has one")
    ap.add_argument("--batch", type=int, default=8, help="inputs per request")
    args = ap.parse_args()

    model = DigitsMLP(os.path.join(DATA, "mlp_weights.npz"))
    images = np.load(os.path.join(DATA, "stream_pixels.npy"))
    shift = int(np.load(os.path.join(DATA, "stream_ood_start.npy"))[0])
    flagged = {"before": 0, "after": 0}
    shift_alarm = None
    window_alarm = None
    with Client(path=args.socket, token=args.token, name="digits-host") as sidecar:
        print(f"sidecar layers: {[(l.name, l.elements) for l in sidecar.layers]}")
        for start in range(0, len(images), args.batch):
            x = images[start:start + args.batch]
            h1, h2, probs = model.forward(x)
            ids = [f"img-{start + i}" for i in range(len(x))]
            for i, a in enumerate(sidecar.observe([h1, h2], request_ids=ids)):
                n = start + i
                if "shift_alarm" in a.flag_names and shift_alarm is None:
                    shift_alarm = n
                    print(f"input {n:3d}: distribution-shift alarm")
                if "window_alarm" in a.flag_names and window_alarm is None:
                    window_alarm = n
                    print(f"input {n:3d}: window alarm (too many low p-values among the recent inputs)")
                if "out_of_distribution" in a.flag_names:
                    flagged["before" if n < shift else "after"] += 1
                    print(f"input {n:3d}: predicted {probs[i].argmax()} ({probs[i].max():.0%}), "
                          f"fused p = {a.fused_p_value:.4f}: out of distribution")
        ack = sidecar.bye()
    print(f"{ack.assessed if ack else '?'} inputs assessed; out of distribution before input {shift}: "
          f"{flagged['before']}, from {shift} on: {flagged['after']}; shift alarm at input {shift_alarm}, "
          f"window alarm at input {window_alarm}")


if __name__ == "__main__":
    main()
