#!/usr/bin/env python3
"""The regression scenarios' reduced version for CI: a small, deterministic subset of the arrays that
`make_regression.py` (Fashion-MNIST rotation CNN) or `make_tabular_regression.py` (diamonds MLP) wrote to
OUT_DIR/arrays, as float16, with the values LatentWatch gives on exactly those files.

    python3 make_regression_ci_subset.py ARRAYS_DIR FIXTURE_DIR --layers fc,gap --ood heldout,digits,inverted,noise

Writes FIXTURE_DIR/{split}_{layer}.npy (float16), {split}_targets.npy and {split}_predictions.npy (float32; the
monitored model's own output) for the splits train, calibration, test and every OOD set (the first N rows of a
seeded permutation of each), and FIXTURE_DIR/recorded.json: per layer and configuration (the default, family
`regression` after L2 normalisation; and `regression-tied` without it) the surprise AUROC of each OOD set against
the test rows, the coverage of the 90 % prediction interval on the test targets, and, with the disagreement
calibrated on the calibration rows' host predictions, the Spearman correlation of the distance between the host's
and the bins' predictions with the host's absolute error and the share of test rows whose disagreement p-value is
at most 0.05, as the latentwatch package
(the library `LATENTWATCH_LIBRARY` names) computes them after fitting on the float16 subset read back as float32;
plus, for context only, the five-member ensemble's AUROC on the same rows. `RegressionScenarioGuardTests` refits
with the Swift SDK and fails when an AUROC drops more than 0.01, a coverage moves more than 0.02, the Spearman
correlation drops more than 0.02 or the share moves more than 0.02.
"""
import argparse
import json
import os
import sys

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

ap = argparse.ArgumentParser()
ap.add_argument("arrays")
ap.add_argument("out")
ap.add_argument("--layers", required=True)
ap.add_argument("--ood", required=True)
ap.add_argument("--train", type=int, default=1500)
ap.add_argument("--calibration", type=int, default=400)
ap.add_argument("--test", type=int, default=400)
ap.add_argument("--ood-rows", type=int, default=150)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Sources", "Python"))
import latentwatch as lw  # noqa: E402

layers = a.layers.split(",")
ood = a.ood.split(",")
rng = np.random.default_rng(a.seed)
os.makedirs(a.out, exist_ok=True)
sizes = {"train": a.train, "calibration": a.calibration, "test": a.test} | {o: a.ood_rows for o in ood}
acts, targets, variance, host = {}, {}, {}, {}
for split, n in sizes.items():
    t = np.load(os.path.join(a.arrays, f"{split}_targets.npy"))
    idx = np.sort(rng.permutation(len(t))[:n])
    targets[split] = t[idx].astype(np.float32)
    np.save(os.path.join(a.out, f"{split}_targets.npy"), targets[split])
    p = np.load(os.path.join(a.arrays, f"{split}_predictions.npy"))[idx].astype(np.float32)
    np.save(os.path.join(a.out, f"{split}_predictions.npy"), p)
    host[split] = p.astype(np.float64)
    variance[split] = np.load(os.path.join(a.arrays, f"{split}_ensemble_variance.npy"))[idx]
    for layer in layers:
        x = np.load(os.path.join(a.arrays, f"{split}_{layer}.npy"))[idx].astype(np.float16)
        np.save(os.path.join(a.out, f"{split}_{layer}.npy"), x)
        acts[(split, layer)] = x.astype(np.float32)


def auroc(inside, outside) -> float:
    return float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))], np.r_[inside, outside]))


recorded = {"sizes": sizes, "layers": {}, "ensemble_auroc": {o: auroc(variance["test"], variance[o]) for o in ood}}
for layer in layers:
    entry = {}
    for name, family, l2 in (("default", "regression", True), ("regression-tied:no-l2", "regression-tied", False)):
        m = lw.fit(acts[("train", layer)], targets=targets["train"].astype(np.float64),
                   calibration=acts[("calibration", layer)],
                   calibration_targets=targets["calibration"].astype(np.float64),
                   family=family, l2_normalize=l2, layer_name=layer)
        s = {k: m.score(acts[(k, layer)]) for k in ["test"] + ood}
        low, high = m.prediction_interval(s["test"].prediction, s["test"].predictive_spread, 0.9)
        y = targets["test"].astype(np.float64)
        entry[name] = {"auroc": {o: auroc(s["test"].surprise, s[o].surprise) for o in ood},
                       "coverage90": float(np.mean((low <= y) & (y <= high)))}
        # The host's own prediction: its distance from the bins' prediction ranks the host's errors (Spearman), and
        # its calibrated p-value flags a share of the test inputs near the level.
        d = m.calibrate_disagreement(acts[("calibration", layer)], host["calibration"])
        with lw.Monitor([d], outputs="prediction", disagreement_alpha=0.05, window=None, shift="off") as mon:
            b = mon.assess_batch(acts[("test", layer)], outputs=host["test"].astype(np.float32))
        entry[name]["disagreement_spearman"] = float(
            spearmanr(b.disagreement_distance, np.abs(host["test"] - targets["test"].astype(np.float64)))[0])
        entry[name]["disagreement_rate05"] = float(np.mean(b.disagreement_p_value <= 0.05))
    recorded["layers"][layer] = entry
with open(os.path.join(a.out, "recorded.json"), "w") as f:
    json.dump(recorded, f, indent=1, sort_keys=True)
print(json.dumps(recorded, indent=1, sort_keys=True))
