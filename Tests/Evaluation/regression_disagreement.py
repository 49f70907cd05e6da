#!/usr/bin/env python3
"""The host-prediction disagreement on a regression scenario's saved arrays (OUT_DIR/arrays of make_regression.py or
make_tabular_regression.py): per layer, the model fitted as the scenario fits it (default configuration; and
`regression-tied` without L2), its disagreement calibrated on the calibration split's host predictions, and a
monitor given the test split's host predictions at alpha 0.05. Beside it, the deep ensemble's standard deviation
thresholded at its own 95 % calibration quantile (the same false-alarm budget, uncalibrated).

Prints, per row: Spearman of the score with the host's absolute error on the test inputs, the share of test inputs
flagged, and the host's mean absolute error on the flagged and on the other inputs; then, per OOD set (every
`{set}_targets.npy` beside the splits), the host's mean absolute error and the share each row flags there.

    LATENTWATCH_LIBRARY=... PYTHONPATH=Sources/Python python3 Tests/Evaluation/regression_disagreement.py \
        /work/evaldata/regression/arrays fc,gap
"""
import os
import sys

import numpy as np
from scipy.stats import spearmanr

import latentwatch as lw

arrays, layers = sys.argv[1], sys.argv[2].split(",")


def load(name):
    return np.load(os.path.join(arrays, name))


y = {s: load(f"{s}_targets.npy") for s in ("train", "calibration", "test")}
host = {s: load(f"{s}_predictions.npy") for s in ("calibration", "test")}
err = np.abs(host["test"] - y["test"])


def row(name, layer, score, flagged):
    print(f"| {name} | {layer} | {spearmanr(score, err)[0]:.3f} | {flagged.mean():.3f} | {err[flagged].mean():.3g} | "
          f"{err[~flagged].mean():.3g} |")


print("| score | layer | Spearman with the host's error | share flagged at 0.05 | host MAE flagged | other |")
print("|---|---|---|---|---|---|")
sd = {s: np.sqrt(load(f"{s}_ensemble_variance.npy")) for s in ("calibration", "test")}
ood = sorted(f[: -len("_targets.npy")] for f in os.listdir(arrays)
             if f.endswith("_targets.npy") and f[: -len("_targets.npy")] not in ("train", "calibration", "test"))
ood_share = {}
row("deep ensemble, standard deviation", "-", sd["test"], sd["test"] > np.quantile(sd["calibration"], 0.95))
cut = np.quantile(sd["calibration"], 0.95)
ood_share[("deep ensemble, standard deviation", "-")] = [
    float(np.mean(np.sqrt(load(f"{o}_ensemble_variance.npy")) > cut)) for o in ood]
for layer in layers:
    x = {s: load(f"{s}_{layer}.npy") for s in ("train", "calibration", "test")}
    for name, family, l2 in (("default", "regression", True), ("regression-tied, no L2", "regression-tied", False)):
        m = lw.fit(x["train"], targets=y["train"], calibration=x["calibration"], calibration_targets=y["calibration"],
                   family=family, l2_normalize=l2, layer_name=layer)
        m = m.calibrate_disagreement(x["calibration"], host["calibration"])
        with lw.Monitor([m], outputs="prediction", disagreement_alpha=0.05, window=None, shift="off") as mon:
            b = mon.assess_batch(x["test"], outputs=host["test"].astype(np.float32))
        row(f"disagreement ({name})", layer, b.disagreement_distance, b.disagreement)
        with lw.Monitor([m], outputs="prediction", disagreement_alpha=0.05, window=None, shift="off") as mon:
            ood_share[(f"disagreement ({name})", layer)] = [float(np.mean(mon.assess_batch(
                load(f"{o}_{layer}.npy"), outputs=load(f"{o}_predictions.npy").astype(np.float32)).disagreement))
                for o in ood]
mae = [float(np.mean(np.abs(load(f"{o}_predictions.npy") - load(f"{o}_targets.npy")))) for o in ood]
print("\n| share flagged at 0.05 | layer | " + " | ".join(f"{o} (host MAE {e:.3g})" for o, e in zip(ood, mae)) + " |")
print("|---|---|" + "---|" * len(ood))
for (name, layer), v in ood_share.items():
    print(f"| {name} | {layer} | " + " | ".join(f"{x:.3f}" for x in v) + " |")
