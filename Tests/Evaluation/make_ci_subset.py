#!/usr/bin/env python3
"""Write a small, deterministic subset of a scenario for CI / committing.
Usage: python make_ci_subset.py <scenario_dir> --layers emb_l6,logits [--train 150 --cal 50 --test 50 --ood 100]
Per-class counts for train/cal/test (stratified on labels), first-N-after-shuffle for each ood_* set.
Writes <scenario_dir>/ci/<layer>_<split>.npy (float32) and labels_<split>.npy (int64), same naming.
"""
import argparse
import glob
import os

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--layers", required=True)
ap.add_argument("--train", type=int, default=150)
ap.add_argument("--cal", type=int, default=50)
ap.add_argument("--test", type=int, default=50)
ap.add_argument("--ood", type=int, default=100)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()

rng = np.random.default_rng(a.seed)
out = os.path.join(a.dir, "ci")
os.makedirs(out, exist_ok=True)
layers = a.layers.split(",")
splits = ["train", "cal", "test"] + sorted(
    os.path.basename(p)[len("labels_"):-4] for p in glob.glob(os.path.join(a.dir, "labels_ood_*.npy")))
total = 0
for s in splits:
    y = np.load(os.path.join(a.dir, f"labels_{s}.npy"))
    if s.startswith("ood_"):
        idx = np.sort(rng.permutation(len(y))[: a.ood])
    else:
        n = getattr(a, s)
        idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n] for c in np.unique(y)]))
    arrs = {"labels": y[idx]}
    for l in layers:
        arrs[l] = np.ascontiguousarray(np.load(os.path.join(a.dir, f"{l}_{s}.npy"))[idx], dtype=np.float32)
    for l, v in arrs.items():
        p = os.path.join(out, f"{l}_{s}.npy")
        np.save(p, v)
        total += os.path.getsize(p)
    print(f"{s:22s} n={len(idx)}")
print(f"total {total / 1e6:.2f} MB in {out}")
