#!/usr/bin/env python3
"""Independent Python reference for LatentWatch's OOD / uncertainty scores on real activations.

For every layer of a scenario folder (`<layer>_<split>.npy`, `labels_<split>.npy`, `logits_<split>.npy`) the
detectors below are fitted on `train` (with labels) and scored on `test` (in-distribution), `cal` and every
`ood_*` set. Convention: higher score = more OOD; OOD rows are the positive class.

Metrics per (layer, method, variant):
  * AUROC and FPR at 95 % TPR of ID test vs each OOD set (sklearn roc_auc_score / roc_curve; FPR95 is the
    smallest ROC fpr whose tpr >= 0.95, i.e. the fraction of ID test rows scoring >= the threshold that
    catches 95 % of the OOD rows), and their means over OOD sets;
  * the realised alert rate at alpha: conformal p-value of every ID test row against the `cal` scores,
    p = (1 + #{cal >= s}) / (n_cal + 1), fraction with p <= alpha (and the same fraction on every OOD set);
  * misclassification-detection AUROC on ID test (positives: argmax(logits) != label) for methods with an
    aleatoric score (entropy of the class posterior p(y|z) for the class-conditional Gaussians).
Output-based baselines (MSP, energy, max logit, softmax entropy) are computed once from `logits_<split>.npy`.

Non-finite scores (e.g. +inf from DDU's tiny jitter on dead ReLU units) are kept: metrics are computed on ranks,
which preserves AUROC / FPR95 / p-values exactly; the number of non-finite scores per split is recorded.

Usage:
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
  python3 reference_eval.py --data /work/evaldata/image --layers fc,conv3_gap --out ref_image.json
"""
import argparse
import glob
import json
import os
import platform
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import sklearn  # noqa: E402
from scipy.linalg import solve_triangular  # noqa: E402
from scipy.special import logsumexp  # noqa: E402
from scipy.stats import rankdata  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

LOG2PI = np.log(2.0 * np.pi)
# DDU's jitter list, verbatim from omegafragger/DDU utils/gmm_utils.py:
#   JITTERS = [0, torch.finfo(torch.double).tiny] + [10 ** exp for exp in range(-308, 0, 1)]
DDU_JITTERS = [0.0, float(np.finfo(np.float64).tiny)] + [10.0 ** e for e in range(-308, 0)]
# LatentWatch's shrinkage grid: 0 and 10^(e/10), e = -60..0  (1e-6 ... 1).
LAMBDA_GRID = np.array([0.0] + [10.0 ** (e / 10.0) for e in range(-60, 1)])
FLOOR = 1e-6          # f in Sigma = (1-l) C + l (trC/D) I + f (trC/D) I
HOLDOUT = 0.2         # validation fraction for choosing lambda
SEED = 0


class SkipMethod(Exception):
    """Raised by a fit function when the data makes the method impossible; the message is recorded."""


# ----------------------------------------------------------------------------------------------------------
# Gaussian helpers
# ----------------------------------------------------------------------------------------------------------

def ml_cov(x, mean):
    """Maximum-likelihood covariance (divide by n) of the rows of x about `mean` (float64)."""
    r = x - mean
    return r.T @ r / len(x)


def regularised_cov(c, lam, floor=FLOOR):
    """LatentWatch's rule: Sigma = (1 - lam) C + lam (tr C / D) I + floor (tr C / D) I."""
    d = c.shape[0]
    t = np.trace(c) / d
    if not t > 0:
        raise SkipMethod("covariance has zero trace (all features constant)")
    return (1.0 - lam) * c + (lam + floor) * t * np.eye(d)


def heldout_lambda(x, centred=False, seed=SEED, grid=LAMBDA_GRID, holdout=HOLDOUT, floor=FLOOR):
    """Choose the shrinkage lambda by held-out Gaussian log-likelihood (LatentWatch rule, re-implemented).

    A random `holdout` fraction of the rows (numpy default_rng(seed) permutation) is held out; the mean (or 0 if
    `centred`, for rows already centred by their class means) and the ML covariance C are fitted on the rest;
    every lambda of the grid is scored by the mean validation log-likelihood of
    N(mean, (1-l) C + (l + floor) (tr C/D) I), computed in C's eigenbasis (O(D) per candidate).
    Returns (lambda, mean validation log-likelihood at lambda). Ties go to the smallest lambda.
    """
    n, d = x.shape
    n_val = int(round(holdout * n))
    if n_val < 1 or n - n_val < 2:
        raise SkipMethod(f"too few rows ({n}) for a {holdout:.0%} hold-out")
    perm = np.random.default_rng(seed).permutation(n)
    val, fit = x[perm[:n_val]], x[perm[n_val:]]
    mean = np.zeros(d) if centred else fit.mean(0)
    c = ml_cov(fit, mean)
    evals, evecs = np.linalg.eigh(c)
    evals = np.clip(evals, 0.0, None)
    t = evals.mean()
    if not t > 0:
        raise SkipMethod("covariance has zero trace (all features constant)")
    y2 = ((val - mean) @ evecs) ** 2                     # n_val x D, squared coordinates in the eigenbasis
    my2 = y2.mean(0)
    best, best_ll = None, -np.inf
    for lam in grid:
        s = (1.0 - lam) * evals + (lam + floor) * t
        ll = -0.5 * (d * LOG2PI + np.log(s).sum() + (my2 / s).sum())
        if ll > best_ll:
            best, best_ll = float(lam), float(ll)
    return best, best_ll


def chol_logpdf(z, mean, chol):
    """log N(z; mean, L L^T) for the rows of z via the Cholesky factor L (no dense inverse)."""
    y = solve_triangular(chol, (z - mean).T, lower=True, check_finite=False)
    maha = np.einsum("ij,ij->j", y, y)
    logdet = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * (len(mean) * LOG2PI + logdet + maha)


def chol_maha(z, mean, chol):
    """Squared Mahalanobis distance of the rows of z to `mean` under L L^T."""
    y = solve_triangular(chol, (z - mean).T, lower=True, check_finite=False)
    return np.einsum("ij,ij->j", y, y)


def posterior_entropy(joint):
    """Entropy of the class posterior from log joint scores (N x K), computed in log space."""
    logpost = joint - logsumexp(joint, axis=1, keepdims=True)
    p = np.exp(logpost)
    with np.errstate(invalid="ignore"):
        h = -np.where(p > 0, p * logpost, 0.0).sum(1)
    return h


def class_stats(x, y):
    """Sorted class ids, per-class row indices, and log priors log(n_c / N)."""
    classes = np.unique(y)
    idx = [np.flatnonzero(y == c) for c in classes]
    if min(len(i) for i in idx) < 2:
        raise SkipMethod("a class has fewer than 2 training rows")
    logprior = np.log(np.array([len(i) for i in idx], dtype=np.float64) / len(y))
    return classes, idx, logprior


# ----------------------------------------------------------------------------------------------------------
# Methods: each fit_* takes (x_train float64, y_train) and returns a dict with
#   "score": f(z) -> OOD score (higher = more OOD), optional "aleatoric": f(z) -> score, "info": {...}
# ----------------------------------------------------------------------------------------------------------

def fit_gda_ddu(x, y):
    """Class-conditional Gaussians as in DDU (Mukhoti et al. 2021, "Deep Deterministic Uncertainty";
    github omegafragger/DDU utils/gmm_utils.py `gmm_fit`): per-class mean and unbiased covariance
    (np.cov, 1/(n-1)); one jitter from DDU's list JITTERS = [0, tiny, 1e-308, ..., 1e-1], the first for which
    the Cholesky factorisation of every class covariance succeeds; epistemic score = -logsumexp_c log N(z; mu_c,
    Sigma_c) (no class priors, as DDU). Aleatoric score (for misclassification): entropy of p(y|z) with
    training priors n_c/N (DDU itself uses the softmax entropy here)."""
    classes, idx, logprior = class_stats(x, y)
    means = [x[i].mean(0) for i in idx]
    covs = [np.cov(x[i], rowvar=False) for i in idx]
    d = x.shape[1]
    chols, jitter = None, None
    for j in DDU_JITTERS:
        try:
            chols = [np.linalg.cholesky(c + j * np.eye(d)) for c in covs]
            jitter = j
            break
        except np.linalg.LinAlgError:
            continue
    if chols is None:
        raise SkipMethod("Cholesky failed for every DDU jitter up to 1e-1")

    def loglik(z):
        return np.stack([chol_logpdf(z, m, L) for m, L in zip(means, chols)], 1)

    min_diag = min(float(np.diag(c).min()) for c in covs)
    return {
        "score": lambda z: -logsumexp(loglik(z), axis=1),
        "aleatoric": lambda z: posterior_entropy(loglik(z) + logprior),
        "info": {"jitter": jitter, "n_zero_variance_dims_min_over_classes": int(min(
            (np.diag(c) == 0).sum() for c in covs)), "min_class_variance": min_diag},
    }


def fit_gda_shrunk(x, y):
    """Class-conditional Gaussians with priors and LatentWatch's shrinkage (re-implemented independently,
    see Docs/Statistics.md): per class, C = ML covariance, Sigma = (1-l) C + l (trC/D) I + 1e-6 (trC/D) I,
    l chosen per class on [0] + 10^(e/10), e=-60..0 by held-out (20 %, seed 0) Gaussian log-likelihood, then
    refitted on all the class's rows. Score = -logsumexp_c (log pi_c + log N(z; mu_c, Sigma_c)) with
    pi_c = n_c/N; aleatoric = entropy of p(y|z)."""
    classes, idx, logprior = class_stats(x, y)
    means, chols, lams = [], [], []
    for i in idx:
        xc = x[i]
        lam, _ = heldout_lambda(xc)
        mu = xc.mean(0)
        means.append(mu)
        chols.append(np.linalg.cholesky(regularised_cov(ml_cov(xc, mu), lam)))
        lams.append(lam)

    def joint(z):
        return np.stack([chol_logpdf(z, m, L) for m, L in zip(means, chols)], 1) + logprior

    return {
        "score": lambda z: -logsumexp(joint(z), axis=1),
        "aleatoric": lambda z: posterior_entropy(joint(z)),
        "info": {"lambda_per_class": lams},
    }


def _tied_parts(x, y, regularise=True):
    """Class means and the Cholesky factor of the pooled within-class covariance (ML, 1/N).
    regularise=True: lambda by the held-out rule on the class-centred rows (held-out rows keep the class means
    fitted on all rows, mean 0 in the validation likelihood); False: only the 1e-6 (trC/D) floor."""
    classes, idx, logprior = class_stats(x, y)
    means = np.stack([x[i].mean(0) for i in idx])
    r = x - means[np.searchsorted(classes, y)]
    c = r.T @ r / len(x)
    lam = heldout_lambda(r, centred=True)[0] if regularise else 0.0
    chol = np.linalg.cholesky(regularised_cov(c, lam))
    return means, chol, logprior, lam


def _tied_d2(z, means, chol):
    """Squared Mahalanobis distances (N x K) of z to every class mean under the shared covariance."""
    wz = solve_triangular(chol, z.T, lower=True, check_finite=False).T
    wm = solve_triangular(chol, means.T, lower=True, check_finite=False).T
    return np.stack([((wz - m) ** 2).sum(1) for m in wm], 1)


def fit_tied_mahalanobis(x, y):
    """Mahalanobis detector of Lee et al. 2018 ("A Simple Unified Framework for Detecting Out-of-Distribution
    Samples and Adversarial Attacks"): class means, one shared (pooled within-class, ML) covariance regularised
    by LatentWatch's held-out shrinkage rule; score = min_c squared Mahalanobis distance. Aleatoric = entropy of
    the LDA posterior softmax_c(log pi_c - d2_c / 2)."""
    means, chol, logprior, lam = _tied_parts(x, y, regularise=True)
    return {
        "score": lambda z: _tied_d2(z, means, chol).min(1),
        "aleatoric": lambda z: posterior_entropy(logprior - 0.5 * _tied_d2(z, means, chol)),
        "info": {"lambda": lam},
    }


def fit_tied_mahalanobis_plain(x, y):
    """As tied_mahalanobis but with only the 1e-6 (trC/D) I floor on the pooled ML covariance (like
    sklearn's EmpiricalCovariance used by Lee et al.'s code, without a pseudo-inverse)."""
    means, chol, logprior, _ = _tied_parts(x, y, regularise=False)
    return {
        "score": lambda z: _tied_d2(z, means, chol).min(1),
        "aleatoric": lambda z: posterior_entropy(logprior - 0.5 * _tied_d2(z, means, chol)),
        "info": {"lambda": 0.0},
    }


def fit_relative_mahalanobis(x, y):
    """Relative Mahalanobis distance (Ren et al. 2021, "A Simple Fix to Mahalanobis Distance for Improving
    Near-OOD Detection"): min_c d2_c(z) - d2_0(z), with d2_c from the tied model (as tied_mahalanobis) and d2_0
    under one background Gaussian fitted on all training rows (same held-out shrinkage rule)."""
    means, chol, _, lam = _tied_parts(x, y, regularise=True)
    lam0, _ = heldout_lambda(x)
    mu0 = x.mean(0)
    chol0 = np.linalg.cholesky(regularised_cov(ml_cov(x, mu0), lam0))
    return {
        "score": lambda z: _tied_d2(z, means, chol).min(1) - chol_maha(z, mu0, chol0),
        "info": {"lambda": lam, "lambda_background": lam0},
    }


def _fit_gmm(x, covariance_type, n_components=8):
    """sklearn GaussianMixture(n_components, covariance_type, reg_covar=1e-6 (sklearn default), random_state=0,
    max_iter=100, tol=1e-3, init_params='kmeans'); score = -score_samples (negative log density)."""
    if len(x) < 2 * n_components:
        raise SkipMethod(f"{len(x)} rows are too few for {n_components} components")
    gmm = GaussianMixture(n_components=n_components, covariance_type=covariance_type, reg_covar=1e-6,
                          random_state=SEED, max_iter=100, tol=1e-3, init_params="kmeans")
    try:
        gmm.fit(x)
    except ValueError as e:      # sklearn: "Fitting the mixture model failed because some components have ..."
        raise SkipMethod(f"GaussianMixture failed: {str(e).splitlines()[0]}")
    mean_var = float(x.var(0).mean())
    return {
        "score": lambda z: -gmm.score_samples(z),
        "info": {"reg_covar": 1e-6, "reg_covar_over_mean_variance": 1e-6 / mean_var if mean_var > 0 else None,
                 "converged": bool(gmm.converged_), "n_iter": int(gmm.n_iter_),
                 "lower_bound": float(gmm.lower_bound_)},
    }


def fit_gmm_sklearn(x, y):
    """Unsupervised 8-component full-covariance GMM (sklearn.mixture.GaussianMixture, see _fit_gmm)."""
    return _fit_gmm(x, "full")


def fit_gmm_sklearn_diag(x, y):
    """Unsupervised 8-component diagonal-covariance GMM (sklearn.mixture.GaussianMixture, see _fit_gmm)."""
    return _fit_gmm(x, "diag")


def l2_normalise(x, eps=1e-12):
    """Rows divided by their Euclidean norm (rows of norm < eps are left as they are)."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n < eps, 1.0, n)


def knn_distances(train, query, ks, block=1024):
    """Exact distances of each L2-normalised query row to its k-th nearest L2-normalised training row, for
    every k in ks (numpy, in blocks of `block` queries; d^2 = 2 - 2 cos)."""
    kmax = max(ks)
    out = {k: np.empty(len(query)) for k in ks}
    for s in range(0, len(query), block):
        sim = query[s:s + block] @ train.T
        top = -np.partition(-sim, kmax - 1, axis=1)[:, :kmax]
        top = -np.sort(-top, axis=1)                       # descending similarity
        for k in ks:
            out[k][s:s + block] = np.sqrt(np.clip(2.0 - 2.0 * top[:, k - 1], 0.0, None))
    return out


def make_knn(k):
    """Deep nearest neighbours (Sun et al. 2022, "Out-of-Distribution Detection with Deep Nearest Neighbors",
    github deeplearning-wisc/knn-ood): L2-normalise train and query rows, score = Euclidean distance to the k-th
    nearest training row (exact)."""
    def fit(x, y):
        if len(x) < k:
            raise SkipMethod(f"{len(x)} training rows < k={k}")
        t = l2_normalise(x)
        return {"score": lambda z: knn_distances(t, l2_normalise(z), [k])[k], "info": {"k": k}}
    fit.__doc__ = make_knn.__doc__
    return fit


METHODS = {
    "gda_ddu": fit_gda_ddu,
    "gda_shrunk": fit_gda_shrunk,
    "tied_mahalanobis": fit_tied_mahalanobis,
    "tied_mahalanobis_plain": fit_tied_mahalanobis_plain,
    "relative_mahalanobis": fit_relative_mahalanobis,
    "gmm_sklearn": fit_gmm_sklearn,
    "gmm_sklearn_diag": fit_gmm_sklearn_diag,
    "knn": make_knn(50),
    "knn_k1": make_knn(1),
}
# Methods evaluated with the l2 / pca<k> preprocessing variants as well (the others only on raw features).
VARIANT_METHODS = {"gda_shrunk", "tied_mahalanobis", "gmm_sklearn", "gmm_sklearn_diag"}


# ----------------------------------------------------------------------------------------------------------
# Preprocessing variants
# ----------------------------------------------------------------------------------------------------------

def variant_names(d, pca_ks):
    """Variant names for a D-dimensional layer: raw, l2, pca<k>, l2+pca<k> (pca only when D > k)."""
    names = ["raw", "l2"]
    for k in pca_ks:
        if d > k:
            names += [f"pca{k}", f"l2+pca{k}"]
    return names


def make_preprocessor(train, variant):
    """Fit a preprocessing variant on the train rows: optional L2 normalisation, then optional projection on
    the top-k principal components (train mean removed, eigenvectors of the train covariance)."""
    parts = variant.split("+")
    use_l2 = "l2" in parts
    pca = [p for p in parts if p.startswith("pca")]
    base = l2_normalise(train) if use_l2 else train
    if pca:
        k = int(pca[0][3:])
        mu = base.mean(0)
        evals, evecs = np.linalg.eigh(ml_cov(base, mu))
        proj = evecs[:, ::-1][:, :k]

        def f(z):
            z = l2_normalise(z) if use_l2 else z
            return (z - mu) @ proj
        return f
    return (lambda z: l2_normalise(z)) if use_l2 else (lambda z: z)


# ----------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------

def _rank_if_needed(*arrays):
    """If any score is non-finite, replace all by their joint ranks (order-preserving, +inf ties kept)."""
    cat = np.concatenate(arrays)
    if np.isnan(cat).any():
        raise ValueError("NaN scores")
    if np.isfinite(cat).all():
        return arrays
    r = rankdata(cat)
    out, s = [], 0
    for a in arrays:
        out.append(r[s:s + len(a)])
        s += len(a)
    return out


def auroc_fpr95(s_id, s_ood):
    """AUROC and FPR at 95 % TPR of ID (label 0) vs OOD (label 1) scores, higher = more OOD."""
    s_id, s_ood = _rank_if_needed(s_id, s_ood)
    yt = np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))]
    ys = np.r_[s_id, s_ood]
    auc = roc_auc_score(yt, ys)
    fpr, tpr, _ = roc_curve(yt, ys, drop_intermediate=False)
    fpr95 = fpr[np.searchsorted(tpr, 0.95, side="left")]
    return float(auc), float(fpr95)


def conformal_alert_rate(s_cal, s, alpha):
    """Fraction of rows with conformal p-value (1 + #{cal >= s}) / (n_cal + 1) <= alpha."""
    s_cal, s = _rank_if_needed(s_cal, s)
    cal = np.sort(s_cal)
    ge = len(cal) - np.searchsorted(cal, s, side="left")
    p = (1.0 + ge) / (len(cal) + 1.0)
    return float((p <= alpha).mean())


def misclassification_auroc(score, wrong):
    """AUROC of a score for detecting ID test rows the network misclassifies (None if one class is empty)."""
    if wrong.all() or not wrong.any():
        return None
    (score,) = _rank_if_needed(score)
    return float(roc_auc_score(wrong.astype(int), score))


def evaluate_scores(scores, oods, alpha, wrong=None, aleatoric_test=None):
    """Metrics dict from scores = {"test": ..., "cal": ..., ood: ...}."""
    res = {"auroc": {}, "fpr95": {}}
    for o in oods:
        res["auroc"][o], res["fpr95"][o] = auroc_fpr95(scores["test"], scores[o])
    res["mean_auroc"] = float(np.mean(list(res["auroc"].values())))
    res["mean_fpr95"] = float(np.mean(list(res["fpr95"].values())))
    res["alert_rate"] = conformal_alert_rate(scores["cal"], scores["test"], alpha)
    res["ood_alert_rate"] = {o: conformal_alert_rate(scores["cal"], scores[o], alpha) for o in oods}
    if aleatoric_test is not None and wrong is not None:
        res["misclassification_auroc"] = misclassification_auroc(aleatoric_test, wrong)
    nonfinite = {k: int((~np.isfinite(v)).sum()) for k, v in scores.items() if not np.isfinite(v).all()}
    if nonfinite:
        res["nonfinite_scores"] = nonfinite
    return res


# ----------------------------------------------------------------------------------------------------------
# Output-based baselines
# ----------------------------------------------------------------------------------------------------------

def softmax_logp(logits):
    """Log softmax of logits rows (float64)."""
    return logits - logsumexp(logits, axis=1, keepdims=True)


def score_msp(logits):
    """Maximum softmax probability (Hendrycks & Gimpel 2017); score = -max softmax."""
    return -np.exp(softmax_logp(logits).max(1))


def score_energy(logits):
    """Energy score (Liu et al. 2020, T = 1); score = -logsumexp(logits)."""
    return -logsumexp(logits, axis=1)


def score_max_logit(logits):
    """Maximum logit (Hendrycks et al. 2022, "Scaling OOD detection"); score = -max logit."""
    return -logits.max(1)


def score_softmax_entropy(logits):
    """Entropy of the softmax distribution."""
    lp = softmax_logp(logits)
    return -(np.exp(lp) * lp).sum(1)


OUTPUT_METHODS = {"msp": score_msp, "energy": score_energy, "max_logit": score_max_logit,
                  "softmax_entropy": score_softmax_entropy}


# ----------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------

def load(d, name):
    """Load <d>/<name>.npy as float64 (features) or as-is (labels)."""
    a = np.load(os.path.join(d, f"{name}.npy"))
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def discover(d):
    """OOD set names (from labels_ood_*.npy) and feature layers (every <layer>_train.npy but logits/labels)."""
    oods = sorted(os.path.basename(p)[len("labels_"):-4] for p in glob.glob(os.path.join(d, "labels_ood_*.npy")))
    layers = sorted({os.path.basename(p)[: -len("_train.npy")] for p in glob.glob(os.path.join(d, "*_train.npy"))}
                    - {"labels", "logits"})
    return oods, layers


def evaluate_layer(d, layer, oods, methods, pca_ks, alpha, wrong, log):
    """Fit and evaluate every (method, variant) on one layer; returns {"method:variant": entry}."""
    splits = ["train", "cal", "test"] + oods
    raw = {s: load(d, f"{layer}_{s}") for s in splits}
    ytr = load(d, "labels_train")
    out = {}
    for variant in variant_names(raw["train"].shape[1], pca_ks):
        todo = [m for m in methods if variant == "raw" or m in VARIANT_METHODS]
        if not todo:
            continue
        prep = make_preprocessor(raw["train"], variant)
        data = {s: prep(v) for s, v in raw.items()}
        for m in todo:
            key = f"{m}:{variant}"
            entry = {"method": m, "variant": variant, "dim": int(data["train"].shape[1])}
            t0 = time.perf_counter()
            try:
                fitted = METHODS[m](data["train"], ytr)
            except SkipMethod as e:
                entry["skipped"] = str(e)
                out[key] = entry
                log(f"  {layer:12s} {key:34s} skipped: {e}")
                continue
            entry["fit_seconds"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            with np.errstate(over="ignore", divide="ignore"):
                scores = {s: fitted["score"](data[s]) for s in ["test", "cal"] + oods}
                alea = fitted["aleatoric"](data["test"]) if "aleatoric" in fitted else None
            entry["score_seconds"] = round(time.perf_counter() - t0, 3)
            entry.update(evaluate_scores(scores, oods, alpha, wrong, alea))
            entry["info"] = fitted.get("info", {})
            out[key] = entry
            log(f"  {layer:12s} {key:34s} mean AUROC {entry['mean_auroc']:.4f}  alert {entry['alert_rate']:.4f}"
                f"  fit {entry['fit_seconds']:.1f}s score {entry['score_seconds']:.1f}s")
    return out


def evaluate_outputs(d, oods, alpha, wrong):
    """MSP / energy / max-logit / softmax-entropy from logits_<split>.npy; misclassification AUROC uses the
    method's own score."""
    logits = {s: load(d, f"logits_{s}") for s in ["test", "cal"] + oods}
    res = {}
    for name, f in OUTPUT_METHODS.items():
        scores = {s: f(v) for s, v in logits.items()}
        res[name] = evaluate_scores(scores, oods, alpha, wrong, scores["test"])
    return res


def _clean(o):
    """JSON-safe copy: NaN/inf floats -> None, numpy scalars -> Python."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def short(o):
    """Short column name for an OOD set."""
    return o[len("ood_"):] if o.startswith("ood_") else o


def print_table(result, file=sys.stdout):
    """Compact table: per layer, AUROC per OOD set, means, alert rate, misclassification AUROC, fit time."""
    oods = result["ood_sets"]
    head = f"{'method:variant':34s} " + " ".join(f"{short(o)[:9]:>9s}" for o in oods) + \
        f" {'meanAUC':>8s} {'meanFPR':>8s} {'alert':>6s} {'misAUC':>6s} {'fit_s':>6s}"

    def row(name, e):
        if "skipped" in e:
            return f"{name:34s} skipped: {e['skipped']}"
        mis = e.get("misclassification_auroc")
        return (f"{name:34s} " + " ".join(f"{e['auroc'][o]:9.4f}" for o in oods)
                + f" {e['mean_auroc']:8.4f} {e['mean_fpr95']:8.4f} {e['alert_rate']:6.4f} "
                + (f"{mis:6.3f}" if mis is not None else f"{'-':>6s}")
                + (f" {e['fit_seconds']:6.1f}" if "fit_seconds" in e else f" {'-':>6s}"))

    print(f"== {result['scenario']} ({result['data']}), alpha {result['alpha']}, "
          f"ID test error {result['test_error_rate']:.4f}", file=file)
    for layer, entries in result["layers"].items():
        print(f"-- layer {layer}  (AUROC per OOD set; FPR = mean FPR95; alert = realised rate at alpha; "
              f"misAUC = misclassification AUROC)", file=file)
        print(head, file=file)
        for k, e in entries.items():
            print(row(k, e), file=file)
    print("-- outputs (logits)", file=file)
    print(head, file=file)
    for k, e in result["outputs"].items():
        print(row(k, e), file=file)


def main(argv=None):
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="scenario folder with <layer>_<split>.npy files")
    ap.add_argument("--layers", default=None, help="comma-separated layers (default: every <layer>_train.npy "
                    "except logits)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    ap.add_argument("--pca", default="16,32", help="PCA dimensions for the pca<k> variants ('' = none)")
    ap.add_argument("--alpha", type=float, default=0.01, help="alert level for the realised alert rate")
    ap.add_argument("--scenario", default=None, help="scenario name (default: derived from --data)")
    ap.add_argument("--out", required=True, help="output JSON path")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    d = args.data
    oods, all_layers = discover(d)
    layers = args.layers.split(",") if args.layers else all_layers
    missing = [l for l in layers if not os.path.exists(os.path.join(d, f"{l}_train.npy"))]
    if missing:
        ap.error(f"layers not found in {d}: {missing} (available: {all_layers})")
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}")
    pca_ks = [int(k) for k in args.pca.split(",") if k]
    scenario = args.scenario or "/".join(os.path.normpath(d).split(os.sep)[-2:] if
                                         os.path.basename(os.path.normpath(d)) == "ci" else
                                         [os.path.basename(os.path.normpath(d))])

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    y_test = load(d, "labels_test")
    wrong = load(d, "logits_test").argmax(1) != y_test
    result = {
        "scenario": scenario,
        "data": os.path.abspath(d),
        "alpha": args.alpha,
        "ood_sets": oods,
        "n_rows": {s: int(len(load(d, f"labels_{s}"))) for s in ["train", "cal", "test"] + oods},
        "test_error_rate": float(wrong.mean()),
        "settings": {
            "ddu_jitters": "[0, float64 tiny] + [10**e for e in range(-308, 0)] (DDU gmm_utils.py)",
            "lambda_grid": "[0] + [10**(e/10) for e in range(-60, 1)]",
            "floor": FLOOR, "holdout": HOLDOUT, "seed": SEED,
            "gmm": {"n_components": 8, "reg_covar": 1e-6, "max_iter": 100, "tol": 1e-3, "init_params": "kmeans",
                    "random_state": SEED},
            "pca_ks": pca_ks, "variant_methods": sorted(VARIANT_METHODS),
            "knn": "L2-normalised rows, exact; knn = k-th NN distance k=50, knn_k1 = k=1",
            "fpr95": "smallest roc_curve fpr (drop_intermediate=False) with tpr >= 0.95",
            "p_value": "(1 + #{cal >= s}) / (n_cal + 1)",
            "misclassification": "positives = ID test rows with argmax(logits) != label",
        },
        "layers": {},
    }
    for layer in layers:
        log(f"layer {layer}")
        result["layers"][layer] = evaluate_layer(d, layer, oods, methods, pca_ks, args.alpha, wrong, log)
    result["outputs"] = evaluate_outputs(d, oods, args.alpha, wrong)
    result["versions"] = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                          "sklearn": sklearn.__version__}
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    result["command"] = " ".join([os.path.basename(sys.argv[0])] + (argv if argv is not None else sys.argv[1:]))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(_clean(result), fh, indent=1, allow_nan=False)
    print_table(result)
    print(f"total {result['total_seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
