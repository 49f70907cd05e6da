#!/usr/bin/env python3
"""Build LatentWatch's real-data sample bundle and the float64 reference fixtures.

Run from the repository root:

    python3 Tests/Reference/make_fixtures.py

Needs numpy, scipy and scikit-learn (`pip install numpy scipy scikit-learn`).
No network access: the data set is scikit-learn's bundled copy of the UCI
Optical Recognition of Handwritten Digits data (`load_digits`).

Writes
  Samples/Data/digits-mlp/        activations (float32), labels, MLP weights, demo stream
  Tests/Fixtures/reference/       float64 / int64 reference values + MANIFEST.md + auroc.json

The script is deterministic: rerunning it produces byte-identical files
(BLAS threads are pinned to 1; the .npz is written with fixed zip timestamps).
"""

import os

# Pin BLAS threading before numpy is imported: keeps CPU use small and results reproducible.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import io
import json
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import scipy
import scipy.linalg
import scipy.special
import scipy.stats
import sklearn
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "Samples" / "Data" / "digits-mlp"
REF_DIR = REPO / "Tests" / "Fixtures" / "reference"

SPLIT_SEED = 0          # train/calibration/test split
NOISE_SEED = 12345      # uniform-noise far-OOD images
STREAM_SEED = 2024      # permutation of ood_digits used in the demo stream
GMM_SEED = 0            # np.random.default_rng(0).choice(N, 5) for GMM initial means
LAMBDA = 0.1            # shrinkage
FLOOR = 1e-6            # floor ratio
PCA_K = 16
GMM_K = 5
GMM_REG = 1e-4
LAYERS = ("h1", "h2")
SPLITS = ("train", "calibration", "test", "ood_digits", "ood_inverted", "ood_noise")
STREAM_ID = 200
STREAM_OOD = 200


# --------------------------------------------------------------------------- I/O helpers

def save_npy(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr)
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))  # little-endian, C order
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=(1, 0), allow_pickle=False)


def save_npz_deterministic(path: Path, arrays: dict) -> None:
    """Like np.savez (uncompressed, members NAME.npy) but with fixed zip timestamps."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), version=(1, 0),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


REF_ENTRIES = []   # (section, filename, shape, dtype, meaning)


def ref(section: str, name: str, arr, meaning: str) -> None:
    arr = np.asarray(arr)
    if arr.dtype.kind in "iub":
        arr = arr.astype("<i8")
    else:
        arr = arr.astype("<f8")
    fname = name + ".npy"
    save_npy(REF_DIR / fname, arr)
    REF_ENTRIES.append((section, fname, arr.shape, str(arr.dtype), meaning))


def shape_str(shape) -> str:
    return "()" if len(shape) == 0 else "[" + ", ".join(str(s) for s in shape) + "]"


# --------------------------------------------------------------------------- math (float64)

def mle_cov(X: np.ndarray, mean: np.ndarray) -> np.ndarray:
    Z = X - mean
    return (Z.T @ Z) / X.shape[0]


def regularise(C: np.ndarray, lam: float = LAMBDA, floor: float = FLOOR) -> np.ndarray:
    D = C.shape[0]
    t = np.trace(C) / D
    return (1.0 - lam) * C + lam * t * np.eye(D) + floor * t * np.eye(D)


class Gauss:
    """One Gaussian N(mu, Sigma) evaluated through a Cholesky factor."""

    def __init__(self, mu: np.ndarray, Sigma: np.ndarray):
        self.mu = mu
        self.Sigma = Sigma
        self.L = scipy.linalg.cholesky(Sigma, lower=True)
        self.logdet = 2.0 * np.sum(np.log(np.diag(self.L)))

    def d2(self, X: np.ndarray) -> np.ndarray:
        Z = scipy.linalg.solve_triangular(self.L, (X - self.mu).T, lower=True)
        return np.sum(Z * Z, axis=0)

    def logpdf(self, X: np.ndarray) -> np.ndarray:
        D = X.shape[1]
        return -0.5 * (D * np.log(2.0 * np.pi) + self.logdet + self.d2(X))


class ClassGaussians:
    """GDA (one regularised full covariance per class) or tied (shared regularised covariance)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, tied: bool):
        self.classes = np.unique(y)
        K = len(self.classes)
        N, D = X.shape
        self.counts = np.array([np.sum(y == k) for k in self.classes], dtype=np.int64)
        self.priors = self.counts / N
        self.means = np.stack([X[y == k].mean(axis=0) for k in self.classes])
        if tied:
            C = np.zeros((D, D))
            for i, k in enumerate(self.classes):
                Z = X[y == k] - self.means[i]
                C += Z.T @ Z
            C /= N
            S = regularise(C)
            self.gauss = [Gauss(self.means[i], S) for i in range(K)]
        else:
            self.gauss = [Gauss(self.means[i], regularise(mle_cov(X[y == k], self.means[i])))
                          for i, k in enumerate(self.classes)]
        self.logdets = np.array([g.logdet for g in self.gauss])

    def evaluate(self, X: np.ndarray, bg: Gauss) -> dict:
        d2 = np.stack([g.d2(X) for g in self.gauss], axis=1)              # [N, K]
        D = X.shape[1]
        logpxk = -0.5 * (D * np.log(2.0 * np.pi) + self.logdets[None, :] + d2)
        joint = np.log(self.priors)[None, :] + logpxk
        logpx = scipy.special.logsumexp(joint, axis=1)
        post = np.exp(joint - logpx[:, None])
        entropy = -np.sum(scipy.special.xlogy(post, post), axis=1)     # 0 log 0 = 0
        d2_0 = bg.d2(X)
        return dict(logpx=logpx, logpxk=logpxk, posterior=post, entropy=entropy,
                    maha_min=d2.min(axis=1), rmd=(d2 - d2_0[:, None]).min(axis=1), d2=d2)


def pca_fit(X: np.ndarray):
    mean = X.mean(axis=0)
    evals, evecs = np.linalg.eigh(mle_cov(X, mean))
    order = np.argsort(evals)[::-1]
    evals = evals[order]
    comps = evecs[:, order].T                                            # rows = components
    # Deterministic sign: the largest-|.| entry of each component is positive.
    idx = np.argmax(np.abs(comps), axis=1)
    signs = np.sign(comps[np.arange(comps.shape[0]), idx])
    signs[signs == 0] = 1.0
    comps = comps * signs[:, None]
    return mean, comps, evals


def l2_normalise(X: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(X, axis=1, keepdims=True)
    out = np.zeros_like(X)
    nz = n[:, 0] > 0
    out[nz] = X[nz] / n[nz]
    return out


# --------------------------------------------------------------------------- main

def main() -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    REF_DIR.mkdir(parents=True, exist_ok=True)
    for d in (DATA_DIR, REF_DIR):
        for p in d.glob("*.npy"):
            p.unlink()

    # ---------------- data and splits
    digits = load_digits()
    X_all = digits.data.astype(np.float64) / 16.0
    y_all = digits.target.astype(np.int64)
    id_mask = y_all <= 5
    X_id, y_id = X_all[id_mask], y_all[id_mask]
    X_ood, y_ood = X_all[~id_mask], y_all[~id_mask]

    X_train, X_rest, y_train, y_rest = train_test_split(
        X_id, y_id, train_size=0.6, stratify=y_id, random_state=SPLIT_SEED)
    X_cal, X_test, y_cal, y_test = train_test_split(
        X_rest, y_rest, train_size=0.5, stratify=y_rest, random_state=SPLIT_SEED)

    X_inv = 1.0 - X_test
    X_noise = np.random.default_rng(NOISE_SEED).uniform(0.0, 1.0, size=X_test.shape)

    pixels = dict(train=X_train, calibration=X_cal, test=X_test, ood_digits=X_ood,
                  ood_inverted=X_inv, ood_noise=X_noise)
    labels = dict(train=y_train, calibration=y_cal, test=y_test, ood_digits=y_ood,
                  ood_inverted=np.full(len(X_inv), -1, np.int64),
                  ood_noise=np.full(len(X_noise), -1, np.int64))

    # ---------------- model
    mlp = MLPClassifier(hidden_layer_sizes=(128, 64), activation="relu",
                        random_state=0, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(X_train, y_train)
    acc = {s: float(mlp.score(pixels[s], labels[s])) for s in ("train", "calibration", "test")}

    W1, W2, W3 = mlp.coefs_
    b1, b2, b3 = mlp.intercepts_

    def forward(X):
        h1 = np.maximum(X @ W1 + b1, 0.0)
        h2 = np.maximum(h1 @ W2 + b2, 0.0)
        return h1, h2, h2 @ W3 + b3

    fwd_err = 0.0
    for s in SPLITS:
        _, _, lg = forward(pixels[s])
        p = scipy.special.softmax(lg, axis=1)
        fwd_err = max(fwd_err, float(np.max(np.abs(p - mlp.predict_proba(pixels[s])))))
    assert fwd_err < 1e-10, f"manual forward pass disagrees with predict_proba: {fwd_err}"

    # Also check the float32 weights reproduce the float32 activations closely.
    W32 = [w.astype(np.float32) for w in (W1, b1, W2, b2, W3, b3)]

    acts = {}  # float32 activations, as stored
    for s in SPLITS:
        h1, h2, lg = forward(pixels[s])
        acts[s] = dict(h1=h1.astype(np.float32), h2=h2.astype(np.float32),
                       logits=lg.astype(np.float32))
        for layer in ("h1", "h2", "logits"):
            save_npy(DATA_DIR / f"{s}_{layer}.npy", acts[s][layer])
        save_npy(DATA_DIR / f"{s}_labels.npy", labels[s].astype("<i8"))

    x32 = X_test.astype(np.float32)
    h1_32 = np.maximum(x32 @ W32[0] + W32[1], 0)
    h2_32 = np.maximum(h1_32 @ W32[2] + W32[3], 0)
    lg_32 = h2_32 @ W32[4] + W32[5]
    f32_err = float(np.max(np.abs(lg_32 - acts["test"]["logits"])))

    save_npz_deterministic(DATA_DIR / "mlp_weights.npz",
                           dict(W1=W32[0], b1=W32[1], W2=W32[2], b2=W32[3], W3=W32[4], b3=W32[5]))
    save_npy(DATA_DIR / "test_pixels.npy", X_test.astype("<f4"))

    # ---------------- demo stream
    perm = np.random.default_rng(STREAM_SEED).permutation(len(X_ood))[:STREAM_OOD]
    id_idx = np.arange(STREAM_ID) % len(X_test)
    if len(X_test) < STREAM_ID:
        id_idx = np.random.default_rng(STREAM_SEED).permutation(len(X_test))[id_idx]
    for layer in ("h1", "h2"):
        save_npy(DATA_DIR / f"stream_{layer}.npy",
                 np.concatenate([acts["test"][layer][id_idx], acts["ood_digits"][layer][perm]]))
    save_npy(DATA_DIR / "stream_pixels.npy",
             np.concatenate([X_test[id_idx], X_ood[perm]]).astype("<f4"))
    save_npy(DATA_DIR / "stream_labels.npy",
             np.concatenate([y_test[id_idx], y_ood[perm]]).astype("<i8"))
    save_npy(DATA_DIR / "stream_ood_start.npy", np.array(STREAM_ID, dtype="<i8"))

    # ---------------- reference values (float64 computed from the stored float32 activations)
    A = {s: {l: acts[s][l].astype(np.float64) for l in ("h1", "h2", "logits")} for s in SPLITS}
    ytr = y_train

    dead = {}
    for layer in LAYERS:
        Xtr = A["train"][layer]
        var = Xtr.var(axis=0)
        dead_train = np.where(np.all(Xtr == 0, axis=0))[0]
        dead_all = np.where(np.all(np.concatenate([A[s][layer] for s in SPLITS]) == 0, axis=0))[0]
        per_class = [int(np.sum(np.all(Xtr[ytr == k] == 0, axis=0))) for k in np.unique(ytr)]
        dead[layer] = dict(dead_on_train=len(dead_train), dead_on_all_splits=len(dead_all),
                           zero_var_train=int(np.sum(var == 0)),
                           dead_per_class_train=per_class,
                           dead_train_units=dead_train.tolist())
        ref("Dead units", f"{layer}_dead_units_train", dead_train,
            f"indices of {layer} units that are exactly 0 on every train sample "
            "(zero-variance dimensions of the train activations)")

    ref("Splits", "train_labels", y_train, "train labels 0..5 (same as Samples/Data/digits-mlp/train_labels.npy)")
    ref("Splits", "test_labels", y_test, "test labels 0..5")

    auroc = {}
    fam_obj = {}
    for layer in LAYERS:
        Xtr = A["train"][layer]
        mu0 = Xtr.mean(axis=0)
        bg = Gauss(mu0, regularise(mle_cov(Xtr, mu0)))
        ref(f"Background {layer}", f"bg_{layer}_mean", mu0, f"mean of all train {layer}")
        ref(f"Background {layer}", f"bg_{layer}_logdet", bg.logdet,
            f"log det R(C_0), C_0 = MLE covariance of all train {layer}")
        for fam, tied in (("gda", False), ("tied", True)):
            model = ClassGaussians(Xtr, ytr, tied)
            fam_obj[(fam, layer)] = model
            sec = f"{fam.upper()} {layer}"
            if fam == "gda":
                ref(sec, f"{fam}_{layer}_class_counts", model.counts, "n_k per class 0..5")
                ref(sec, f"{fam}_{layer}_priors", model.priors, "pi_k = n_k / N")
                ref(sec, f"{fam}_{layer}_class_means", model.means, "mu_k per class (rows)")
            if tied:
                ref(sec, f"{fam}_{layer}_logdet", model.logdets[0],
                    "log det of the shared regularised Sigma = R(C_tied)")
            else:
                ref(sec, f"{fam}_{layer}_logdet", model.logdets,
                    "log det Sigma_k, Sigma_k = R(C_k), per class")
            scores = {}
            for s in ("test", "ood_digits"):
                r = model.evaluate(A[s][layer], bg)
                scores[s] = r
                N = len(A[s][layer])
                ref(sec, f"{fam}_{layer}_{s}_logpx", r["logpx"], f"log p(x), [{N}]")
                ref(sec, f"{fam}_{layer}_{s}_logpxk", r["logpxk"], "log p(x|k), [N, K]")
                ref(sec, f"{fam}_{layer}_{s}_posterior", r["posterior"], "p(k|x), [N, K]")
                ref(sec, f"{fam}_{layer}_{s}_entropy", r["entropy"], "predictive entropy H (nats)")
                ref(sec, f"{fam}_{layer}_{s}_maha_min", r["maha_min"], "min_k d2_k (squared)")
                ref(sec, f"{fam}_{layer}_{s}_rmd", r["rmd"], "min_k (d2_k - d2_0)")
                # independent cross-check with scipy.stats
                for i, g in enumerate(model.gauss):
                    chk = scipy.stats.multivariate_normal(g.mu, g.Sigma).logpdf(A[s][layer])
                    assert np.allclose(chk, r["logpxk"][:, i], rtol=1e-9, atol=1e-6), (fam, layer, s, i)
            y = np.r_[np.zeros(len(scores["test"]["logpx"])), np.ones(len(scores["ood_digits"]["logpx"]))]
            surprise = -np.r_[scores["test"]["logpx"], scores["ood_digits"]["logpx"]]
            auroc[f"{fam}_{layer}"] = float(roc_auc_score(y, surprise))

    # ---------------- PCA on h1
    Xtr = A["train"]["h1"]
    pmean, pcomps, pevals = pca_fit(Xtr)
    ratio = np.cumsum(pevals) / np.sum(pevals)
    n95 = int(np.searchsorted(ratio, 0.95) + 1)   # smallest m with cumsum(m)/total >= 0.95
    ref("PCA h1", "pca_h1_mean", pmean, "mean of train h1")
    ref("PCA h1", "pca_h1_components", pcomps[:PCA_K],
        "top-16 unit eigenvectors of the MLE covariance, rows, decreasing eigenvalue; "
        "sign fixed so each row's largest-|.| entry is positive (compare up to sign if your "
        "convention differs)")
    ref("PCA h1", "pca_h1_eigenvalues", pevals,
        "all eigenvalues of the MLE covariance of train h1, decreasing (tiny values near 0 may be "
        "slightly negative round-off; dead units give exact-zero directions)")
    ref("PCA h1", "pca_h1_n95", np.array(n95), "number of components for >= 95 % explained variance")
    ref("PCA h1", "pca_h1_test_projected", (A["test"]["h1"] - pmean) @ pcomps[:PCA_K].T,
        "(x - mean) @ components.T for test h1 (sign convention as above)")

    # ---------------- L2 -> PCA-16 -> GDA on h1
    Ltr = l2_normalise(A["train"]["h1"])
    lmean, lcomps, levals = pca_fit(Ltr)
    proj = lambda X: (l2_normalise(X) - lmean) @ lcomps[:PCA_K].T
    Ptr = proj(A["train"]["h1"])
    lmodel = ClassGaussians(Ptr, ytr, tied=False)
    lbg = Gauss(Ptr.mean(axis=0), regularise(mle_cov(Ptr, Ptr.mean(axis=0))))
    zero_rows = {s: int(np.sum(np.linalg.norm(A[s]["h1"], axis=1) == 0)) for s in SPLITS}
    ref("L2 -> PCA16 -> GDA h1", "l2pca16_h1_mean", lmean, "mean of L2-normalised train h1")
    ref("L2 -> PCA16 -> GDA h1", "l2pca16_h1_components", lcomps[:PCA_K],
        "top-16 components of L2-normalised train h1 (same sign convention)")
    ref("L2 -> PCA16 -> GDA h1", "l2pca16_h1_eigenvalues", levals[:PCA_K],
        "top-16 eigenvalues of the MLE covariance of L2-normalised train h1")
    ref("L2 -> PCA16 -> GDA h1", "l2pca16_gda_h1_logdet", lmodel.logdets,
        "log det Sigma_k of the GDA fitted on the 16-d projected train data")
    for s in ("test", "ood_digits"):
        r = lmodel.evaluate(proj(A[s]["h1"]), lbg)
        ref("L2 -> PCA16 -> GDA h1", f"l2pca16_gda_h1_{s}_logpx", r["logpx"],
            f"GDA log p(x) of {s} h1 after L2 -> PCA-16 (fitted on train)")

    # ---------------- GMM on h2
    Xtr = A["train"]["h2"]
    N, D = Xtr.shape
    C_all = mle_cov(Xtr, Xtr.mean(axis=0))
    init_idx = np.random.default_rng(GMM_SEED).choice(N, GMM_K, replace=False)
    w0 = np.full(GMM_K, 1.0 / GMM_K)
    m0 = Xtr[init_idx].copy()
    gmm_info = {}
    gmm_changes = {}
    for ctype in ("full", "diag"):
        if ctype == "full":
            cov0 = C_all + GMM_REG * np.eye(D)
            covs0 = np.repeat(cov0[None], GMM_K, axis=0)
            prec0 = np.repeat(np.linalg.inv(cov0)[None], GMM_K, axis=0)
        else:
            covs0 = np.repeat((np.diag(C_all) + GMM_REG)[None], GMM_K, axis=0)
            prec0 = 1.0 / covs0
        gm = GaussianMixture(n_components=GMM_K, covariance_type=ctype, reg_covar=GMM_REG,
                             tol=1e-6, max_iter=1000, weights_init=w0, means_init=m0,
                             precisions_init=prec0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(Xtr)
        sec = f"GMM {ctype} h2"
        p = f"gmm_{ctype}_h2"
        if ctype == "full":
            ref(sec, "gmm_h2_init_indices", init_idx,
                "train rows used as initial means: np.random.default_rng(0).choice(N, 5, replace=False)")
        ref(sec, f"{p}_init_weights", w0, "initial weights (uniform)")
        ref(sec, f"{p}_init_means", m0, "initial means = train_h2[init_indices]")
        ref(sec, f"{p}_init_covariances", covs0,
            ("C_all + 1e-4 I, replicated per component" if ctype == "full" else
             "diag(C_all) + 1e-4, replicated per component")
            + "; C_all = MLE covariance of all train h2; sklearn was given the inverse "
            "(element-wise for diag) as precisions_init")
        ref(sec, f"{p}_weights", gm.weights_, "fitted weights")
        ref(sec, f"{p}_means", gm.means_, "fitted means")
        ref(sec, f"{p}_covariances", gm.covariances_, "fitted covariances (include + reg_covar)")
        ref(sec, f"{p}_n_iter", np.array(gm.n_iter_), "EM iterations (sklearn n_iter_)")
        ref(sec, f"{p}_converged", np.array(int(gm.converged_)), "1 if converged (|change| < tol)")
        ref(sec, f"{p}_lower_bounds", np.array(gm.lower_bounds_),
            "per-iteration sklearn lower bound = mean train log-likelihood computed in the E-step "
            "(i.e. with the parameters BEFORE that iteration's M-step)")
        ref(sec, f"{p}_train_score", np.array(gm.score(Xtr)),
            "gm.score(train h2): mean log-likelihood with the fitted parameters")
        for s in ("test", "ood_digits"):
            ref(sec, f"{p}_{s}_score_samples", gm.score_samples(A[s]["h2"]),
                f"gm.score_samples({s} h2): per-sample log-likelihood")
        gmm_changes[ctype] = ", ".join(f"{c:.2g}" for c in np.diff(gm.lower_bounds_)[-2:])
        gmm_info[ctype] = dict(n_iter=int(gm.n_iter_), converged=bool(gm.converged_),
                               train_score=float(gm.score(Xtr)))

    # ---------------- AUROC json
    with open(REF_DIR / "auroc.json", "w") as f:
        json.dump({k: round(v, 12) for k, v in sorted(auroc.items())}, f, indent=2, sort_keys=True)
        f.write("\n")

    # ---------------- manifest + READMEs
    sizes = {s: len(pixels[s]) for s in SPLITS}
    write_manifest(sizes, ndead=dead["h1"]["dead_on_train"], gmm_changes=gmm_changes)
    write_data_readme(sizes, acc, dead, fwd_err, f32_err)

    ref_bytes = sum(p.stat().st_size for p in REF_DIR.iterdir() if p.is_file())
    data_bytes = sum(p.stat().st_size for p in DATA_DIR.iterdir() if p.is_file())

    print(f"numpy {np.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}")
    print("split sizes:", sizes)
    print("MLP accuracy:", {k: round(v, 4) for k, v in acc.items()},
          f"(n_iter={mlp.n_iter_}); forward-pass max |dp| = {fwd_err:.2e}; "
          f"float32 logits max err = {f32_err:.2e}")
    for layer in LAYERS:
        d = dead[layer]
        print(f"{layer}: dead on train = {d['dead_on_train']}, dead on all splits = "
              f"{d['dead_on_all_splits']}, dead per class (train) = {d['dead_per_class_train']}")
    print(f"PCA h1: n95 = {n95}; all-zero h1 rows per split: {zero_rows}")
    print("GMM:", gmm_info)
    print("AUROC (-log p(x), test vs ood_digits):", {k: round(v, 4) for k, v in sorted(auroc.items())})
    print(f"reference fixtures: {len(REF_ENTRIES)} .npy files, {ref_bytes/1e6:.3f} MB in {REF_DIR.relative_to(REPO)}")
    print(f"sample data: {data_bytes/1e6:.3f} MB in {DATA_DIR.relative_to(REPO)}")


MANIFEST_HEAD = """# Reference fixtures (generated — do not edit)

Generated by `python3 Tests/Reference/make_fixtures.py` (run from the repo root). Rerunning
produces byte-identical files.

Inputs are the float32 activations in `Samples/Data/digits-mlp/` (`{split}_{layer}.npy`),
**converted to float64** before any computation; all values here are float64 (`<f8`)
except integer things (`<i8`). Files are `.npy` version 1.0, little-endian, C order. A shape
`()` is a 0-d array holding one element.

Split sizes: {sizes}.
K = 6 classes (digits 0..5), class index k = digit. D = 128 for h1, 64 for h2.
Only the **train** split is used for fitting; `test` and `ood_digits` are scored.

## Definitions

- `R(C) = (1-λ) C + λ (tr C / D) I + f (tr C / D) I`, λ = 0.1, f = 1e-6.
- GDA: `Σ_k = R(C_k)`, `C_k` = MLE covariance (divide by n_k) of class k. Tied: one
  `Σ = R(C_tied)`, `C_tied = (1/N) Σ_k Σ_{i∈k} (x_i-μ_k)(x_i-μ_k)ᵀ`. Priors `π_k = n_k/N`.
- `d2_k(x) = (x-μ_k)ᵀ Σ_k⁻¹ (x-μ_k)`; `log p(x|k) = -½[D log 2π + log det Σ_k + d2_k]`;
  `log p(x) = logsumexp_k(log π_k + log p(x|k))`; `p(k|x) = exp(log π_k + log p(x|k) - log p(x))`;
  `H = -Σ_k p log p` (nats, 0 log 0 = 0); `maha_min = min_k d2_k` (squared distance).
- Background: `μ_0` = mean of all train, `Σ_0 = R(C_0)`, C_0 = MLE covariance of all train;
  `rmd = min_k (d2_k(x) - d2_0(x))` with d2_k using the family's Σ (GDA or tied), same Σ_0.
- PCA: eigen-decomposition of the MLE covariance of train h1, decreasing eigenvalues.
  Components are rows. Sign convention: each row's largest-|entry| is positive.
- L2: `x / ||x||₂`, all-zero rows stay zero. `l2pca16`: L2-normalise train h1, fit PCA on it,
  project onto the top 16 components (`(x̂ - mean) @ comps.T`), fit GDA (λ 0.1, f 1e-6) on the
  projected train data, score test/ood_digits through the same pipeline. (The PCA sign
  convention does not affect log p(x).)
- GMM: `sklearn.mixture.GaussianMixture(n_components=5, covariance_type='full'|'diag',
  reg_covar=1e-4, tol=1e-6, max_iter=1000)` on train h2 with explicit init: uniform weights,
  means = train rows `np.random.default_rng(0).choice(N, 5, replace=False)`, precisions =
  inverse of the init covariances saved here. sklearn EM details a port must match: each
  iteration is E-step then M-step; `nk = Σ_i resp_ik + 10·eps(float64)`; full covariance =
  `Σ_i resp_ik (x_i-m_k)(x_i-m_k)ᵀ / nk + reg_covar·I`; diag covariance =
  `(Σ_i resp_ik x_i²)/nk - m_k² + reg_covar`; weights = nk / N; lower bound = mean over train of
  the E-step log p(x) (parameters before the M-step); stop when |lower bound - previous| < tol
  (previous starts at -inf); `n_iter` counts iterations done including the converging one.
- AUROC (`auroc.json`): `roc_auc_score` with test = 0, ood_digits = 1, score = -log p(x).

## Suggested tolerances (float64 Swift vs these files)

- log p(x), log p(x|k), log det, d2-based values (maha_min, rmd): magnitudes up to ~10³; use
  `abs ≤ 1e-6 + 1e-9·|ref|`. Summation-order differences alone are ~1e-12 relative.
- posterior and entropy: many values are tiny (posteriors and entropies down to ~1e-70), so
  compare with an absolute tolerance (`abs ≤ 1e-9`), never relative.
- PCA: eigenvalues `abs ≤ 1e-10`; components up to sign (`|dot(ref, yours)| ≥ 1 - 1e-9`);
  the last {ndead} eigenvalues of h1 are ~0 (dead units) and may be ±1e-18.
- GMM: perturbing train h2 by 1e-12 relative changes test `score_samples` by ≤ 2e-9 (full) and
  n_iter not at all (checked once by hand); use `abs ≤ 1e-6` for scores/parameters and require n_iter / converged equal.
  Last two lower-bound changes of the full fit: {full_changes}; of the diag fit: {diag_changes}
  (tol 1e-6), so the stop iteration is robust to round-off.

## Files
"""


def write_manifest(sizes: dict, ndead: int, gmm_changes: dict) -> None:
    head = (MANIFEST_HEAD.replace("{sizes}", ", ".join(f"{k} {v}" for k, v in sizes.items()))
            .replace("{ndead}", str(ndead))
            .replace("{full_changes}", gmm_changes["full"])
            .replace("{diag_changes}", gmm_changes["diag"]))
    lines = [head]
    section = None
    for sec, fname, shape, dtype, meaning in REF_ENTRIES:
        if sec != section:
            lines.append(f"\n### {sec}\n\n| file | shape | dtype | meaning |\n|---|---|---|---|")
            section = sec
        lines.append(f"| `{fname}` | {shape_str(shape)} | {dtype} | {meaning.replace('|', chr(92) + '|')} |")
    lines.append("\n### Other\n\n| file | shape | dtype | meaning |\n|---|---|---|---|")
    lines.append("| `auroc.json` | — | JSON | `{\"gda_h1\", \"gda_h2\", \"tied_h1\", \"tied_h2\"}` → AUROC "
                 "(float) of -log p(x), test (0) vs ood_digits (1) |")
    lines.append("| `MANIFEST.md` | — | text | this file |")
    (REF_DIR / "MANIFEST.md").write_text("\n".join(lines) + "\n")


def write_data_readme(sizes, acc, dead, fwd_err, f32_err) -> None:
    split_rows = "\n".join(
        f"| `{s}` | {n} | " + {
            "train": "ID digits 0..5, 60 % (stratified, `train_test_split(random_state=0)`) — fit data",
            "calibration": "ID digits 0..5, 20 % — for thresholds / conformal calibration",
            "test": "ID digits 0..5, 20 %",
            "ood_digits": "near OOD: every digit 6..9 in the data set (labels keep the true digit)",
            "ood_inverted": "far OOD: the ID test images inverted, `1 - x` (labels -1)",
            "ood_noise": f"far OOD: uniform [0,1) noise images, `np.random.default_rng({NOISE_SEED})` "
                         "(labels -1)",
        }[s] + " |" for s, n in sizes.items())
    dead_txt = "\n".join(
        f"- `{l}`: {d['dead_on_train']} of {128 if l == 'h1' else 64} units are exactly zero on every "
        f"train sample (zero-variance dimensions; {d['dead_on_all_splits']} are zero on all six splits); "
        f"units zero on all train samples of one class (including those), per class 0..5: {d['dead_per_class_train']}."
        for l, d in dead.items())
    text = f"""# digits-mlp: real activations for LatentWatch samples and tests

Generated by `python3 Tests/Reference/make_fixtures.py` from the repo root (needs
`pip install numpy scipy scikit-learn`; no network). Rerunning gives byte-identical files.

## Source data

scikit-learn's bundled copy (`sklearn.datasets.load_digits()`) of the **UCI Optical Recognition
of Handwritten Digits** data set (E. Alpaydin, C. Kaynak; https://doi.org/10.24432/C50P49):
1797 8x8 images, pixel values 0..16, scaled here to [0, 1] by dividing by 16.
Licence: the data set is distributed by the UCI Machine Learning Repository under
**CC BY 4.0**; scikit-learn (which ships the copy) is **BSD-3-Clause**. Only derived values
(network activations, labels, generated noise) and the trained weights are stored here.

## Model

`sklearn.neural_network.MLPClassifier(hidden_layer_sizes=(128, 64), activation='relu',
random_state=0, max_iter=1000)` trained on the train split (labels 0..5).
Accuracy: train {acc['train']:.4f}, calibration {acc['calibration']:.4f}, **test {acc['test']:.4f}**.

Forward pass (`mlp_weights.npz`, float32, `x` is a row vector of 64 pixels in [0,1]):

    h1     = relu(x  @ W1 + b1)   # W1 [64, 128],  b1 [128]
    h2     = relu(h1 @ W2 + b2)   # W2 [128, 64],  b2 [64]
    logits = h2 @ W3 + b3         # W3 [64, 6],    b3 [6];  softmax(logits) = predict_proba

Activations were computed in float64 from sklearn's float64 weights and then cast to float32
(checked against `predict_proba`: max |Δp| = {fwd_err:.1e}). Running the pass in float32 with the
float32 weights reproduces the stored logits to within {f32_err:.1e}.

## Splits and files

| split | N | content |
|---|---|---|
{split_rows}

For every split: `{{split}}_h1.npy` float32 [N, 128], `{{split}}_h2.npy` float32 [N, 64],
`{{split}}_logits.npy` float32 [N, 6], `{{split}}_labels.npy` int64 [N].

Also:
- `mlp_weights.npz`: W1, b1, W2, b2, W3, b3 (float32), shapes as above.
- `test_pixels.npy` float32 [{sizes['test']}, 64]: the test images (row-major 8x8), to check a forward pass.
- Demo stream (400 inputs): `stream_h1.npy` float32 [400, 128], `stream_h2.npy` float32 [400, 64],
  `stream_pixels.npy` float32 [400, 64], `stream_labels.npy` int64 [400] (true digit).
  Rows 0..199 are the first 200 test samples (in split order); rows 200..399 are 200 `ood_digits`
  samples chosen by `np.random.default_rng({STREAM_SEED}).permutation(N_ood)[:200]`.
  `stream_ood_start.npy` int64 0-d array = 200 (first OOD index).

All `.npy` files are format version 1.0, little-endian, C order.

## Notes

{dead_txt}

Dead units make the class/train covariances singular; the shrinkage `R(C)` used throughout
LatentWatch (λ (tr C/D) I + floor) keeps them positive definite.
"""
    (DATA_DIR / "README.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
