#!/usr/bin/env python3
"""The host-prediction disagreement's false-alarm rate by re-splitting (Docs/Statistics.md, "Host-prediction
disagreement"): on the digits-rotation MLP (Samples/Data/digits-rotation), the regression model is fitted once
(default configuration, calibrated on the committed calibration split); then, 200 times, the 719 held-out inputs
(calibration and test splits pooled) are cut at random into two halves, the disagreement is calibrated on one half's
host predictions (`Model.calibrate_disagreement`), and a monitor given the other half's host predictions counts the
share whose disagreement p-value is at most alpha. Prints the mean and standard deviation of that share per alpha.

    LATENTWATCH_LIBRARY=.build/debug/libLatentWatchC.so PYTHONPATH=Sources/Python \
        python3 Tests/Evaluation/disagreement_validity.py
"""
import os

import numpy as np

import latentwatch as lw

D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Samples", "Data", "digits-rotation")


def load(n):
    return np.load(os.path.join(D, n))


model = lw.fit(load("train_h2.npy"), targets=load("train_targets.npy"), calibration=load("calibration_h2.npy"),
               calibration_targets=load("calibration_targets.npy"), layer_name="h2")
x = np.concatenate([load("calibration_h2.npy"), load("test_h2.npy")])
host = np.concatenate([load("calibration_predictions.npy"), load("test_predictions.npy")])
alphas = (0.01, 0.05, 0.1, 0.2)
rates = {a: [] for a in alphas}
rng = np.random.default_rng(0)
for _ in range(200):
    order = rng.permutation(len(x))
    a_idx, b_idx = order[: len(x) // 2], order[len(x) // 2:]
    m = model.calibrate_disagreement(x[a_idx], host[a_idx])
    with lw.Monitor([m], outputs="prediction", window=None, shift="off") as mon:
        p = mon.assess_batch(x[b_idx], outputs=host[b_idx].astype(np.float32)).disagreement_p_value
    for a in alphas:
        rates[a].append(float(np.mean(p <= a)))
for a in alphas:
    r = np.array(rates[a])
    print(f"alpha {a}: mean share {r.mean():.4f}, standard deviation {r.std():.4f} over {len(r)} re-splits")
