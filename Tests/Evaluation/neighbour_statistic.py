#!/usr/bin/env python3
"""Which statistic combines the surprise with the neighbour distance: Cauchy (what the SDK builds), Cauchy with each
p-value capped at 1/2 (an input less surprising than the median cannot cancel the other score's evidence), or the
smaller p-value. numpy/scikit-learn only: the class Gaussians (reference_eval.fit_gda_shrunk; for regression
folders on 10 quantile bins of the targets), the 1-NN distance over at most 32,768 float16 training rows searched
in 2 of about sqrt(rows) k-means cells (near_ood.ivf_nearest), both turned into conformal p-values against `cal`;
prints the mean AUROC of test against each OOD set for each statistic.

Usage (folders as make_image.py / make_text.py write them; `reg:` for make_regression.py /
make_tabular_regression.py arrays):
  OMP_NUM_THREADS=1 python3 Tests/Evaluation/neighbour_statistic.py DATA/image:conv3_gap DATA/text:emb_l6 \
      reg:DATA/regression/arrays:fc reg:DATA/tabular-regression/arrays:h2
"""
import os
import sys

import numpy as np
from sklearn.cluster import KMeans

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from near_ood import conformal_p, ivf_nearest  # noqa: E402
from reference_eval import auroc_fpr95, fit_gda_shrunk, l2_normalise  # noqa: E402



def cauchy(ps, cap):
    return np.mean([np.tan((0.5 - np.clip(np.minimum(p, cap), 1e-300, 1 - 1e-16)) * np.pi) for p in ps], axis=0)


def run(data, layer, reg=False):
    if reg:
        load = lambda k: np.load(os.path.join(data, f"{k}_{layer}.npy")).astype(np.float64)
        names = sorted({f.split("_")[0] for f in os.listdir(data) if f.endswith(f"_{layer}.npy")})
        oods = [n for n in names if n not in ("train", "calibration", "test")]
        t = np.load(os.path.join(data, "train_targets.npy"))
        y = np.searchsorted(np.quantile(t, np.linspace(0, 1, 11)[1:-1]), t)
        splits = {"cal": load("calibration"), "test": load("test")}; splits.update({o: load(o) for o in oods})
    else:
        load = lambda k: np.load(os.path.join(data, f"{layer}_{k}.npy")).astype(np.float64)
        y = np.load(os.path.join(data, "labels_train.npy"))
        oods = sorted(f[len("labels_ood_"):-4] for f in os.listdir(data) if f.startswith("labels_ood_"))
        splits = {"cal": load("cal"), "test": load("test")}; splits.update({o: load(f"ood_{o}") for o in oods})
    train = l2_normalise(load("train"))
    splits = {k: l2_normalise(v) for k, v in splits.items()}
    g = fit_gda_shrunk(train, y)
    gs = {k: g["score"](v) for k, v in splits.items()}
    rng = np.random.default_rng(0)
    sub = train if len(train) <= 32768 else train[np.sort(rng.choice(len(train), 32768, replace=False))]
    rows = sub.astype(np.float16).astype(np.float64)
    m = int(round(np.sqrt(len(rows))))
    km = KMeans(n_clusters=m, n_init=1, random_state=0).fit(rows)
    cen = km.cluster_centers_
    assign = km.labels_
    ns = {k: ivf_nearest(rows, cen, assign, v, 2) for k, v in splits.items()}
    pg = {k: conformal_p(gs["cal"], v) for k, v in gs.items()}
    pn = {k: conformal_p(ns["cal"], v) for k, v in ns.items()}
    out = {}
    for name, cap in [("cauchy", 1.0), ("cap0.5", 0.5), ("min", None)]:
        if cap is None:
            st = {k: -np.minimum(pg[k], pn[k]) for k in pg}
        else:
            st = {k: cauchy([pg[k], pn[k]], cap) for k in pg}
        a = {o: auroc_fpr95(st["test"], st[o])[0] for o in oods}
        out[name] = (np.mean(list(a.values())), a)
    print(f"{data}:{layer}", " ".join(f"{n} {v[0]:.4f}" for n, v in out.items()))
    for o in oods:
        print("   ", o[:12].ljust(12), " ".join(f"{out[n][1][o]:.3f}" for n in out))
    sys.stdout.flush()


if __name__ == "__main__":
    for spec in sys.argv[1:]:
        reg = spec.startswith("reg:")
        d, l = spec[4:].rsplit(":", 1) if reg else spec.rsplit(":", 1)
        run(d, l, reg)
