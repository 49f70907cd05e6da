#!/usr/bin/env python3
"""Which calibrated class posterior: candidate forms of p(y | z) from class Gaussians, each with a temperature fitted
on the labelled calibration split, compared by expected calibration error (ECE, 15 bins) on the test split and by
how well their entropy ranks the classifier's misclassifications (Docs/Evaluation.md, finding 7).

The class Gaussians are an independent numpy model (L2-normalised activations, MLE covariance per class shrunk by
a fixed lambda towards (tr C / D) I plus a 1e-6 floor), not LatentWatch's held-out shrinkage, so the figures are
close to but not those of `latentwatch-eval`. Forms (logits per class k, T fitted):
  loglik      log pi_k + log p(z | k)                       (Bayes' posterior, tempered)
  -dist       -sqrt(d2_k)                                   (Mahalanobis distance)
  -d2         -d2_k / 2
  root        -sqrt(d2_k + c_k - min_j c_j), c_k = log det Sigma_k - 2 log pi_k   (LatentWatch's form)
  root-gap    -sqrt(2 (max_j l_j - l_k)), l = log joint
Temperature fits: negative log-likelihood and Brier score, both on the calibration split.

    python3 Tests/Evaluation/posterior_forms.py --data DATA --lambda 0.001 image:fc image:conv3_gap text:emb_l6 ...
    python3 Tests/Evaluation/posterior_forms.py --lambda 0.03 digits:h1 digits:h2     (the bundled digits MLP)

DATA is the directory of the image and text scenarios (Tests/Evaluation/README.md).
"""
import argparse
import os

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import roc_auc_score

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ece(p: np.ndarray, y: np.ndarray) -> float:
    conf, correct = p.max(1), p.argmax(1) == y
    b = np.minimum((conf * 15).astype(int), 14)
    return float(sum(abs(correct[b == i].mean() - conf[b == i].mean()) * (b == i).mean() for i in range(15)
                     if (b == i).any()))


def load(data: str, scenario: str, layer: str):
    if scenario == "digits":
        d = os.path.join(ROOT, "Samples", "Data", "digits-mlp")
        f = lambda n: np.load(os.path.join(d, f"{n}.npy"))  # noqa: E731
        x = {s: f(f"{s}_{layer}").astype(np.float64) for s in ("train", "calibration", "test")}
        y = {s: f(f"{s}_labels").astype(int) for s in ("train", "calibration", "test")}
        logits = f("test_logits")
        return x["train"], x["calibration"], x["test"], y["train"], y["calibration"], y["test"], logits
    d = os.path.join(data, scenario)
    f = lambda n: np.load(os.path.join(d, f"{n}.npy"))  # noqa: E731
    x = {s: f(f"{layer}_{s}").astype(np.float64) for s in ("train", "cal", "test")}
    y = {s: f(f"labels_{s}").astype(int) for s in ("train", "cal", "test")}
    return x["train"], x["cal"], x["test"], y["train"], y["cal"], y["test"], f("logits_test")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="directory holding image/ and text/")
    ap.add_argument("--lambda", dest="lam", type=float, default=1e-3, help="fixed shrinkage of the class covariances")
    ap.add_argument("layers", nargs="+", help="scenario:layer, scenario one of image, text, digits")
    a = ap.parse_args()
    for spec in a.layers:
        scenario, layer = spec.split(":")
        tr, cal, te, ytr, ycal, yte, logits = load(a.data, scenario, layer)
        classes = np.unique(ytr)
        misclassified = classes[logits.argmax(1)] != yte
        norm = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
        tr, cal, te = norm(tr), norm(cal), norm(te)
        d = tr.shape[1]
        d2 = {"cal": [], "test": []}
        const = []
        for c in classes:
            xc = tr[ytr == c]
            s = np.cov(xc.T, bias=True)
            t = np.trace(s) / d
            s = (1 - a.lam) * s + (a.lam + 1e-6) * t * np.eye(d)
            chol = np.linalg.cholesky(s)
            const.append(2 * np.log(np.diag(chol)).sum() - 2 * np.log(len(xc) / len(tr)))
            for split, x in (("cal", cal), ("test", te)):
                z = np.linalg.solve(chol, (x - xc.mean(0)).T)
                d2[split].append((z * z).sum(0))
        const = np.array(const)

        def forms(split: str):
            m2 = np.stack(d2[split], 1)
            joint = -0.5 * (m2 + const)
            return {
                "loglik": joint,
                "-dist": -np.sqrt(m2),
                "-d2": -0.5 * m2,
                "root": -np.sqrt(m2 + const - const.min()),
                "root-gap": -np.sqrt(2 * (joint.max(1, keepdims=True) - joint)),
            }

        fc, ft = forms("cal"), forms("test")
        yc, yt = np.searchsorted(classes, ycal), np.searchsorted(classes, yte)
        onehot = np.eye(len(classes))[yc]
        for name in fc:
            cells = []
            for objective in ("nll", "brier"):
                def loss(lb, a_=fc[name]):
                    lp = log_softmax(a_ * np.exp(lb), 1)
                    if objective == "nll":
                        return -lp[np.arange(len(yc)), yc].mean()
                    return ((np.exp(lp) - onehot) ** 2).sum(1).mean()
                grid = np.linspace(-15, 10, 64)
                j = int(np.argmin([loss(g) for g in grid]))
                r = minimize_scalar(loss, bounds=(grid[max(j - 1, 0)], grid[min(j + 1, 63)]), method="bounded")
                beta = np.exp(r.x)
                p = np.exp(log_softmax(ft[name] * beta, 1))
                entropy = -(p * np.log(np.maximum(p, 1e-300))).sum(1)
                cells.append(f"{objective}: T {1 / beta:8.3g} ECE {ece(p, yt):.4f} "
                             f"misclassification AUROC {roc_auc_score(misclassified, entropy):.4f}")
            print(f"{scenario:6} {layer:12} {name:9} " + " | ".join(cells))


if __name__ == "__main__":
    main()
