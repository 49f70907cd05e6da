"""Monitors the digits MLP as a torch.nn.Module, in process, with forward hooks.

Loads the bundled digits MLP (Samples/Data/digits-mlp/mlp_weights.npz) into a torch.nn.Module and attaches
latentwatch.torch to its two ReLU layers: each forward call's hidden activations are copied into a queue and
assessed by an in-process latentwatch.Monitor on a worker thread, so the forward pass never waits for the
monitor. The stream's first 200 images are digits the model learned; from input 200 on they are digits it never
saw (6 to 9), and the alerts start there.

    pip install ./Sources/Python torch       # from the repository root
    python3 Samples/PythonInProcess/torch_monitor.py
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import digits
from digits import latentwatch

import latentwatch.torch  # noqa: E402  (after digits, which makes the package importable from the repository)


class DigitsMLP(nn.Module):
    """64 -> 128 -> 64 -> 6 with ReLU: the bundled MLP. ``act1`` and ``act2`` output the hidden layers h1, h2."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act1 = nn.Linear(64, 128), nn.ReLU()
        self.fc2, self.act2 = nn.Linear(128, 64), nn.ReLU()
        self.fc3 = nn.Linear(64, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))

    @classmethod
    def from_npz(cls) -> "DigitsMLP":
        w = digits.weights()
        net = cls()
        with torch.no_grad():
            for k, fc in ((1, net.fc1), (2, net.fc2), (3, net.fc3)):
                fc.weight.copy_(torch.from_numpy(w[f"W{k}"].T.copy()))  # Linear holds [out, in]
                fc.bias.copy_(torch.from_numpy(w[f"b{k}"]))
        return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8, help="images per forward call")
    args = ap.parse_args()

    net = DigitsMLP.from_npz()
    pixels, ood_start = digits.stream()
    summary = digits.Summary(ood_start)
    monitor = latentwatch.Monitor(digits.fit_models(), on_alert=summary.on_alert)
    batch_number = iter(range(1 << 30))
    # Attach before any torch.compile: the hooks must exist when the module is compiled.
    attachment = latentwatch.torch.attach(
        net, monitor, layer=["act1", "act2"], reduce="flatten",
        request_id=lambda: f"batch{next(batch_number)}",  # rows get "batchN/0", "batchN/1", ...
    )
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(pixels), args.batch):
            logits = net(torch.from_numpy(pixels[start:start + args.batch]))
            predictions.append(logits.argmax(dim=1).numpy())
    attachment.detach()  # hands the queued forward calls to the monitor, removes the hooks
    monitor.flush()
    assessed = monitor.stats()["assessed"]
    monitor.close()
    predicted = np.concatenate(predictions)
    print(f"predicted classes of the first 10 images: {predicted[:10].tolist()}")
    print(f"hooks: {attachment.assessed} inputs handed to the monitor, {attachment.dropped} dropped, "
          f"{attachment.errors} errors")
    print(summary.line(assessed))


if __name__ == "__main__":
    main()
