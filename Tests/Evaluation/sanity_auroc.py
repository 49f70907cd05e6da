#!/usr/bin/env python3
"""Sanity check: class-conditional Gaussian (tied covariance, Ledoit-Wolf) Mahalanobis OOD score
per layer, fitted on <layer>_train with labels_train; AUROC of ID test vs each ood_* set
(OOD = positive, higher score = more OOD), plus max-softmax-probability baseline from logits.
Also: detection rate (TPR on OOD) at the threshold that keeps 95% of ID *cal* samples.
Usage: python sanity_auroc.py <scenario_dir>   (writes <scenario_dir>/sanity_auroc.json)
"""
import glob
import json
import os
import sys

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score


def maha_scorer(x, y):
    classes = np.unique(y)
    mu = np.stack([x[y == c].mean(0) for c in classes]).astype(np.float64)
    cov = LedoitWolf().fit(x - mu[np.searchsorted(classes, y)]).covariance_
    prec = np.linalg.inv(cov)

    def score(z):
        z = z.astype(np.float64)
        d = np.stack([np.einsum("ij,jk,ik->i", z - m, prec, z - m) for m in mu], 1)
        return d.min(1)
    return score


def msp(logits):
    l = logits.astype(np.float64)
    l = l - l.max(1, keepdims=True)
    p = np.exp(l) / np.exp(l).sum(1, keepdims=True)
    return -p.max(1)


def main(d):
    oods = sorted(os.path.basename(p)[len("labels_"):-4] for p in glob.glob(os.path.join(d, "labels_ood_*.npy")))
    layers = sorted({os.path.basename(p)[: -len("_train.npy")] for p in glob.glob(os.path.join(d, "*_train.npy"))}
                    - {"labels"})
    ytr = np.load(os.path.join(d, "labels_train.npy"))
    res = {}
    for layer in layers:
        ld = lambda s: np.load(os.path.join(d, f"{layer}_{s}.npy"))
        scorers = {"maha": maha_scorer(ld("train"), ytr)}
        if layer == "logits":
            scorers["msp"] = msp
        for name, f in scorers.items():
            s_test, s_cal = f(ld("test")), f(ld("cal"))
            thr = np.quantile(s_cal, 0.95)
            row = {}
            for o in oods:
                s_o = f(ld(o))
                auc = roc_auc_score(np.r_[np.zeros(len(s_test)), np.ones(len(s_o))], np.r_[s_test, s_o])
                row[o] = {"auroc": round(float(auc), 4), "tpr_at_cal95": round(float((s_o > thr).mean()), 4)}
            row["_id_test_fpr_at_cal95"] = round(float((s_test > thr).mean()), 4)
            res[f"{layer}/{name}"] = row
    with open(os.path.join(d, "sanity_auroc.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    w = max(len(o) for o in oods)
    print(f"{'AUROC (ID test vs OOD)':>{w}s} " + " ".join(f"{k:>16s}" for k in res))
    for o in oods:
        print(f"{o:>{w}s} " + " ".join(f"{res[k][o]['auroc']:16.3f}" for k in res))
    print(f"{'ID test FPR @cal95':>{w}s} " + " ".join(f"{res[k]['_id_test_fpr_at_cal95']:16.3f}" for k in res))


if __name__ == "__main__":
    main(sys.argv[1])
