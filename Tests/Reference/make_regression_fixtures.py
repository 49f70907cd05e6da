#!/usr/bin/env python3
"""A real regression model and reference values for the output-conditional density (families `regression` and
`regression-tied`, Docs/Statistics.md "Regression models").

The model: scikit-learn's bundled handwritten digits (`load_digits`, no download), each image rotated by an angle drawn
uniformly from [-60, 60] degrees (seed 7, `scipy.ndimage.rotate`, bilinear, same size), and an
`MLPRegressor(hidden_layer_sizes=(64, 32), relu, random_state=0)` trained to predict the angle (in units of 60
degrees). Round digits (0, 8) and strokes (1) make some angles genuinely ambiguous. Splits 60/20/20 (seed 0). The
second hidden layer's activations (`h2`, 32-d, a manual float32 forward pass checked against `predict`) and the
targets in degrees go to `Samples/Data/digits-rotation/`, with an out-of-distribution set: the same digits' images
inverted (1 - x), rotated alike.

The reference, in float64 from those float32 activations, for each family (per-bin full covariances, or one tied
covariance; shrinkage 0.1 and floor 1e-6 as in make_fixtures.py, whose ClassGaussians it reuses; no background):
  * bins: inner edges at numpy's linear quantiles b / 8 of the training targets (b = 1..7), a target's bin
    `searchsorted(inner, y, side="right")`, outer edges the smallest and largest training target; each bin's target
    mean and standard deviation (divisor n);
  * on the test split: log p(z) = logsumexp_b(log pi_b + log N(z; mu_b, Sigma_b)), and Bayes' posterior over bins;
  * the calibrated posterior: the temperature T of make_posterior_fixtures.py fitted on the calibration split's bins,
    softmax_b(-sqrt(q_b) / T);
  * prediction sum_b p_b m_b and spread sqrt(sum_b p_b (s_b^2 + (m_b - prediction)^2)) under both posteriors;
  * the interval: calibration residuals r = |y - prediction| / spread under the calibrated posterior, q = the
    ceil(0.9 (m + 1))-th smallest, and the test split's coverage of prediction -/+ q spread.

Writes Tests/Fixtures/reference/regression_reference.json.

    python3 Tests/Reference/make_regression_fixtures.py      (needs numpy, scipy and scikit-learn)
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.ndimage  # noqa: E402
import scipy.special  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import REF_DIR, REPO, ClassGaussians, save_npy  # noqa: E402
from make_posterior_fixtures import root_distance_logits, temperature  # noqa: E402

DATA = REPO / "Samples" / "Data" / "digits-rotation"
ANGLE_SEED = 7
SPLIT_SEED = 0
BINS = 8
LEVEL = 0.9


def rotate_all(images: np.ndarray, angles: np.ndarray) -> np.ndarray:
    return np.stack([scipy.ndimage.rotate(im, a, reshape=False, order=1, mode="constant", cval=0.0)
                     for im, a in zip(images, angles)]).reshape(len(images), -1)


def hidden(mlp: MLPRegressor, X: np.ndarray) -> np.ndarray:
    """The second hidden layer (after ReLU), in float32 as a host's forward pass computes it."""
    h = X.astype(np.float32)
    for i in range(2):
        h = np.maximum(h @ mlp.coefs_[i].astype(np.float32) + mlp.intercepts_[i].astype(np.float32), 0)
    return h


def bins_of(train_targets: np.ndarray):
    inner = np.unique(np.quantile(train_targets, np.arange(1, BINS) / BINS))
    b = np.searchsorted(inner, train_targets, side="right")
    counts = np.bincount(b, minlength=len(inner) + 1)
    assert counts.min() >= 2, counts
    edges = np.concatenate([[train_targets.min()], inner, [train_targets.max()]])
    means = np.array([train_targets[b == k].mean() for k in range(len(counts))])
    spreads = np.array([train_targets[b == k].std() for k in range(len(counts))])
    return inner, edges, means, spreads


def moments(post: np.ndarray, means: np.ndarray, spreads: np.ndarray):
    pred = post @ means
    var = post @ (spreads ** 2) + (post * (means[None, :] - pred[:, None]) ** 2).sum(axis=1)
    return pred, np.sqrt(var)


def main() -> None:
    digits = load_digits()
    images = digits.images / 16.0
    angles = np.random.default_rng(ANGLE_SEED).uniform(-60, 60, size=len(images))
    X = rotate_all(images, angles)
    X_ood = rotate_all(1.0 - images, angles)
    idx = np.arange(len(X))
    train, rest = train_test_split(idx, test_size=0.4, random_state=SPLIT_SEED)
    cal, test = train_test_split(rest, test_size=0.5, random_state=SPLIT_SEED)
    mlp = MLPRegressor(hidden_layer_sizes=(64, 32), activation="relu", random_state=0, max_iter=2000)
    mlp.fit(X[train], angles[train] / 60.0)
    out = lambda h: (h @ mlp.coefs_[2] + mlp.intercepts_[2]).ravel()  # noqa: E731
    assert np.allclose(out(hidden(mlp, X[test]).astype(np.float64)), mlp.predict(X[test]), atol=1e-4)
    mae = float(np.abs(mlp.predict(X[test]) * 60 - angles[test]).mean())

    DATA.mkdir(parents=True, exist_ok=True)
    acts = {}
    for name, rows in (("train", train), ("calibration", cal), ("test", test)):
        acts[name] = hidden(mlp, X[rows])
        save_npy(DATA / f"{name}_h2.npy", acts[name])
        save_npy(DATA / f"{name}_targets.npy", angles[rows].astype("<f8"))
        save_npy(DATA / f"{name}_predictions.npy", (mlp.predict(X[rows]) * 60).astype("<f8"))
    save_npy(DATA / "ood_inverted_h2.npy", hidden(mlp, X_ood[test]))

    y = {name: angles[rows] for name, rows in (("train", train), ("calibration", cal), ("test", test))}
    inner, edges, means, spreads = bins_of(y["train"])
    bins = {name: np.searchsorted(inner, v, side="right") for name, v in y.items()}
    A = {name: a.astype(np.float64) for name, a in acts.items()}
    cases = []
    for family in ("regression", "regression-tied"):
        model = ClassGaussians(A["train"], bins["train"], tied=family == "regression-tied")
        assert list(model.classes) == list(range(len(means)))
        D = A["test"].shape[1]
        d2 = np.stack([g.d2(A["test"]) for g in model.gauss], axis=1)
        joint = np.log(model.priors)[None, :] - 0.5 * (D * np.log(2 * np.pi) + model.logdets[None, :] + d2)
        logpx = scipy.special.logsumexp(joint, axis=1)
        bayes = np.exp(joint - logpx[:, None])
        pred_bayes, spread_bayes = moments(bayes, means, spreads)
        t = temperature(root_distance_logits(model, A["calibration"]), bins["calibration"])

        def calibrated(Z: np.ndarray) -> np.ndarray:
            a = root_distance_logits(model, Z) / t
            return np.exp(a - scipy.special.logsumexp(a, axis=1, keepdims=True))

        pred_cal, spread_cal = moments(calibrated(A["calibration"]), means, spreads)
        residuals = np.sort(np.abs(y["calibration"] - pred_cal) / spread_cal)
        m = len(residuals)
        q = float(residuals[int(np.ceil(LEVEL * (m + 1))) - 1])
        pred, spread = moments(calibrated(A["test"]), means, spreads)
        coverage = float(np.mean(np.abs(y["test"] - pred) <= q * spread))
        cases.append({
            "family": family, "temperature": t, "q": q, "coverage": coverage,
            "test_logpx": logpx.tolist(),
            "bayes_prediction": pred_bayes.tolist(), "bayes_spread": spread_bayes.tolist(),
            "prediction": pred.tolist(), "spread": spread.tolist(),
        })
        print(f"{family}: T {t:.4g}, q90 {q:.4g}, test coverage {coverage:.3f}, "
              f"MAE of the bin prediction {np.abs(pred - y['test']).mean():.2f} deg")
    ref = {"bins": BINS, "level": LEVEL, "edges": edges.tolist(), "means": means.tolist(),
           "spreads": spreads.tolist(), "cases": cases}
    (REF_DIR / "regression_reference.json").write_text(json.dumps(ref) + "\n")
    print(f"splits {len(train)}/{len(cal)}/{len(test)}; the MLP's test MAE {mae:.2f} deg")


if __name__ == "__main__":
    main()
