#!/usr/bin/env python3
"""Does monitoring the activation's norm beside the L2-normalised density fix what L2 normalisation throws away?
For each layer: the default model (L2 normalisation) and a second, one-dimensional score, the distance of
log ||z|| from its median on the fitting rows, turned into a conformal p-value on the calibration rows; the two
p-values fused by the Cauchy statistic (what a jointly calibrated fusion ranks by). Prints the surprise AUROC per OOD
set of the default and of the fusion, on the regression scenarios' saved arrays (make_regression.py,
make_tabular_regression.py) and the classification CI subsets (Tests/Fixtures/eval-ci).

    LATENTWATCH_LIBRARY=.build/debug/libLatentWatchC.so PYTHONPATH=Sources/Python \\
        python3 Tests/Evaluation/norm_fusion.py [/work/evaldata]
"""
import glob
import os
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

import latentwatch as lw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVALDATA = sys.argv[1] if len(sys.argv) > 1 else "/work/evaldata"


def auroc(inside, outside):
    return roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))], np.r_[inside, outside])


def p_value(calibration, x):
    """Conformal p-values of scores x (larger more unusual) against the calibration scores."""
    c = np.sort(calibration)
    return (1 + len(c) - np.searchsorted(c, x, side="left")) / (len(c) + 1)


def cauchy(p):
    p = np.clip(np.stack(p), 1e-300, 1 - 1e-16)
    return np.tan((0.5 - p) * np.pi).mean(0)


def report(name, model, x, fit_rows, cal_key, ood):
    log_norm = {k: np.log(np.linalg.norm(v.astype(np.float64), axis=1) + 1e-12) for k, v in x.items()}
    med = np.median(np.log(np.linalg.norm(fit_rows.astype(np.float64), axis=1) + 1e-12))
    dist = {k: np.abs(v - med) for k, v in log_norm.items()}
    p = {k: (model.score(x[k]).surprise_p_value, p_value(dist[cal_key], dist[k])) for k in ["test"] + ood}
    for o in ood:
        a = auroc(-p["test"][0], -p[o][0])
        b = auroc(cauchy(p["test"]), cauchy(p[o]))
        print(f"| {name} | {o} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")


print("| model, layer | OOD set | default | default and norm fused | difference |\n|---|---|---|---|---|")
for scenario, layers in (("regression", ("fc", "gap")), ("tabular-regression", ("h2", "h1"))):
    d = os.path.join(EVALDATA, scenario, "arrays")
    if not os.path.isdir(d):
        print(f"(skipped {d}: run the scenario script first)")
        continue
    ood = sorted(os.path.basename(f)[: -len("_targets.npy")] for f in glob.glob(f"{d}/*_targets.npy"))
    ood = [o for o in ood if o not in ("train", "calibration", "test")]
    for layer in layers:
        x = {k: np.load(f"{d}/{k}_{layer}.npy") for k in ["train", "calibration", "test"] + ood}
        m = lw.fit(x["train"], targets=np.load(f"{d}/train_targets.npy"), calibration=x["calibration"],
                   calibration_targets=np.load(f"{d}/calibration_targets.npy"), layer_name=layer)
        report(f"{scenario} {layer}", m, x, x["train"], "calibration", ood)
for scenario, layer in (("image", "fc"), ("image", "conv3_gap"), ("text", "emb_l6")):
    d = os.path.join(ROOT, "Tests", "Fixtures", "eval-ci", scenario)
    ood = sorted(os.path.basename(f)[len(layer) + 1: -4] for f in glob.glob(f"{d}/{layer}_ood_*.npy"))
    x = {k: np.load(f"{d}/{layer}_{k}.npy").astype(np.float32) for k in ["train", "cal", "test"] + ood}
    m = lw.fit(x["train"], labels=np.load(f"{d}/labels_train.npy"), calibration=x["cal"], layer_name=layer)
    report(f"{scenario} (CI subset) {layer}", m, x, x["train"], "cal", ood)
