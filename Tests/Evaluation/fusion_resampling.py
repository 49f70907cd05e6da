#!/usr/bin/env python3
"""The fused p-value's realised alert rate on real in-distribution activations, over many calibration sets.

One calibration split gives one realisation of each rate: given the set, the rate of p <= alpha varies around alpha
with spread about sqrt(alpha / m), which at alpha = 0.001 and m = 7,000 is a third of alpha. This script pools the
calibration and test inputs (both held out from training, so exchangeable), splits them again at random R times into
a calibration set of the original size and a test set, and on each split calibrates every layer's surprise, the
joint calibration of the fused statistic (leave-one-out on the calibration inputs, as LatentWatch's
JointCalibration) and the fused p-values of the test inputs, as Bonferroni, Cauchy and the jointly calibrated Cauchy
and Fisher statistics. It prints each rule's mean realised rate over the splits (the guarantee is on this mean) and
the 5 % / 95 % quantiles across splits (the spread a deployment sees given its one calibration set).

Inputs are each layer's surprises of the calibration and test inputs, as `latentwatch score` writes them (row i the
same input on every layer):

    for l in fc conv3_gap; do
      latentwatch fit --activations DATA/${l}_train.npy --labels DATA/labels_train.npy \\
        --calibration DATA/${l}_cal.npy --layer $l --output $l.lwm
      latentwatch score --model $l.lwm --input DATA/${l}_cal.npy --output ${l}_cal.npy
      latentwatch score --model $l.lwm --input DATA/${l}_test.npy --output ${l}_test.npy
    done
    python3 Tests/Evaluation/fusion_resampling.py --layers fc,conv3_gap --scores . --splits 400

numpy and scipy only; independent of the Swift code except for the surprises it reads.
"""
import argparse
import json
import os

import numpy as np


def conformal(cal_sorted: np.ndarray, s: np.ndarray) -> np.ndarray:
    m = len(cal_sorted)
    return (1 + m - np.searchsorted(cal_sorted, s, side="left")) / (m + 1)


def cauchy(p: np.ndarray) -> np.ndarray:
    return np.tan((0.5 - np.clip(p, 1e-300, 1 - 1e-16)) * np.pi).mean(axis=1)


def fisher(p: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(p, 1e-300, 1)).sum(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", required=True, help="comma-separated layer names")
    ap.add_argument("--scores", required=True, help="folder with <layer>_cal.npy and <layer>_test.npy surprises")
    ap.add_argument("--splits", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    layers = a.layers.split(",")
    cal = [np.load(os.path.join(a.scores, f"{l}_cal.npy")).astype(np.float32).astype(np.float64) for l in layers]
    test = [np.load(os.path.join(a.scores, f"{l}_test.npy")).astype(np.float32).astype(np.float64) for l in layers]
    m = len(cal[0])
    pooled = np.stack([np.concatenate([c, t]) for c, t in zip(cal, test)], axis=1)  # inputs x layers
    n = pooled.shape[0]
    rng = np.random.default_rng(a.seed)
    levels = (0.01, 0.001)
    rules = ("bonferroni", "cauchy", "joint-cauchy", "joint-fisher")
    rates = {r: {lv: [] for lv in levels} for r in rules}
    single = {l: {lv: [] for lv in levels} for l in layers}
    for split in range(a.splits + 1):
        if split == 0:
            idx_cal, idx_test = np.arange(m), np.arange(m, n)  # the data's own split first
        else:
            perm = rng.permutation(n)
            idx_cal, idx_test = perm[:m], perm[m:]
        c, t = pooled[idx_cal], pooled[idx_test]
        sorted_cal = [np.sort(c[:, l]) for l in range(len(layers))]
        p_test = np.stack([conformal(sorted_cal[l], t[:, l]) for l in range(len(layers))], axis=1)
        p_loo = np.stack([conformal(sorted_cal[l], c[:, l]) - 1 / (m + 1) for l in range(len(layers))], axis=1)
        fused = {
            "bonferroni": np.minimum(1, len(layers) * p_test.min(axis=1)),
            "cauchy": 0.5 - np.arctan(cauchy(p_test)) / np.pi,
        }
        for name, stat in (("joint-cauchy", cauchy), ("joint-fisher", fisher)):
            t_cal = np.sort(stat(p_loo).astype(np.float32))
            t_new = stat(p_test).astype(np.float32)
            fused[name] = (1 + m - np.searchsorted(t_cal, t_new, side="left")) / (m + 1)
        if split == 0:
            own = {r: {str(lv): float((fused[r] <= lv).mean()) for lv in levels} for r in rules}
            own.update({l: {str(lv): float((p_test[:, i] <= lv).mean()) for lv in levels}
                        for i, l in enumerate(layers)})
            continue
        for r in rules:
            for lv in levels:
                rates[r][lv].append(float((fused[r] <= lv).mean()))
        for i, l in enumerate(layers):
            for lv in levels:
                single[l][lv].append(float((p_test[:, i] <= lv).mean()))
    print(f"layers {layers}: m = {m} calibration and {n - m} test inputs per split, {a.splits} random splits")
    print(f"{'rule':14s}" + "".join(f" | alpha {lv}: own split, mean over splits [5 %, 95 %]" for lv in levels))
    results = {"layers": layers, "m": m, "test": n - m, "splits": a.splits, "rules": {}}
    for name, table in list(rates.items()) + list(single.items()):
        cells = []
        entry = {}
        for lv in levels:
            v = np.array(table[lv])
            se = v.std(ddof=1) / np.sqrt(len(v))
            q5, q95 = np.quantile(v, [0.05, 0.95])
            cells.append(f" | {own[name][str(lv)]:.4f}, {v.mean():.5f} ± {2 * se:.5f} [{q5:.4f}, {q95:.4f}]")
            entry[str(lv)] = {"own_split": own[name][str(lv)], "mean": float(v.mean()), "two_se": float(2 * se),
                              "q05": float(q5), "q95": float(q95)}
        results["rules"][name] = entry
        print(f"{name:14s}" + "".join(cells))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
