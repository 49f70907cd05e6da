#!/usr/bin/env python3
"""Reference values for the calibrated class posterior (LatentModel.posteriorTemperature, Docs/Statistics.md).

For GDA and tied class Gaussians on the digits-MLP activations (h1, h2; raw; shrinkage 0.1 and floor 1e-6 as in
make_fixtures.py, whose ClassGaussians it reuses), fitted on the train split:
  * root-distance logits a_k(x) = -sqrt(q_k(x)), q_k = -2 log p(x, k) - min_j c_j, with
    c_j = -2 log pi_j + D log 2 pi + log det Sigma_j (so q_k = d2_k + c_k - min_j c_j >= 0);
  * the temperature T minimising the mean Brier score of softmax(a / T) against the calibration labels, over
    T in [1e-3, 1e6] (a grid in log T, then scipy.optimize.minimize_scalar, bounded, xatol 1e-12);
  * on the test split, the calibrated posterior softmax(a / T) and its entropy (nats).
Also one synthetic case (random logits and labels, seed 7) for the optimiser alone.

Writes Tests/Fixtures/reference/posterior_calibration.json.

    python3 Tests/Reference/make_posterior_fixtures.py      (needs numpy and scipy)
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
import scipy.special  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import DATA_DIR, REF_DIR, ClassGaussians  # noqa: E402


def temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """argmin over T in [1e-3, 1e6] of the mean Brier score of softmax(logits / T): scipy.optimize.brute on 64
    points evenly spaced in log T, then minimize_scalar (bounded) between the best point's neighbours."""
    onehot = np.eye(logits.shape[1])[y]

    def brier(log_t) -> float:
        z = logits / np.exp(float(np.ravel(log_t)[0]))
        p = np.exp(z - scipy.special.logsumexp(z, axis=1, keepdims=True))
        return float(((p - onehot) ** 2).sum(axis=1).mean())

    grid = np.linspace(np.log(1e-3), np.log(1e6), 64)
    values = [brier(g) for g in grid]
    j = int(np.argmin(values))
    lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, 63)]
    r = scipy.optimize.minimize_scalar(brier, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    return float(np.exp(r.x if r.fun <= values[j] else grid[j]))


def root_distance_logits(model: ClassGaussians, X: np.ndarray) -> np.ndarray:
    d2 = np.stack([g.d2(X) for g in model.gauss], axis=1)
    D = X.shape[1]
    c = -2 * np.log(model.priors) + D * np.log(2 * np.pi) + model.logdets
    return -np.sqrt(d2 + (c - c.min())[None, :])


def main() -> None:
    load = lambda split, layer: np.load(DATA_DIR / f"{split}_{layer}.npy").astype(np.float64)  # noqa: E731
    labels = {s: np.load(DATA_DIR / f"{s}_labels.npy") for s in ("train", "calibration", "test")}
    cases = []
    for family in ("gda", "tied"):
        for layer in ("h1", "h2"):
            model = ClassGaussians(load("train", layer), labels["train"], tied=family == "tied")
            index = {int(k): i for i, k in enumerate(model.classes)}
            ycal = np.array([index[int(k)] for k in labels["calibration"]])
            t = temperature(root_distance_logits(model, load("calibration", layer)), ycal)
            a = root_distance_logits(model, load("test", layer)) / t
            post = np.exp(a - scipy.special.logsumexp(a, axis=1, keepdims=True))
            entropy = -np.sum(scipy.special.xlogy(post, post), axis=1)
            cases.append({"family": family, "layer": layer, "temperature": t,
                          "test_posterior": post.ravel().tolist(), "test_entropy": entropy.tolist()})
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(300, 5)) * 4
    y = np.where(rng.random(300) < 0.7, logits.argmax(1), rng.integers(0, 5, 300))
    synthetic = {"classes": 5, "logits": logits.ravel().tolist(), "labels": y.tolist(),
                 "temperature": temperature(logits, y)}
    out = REF_DIR / "posterior_calibration.json"
    out.write_text(json.dumps({"cases": cases, "synthetic": synthetic}, indent=None) + "\n")
    print(f"wrote {out}: " + ", ".join(f"{c['family']} {c['layer']} T={c['temperature']:.6g}" for c in cases)
          + f", synthetic T={synthetic['temperature']:.6g}")


if __name__ == "__main__":
    main()
