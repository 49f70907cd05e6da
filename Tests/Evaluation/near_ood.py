#!/usr/bin/env python3
"""Near-OOD: the class Gaussians beside nearest-neighbour scores, alone and combined.

For each scenario layer (`<layer>_<split>.npy`, `labels_train.npy`, as `make_image.py` / `make_text.py` write them)
every score is fitted on `train` (L2-normalised rows, as the default preparation), calibrated on `cal` and
evaluated as AUROC of `test` against each `ood_*` set (higher = more OOD):

  gda           the class Gaussians with held-out shrinkage (reference_eval.fit_gda_shrunk), -log p(z)
  knn1 / knn50  exact distance to the 1st / 50th nearest training row (deep KNN, Sun et al. 2022)
  proto<M>      distance to the nearest of M k-means centres of the training rows (scikit-learn KMeans, seed 0)
  cproto<M>     the same with M / K centres per class
  core<M>       distance to the nearest of M training rows drawn at random (seed 0)
  gda+X         Cauchy combination of the two conformal p-values (each against `cal`), the statistic a jointly
                calibrated fusion ranks by

Usage:
  OMP_NUM_THREADS=1 python3 Tests/Evaluation/near_ood.py --data DATA/image --layers fc,conv3_gap
"""
import argparse
import json
import os
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_eval import auroc_fpr95, fit_gda_shrunk, knn_distances, l2_normalise  # noqa: E402


def nearest(centres, z, block=2048):
    """Euclidean distance of each row of z to its nearest row of centres."""
    out = np.empty(len(z))
    c2 = (centres * centres).sum(1)
    for s in range(0, len(z), block):
        q = z[s:s + block]
        d2 = (q * q).sum(1)[:, None] - 2.0 * q @ centres.T + c2[None, :]
        out[s:s + block] = np.sqrt(np.clip(d2.min(1), 0.0, None))
    return out


def ivf_nearest(rows, centres, assign, z, nprobe, block=512):
    """Approximate nearest-row distance: scan only the rows of the `nprobe` centres nearest each query."""
    out = np.empty(len(z))
    members = [np.flatnonzero(assign == c) for c in range(len(centres))]
    c2 = (centres * centres).sum(1)
    for i, q in enumerate(z):
        dc = c2 - 2.0 * centres @ q
        probe = np.argpartition(dc, nprobe - 1)[:nprobe] if nprobe < len(centres) else np.arange(len(centres))
        idx = np.concatenate([members[c] for c in probe])
        r = rows[idx]
        d2 = (r * r).sum(1) - 2.0 * r @ q + q @ q
        out[i] = np.sqrt(max(d2.min(), 0.0))
    return out


def conformal_p(cal, s):
    cal = np.sort(cal)
    ge = len(cal) - np.searchsorted(cal, s, side="left")
    return (1.0 + ge) / (len(cal) + 1.0)


def cauchy(*ps):
    return np.mean([np.tan((0.5 - p) * np.pi) for p in ps], axis=0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--layers", required=True)
    ap.add_argument("--prototypes", default="64,256,1024")
    ap.add_argument("--ivf", default="", help="centres:nprobe:cap,... approximate 1-NN over float16 rows")
    ap.add_argument("--only-ivf", action="store_true")
    ap.add_argument("--int8", action="store_true",
                    help="also the index as LatentWatch stores it: rows and centres as integer codes of one scale "
                         "(the 99.99th percentile |x| / 100, clamped to +-127), queries rounded to that grid and "
                         "clamped to +-127, the clamped excess added")
    ap.add_argument("--out")
    a = ap.parse_args()
    ms = [int(m) for m in a.prototypes.split(",")]
    oods = sorted(f[len("labels_ood_"):-4] for f in os.listdir(a.data) if f.startswith("labels_ood_"))
    result = {}
    for layer in a.layers.split(","):
        load = lambda k: np.load(os.path.join(a.data, f"{layer}_{k}.npy")).astype(np.float64)  # noqa: E731
        y = np.load(os.path.join(a.data, "labels_train.npy"))
        train = l2_normalise(load("train"))
        splits = {"cal": load("cal"), "test": load("test")}
        splits.update({o: load(f"ood_{o}") for o in oods})
        splits = {k: l2_normalise(v) for k, v in splits.items()}
        scores = {}
        t = time.time()
        g = fit_gda_shrunk(train, y)
        scores["gda"] = {k: g["score"](v) for k, v in splits.items()}
        for k, v in ([] if a.only_ivf else splits.items()):
            d = knn_distances(train, v, [1, 50])
            scores.setdefault("knn1", {})[k] = d[1]
            scores.setdefault("knn50", {})[k] = d[50]
        rng = np.random.default_rng(0)
        classes = np.unique(y)
        for spec in [x for x in a.ivf.split(",") if x]:
            m, nprobe, cap = (int(v) for v in spec.split(":"))
            sub = train if len(train) <= cap else train[np.sort(rng.choice(len(train), size=cap, replace=False))]
            rows = sub.astype(np.float16).astype(np.float64)
            km = KMeans(n_clusters=m, n_init=1, random_state=0).fit(rows)
            cen = km.cluster_centers_.astype(np.float16).astype(np.float64)
            assign = np.argmin(((rows[:, None, :] - cen[None]) ** 2).sum(2), 1) if len(rows) * m < 4e6 else \
                np.concatenate([np.argmin((rows[s:s + 256] ** 2).sum(1)[:, None] - 2 * rows[s:s + 256] @ cen.T
                                          + (cen ** 2).sum(1)[None], 1) for s in range(0, len(rows), 256)])
            scores[f"ivf{m}p{nprobe}c{cap}"] = {k: ivf_nearest(rows, cen, assign, v, nprobe) for k, v in splits.items()}
            if a.int8:
                mags = np.sort(np.abs(sub).ravel())
                s8 = (mags[int(0.9999 * (len(mags) - 1))] or mags[-1]) / 100.0
                r8 = np.clip(np.rint(sub / s8), -127, 127)
                c8 = np.clip(np.rint(km.cluster_centers_ / s8), -127, 127)

                def code_distance(v):
                    u = v / s8
                    c = np.clip(np.rint(u), -127, 127)
                    excess = np.where(np.abs(u) > 127, np.abs(u) - 127, 0.0)
                    base = ivf_nearest(r8, c8, assign, c, nprobe) ** 2
                    return s8 * np.sqrt(base + (excess ** 2).sum(1))
                scores[f"i8ivf{m}p{nprobe}c{cap}"] = {k: code_distance(v) for k, v in splits.items()}
        for m in ([] if a.only_ivf else ms):
            km = KMeans(n_clusters=m, n_init=1, random_state=0).fit(train)
            scores[f"proto{m}"] = {k: nearest(km.cluster_centers_, v) for k, v in splits.items()}
            per = max(1, m // len(classes))
            cs = np.concatenate([KMeans(n_clusters=per, n_init=1, random_state=0).fit(train[y == c]).cluster_centers_
                                 for c in classes])
            scores[f"cproto{m}"] = {k: nearest(cs, v) for k, v in splits.items()}
            core = train[rng.choice(len(train), size=m, replace=False)]
            scores[f"core{m}"] = {k: nearest(core, v) for k, v in splits.items()}
        for name in [n for n in list(scores) if n != "gda"]:
            pg = {k: conformal_p(scores["gda"]["cal"], v) for k, v in scores["gda"].items()}
            px = {k: conformal_p(scores[name]["cal"], v) for k, v in scores[name].items()}
            scores[f"gda+{name}"] = {k: cauchy(pg[k], px[k]) for k in pg}
        rows = {}
        for name, s in scores.items():
            aucs = {o: auroc_fpr95(s["test"], s[o])[0] for o in oods}
            rows[name] = {"mean": float(np.mean(list(aucs.values()))), **aucs}
        result[layer] = rows
        print(f"== {layer} ({time.time() - t:.0f} s)  " + "  ".join(o[:8] for o in oods))
        for name, r in rows.items():
            print(f"{name:18s} {r['mean']:.4f}  " + "  ".join(f"{r[o]:.3f}" for o in oods))
        sys.stdout.flush()
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
