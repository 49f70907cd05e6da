"""Spread of scikit-learn GaussianMixture's OOD AUROC over k-means initialisation seeds (Docs/Evaluation.md).

python3 Tests/Evaluation/gmm_seed_spread.py --data DATA/text --layer emb_l6 [--seeds 6] [--components 8]
Fits GaussianMixture(8, full, random_state=seed) on <layer>_train.npy, scores test and every ood_* set with
-score_samples, prints n_iter_ and the mean AUROC (ID test negative, OOD positive) per seed.
"""
import argparse
import glob
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--layer", required=True)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--components", type=int, default=8)
    a = ap.parse_args()
    load = lambda s: np.load(os.path.join(a.data, f"{a.layer}_{s}.npy")).astype(np.float64)  # noqa: E731
    train, test = load("train"), load("test")
    prefix = os.path.join(a.data, f"{a.layer}_ood_")
    oods = {f[len(prefix):-4]: np.load(f).astype(np.float64) for f in sorted(glob.glob(prefix + "*.npy"))}
    means = []
    for seed in range(a.seeds):
        g = GaussianMixture(a.components, covariance_type="full", random_state=seed).fit(train)
        neg = -g.score_samples(test)
        aurocs = [roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(o))], np.r_[neg, -g.score_samples(o)])
                  for o in oods.values()]
        means.append(float(np.mean(aurocs)))
        print(f"seed {seed}: n_iter {g.n_iter_}, mean AUROC {means[-1]:.4f}", flush=True)
    print(f"{a.layer}: mean AUROC over {a.seeds} seeds: min {min(means):.4f}, median {np.median(means):.4f}, "
          f"max {max(means):.4f}")


if __name__ == "__main__":
    main()
