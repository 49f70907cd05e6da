#!/usr/bin/env python3
"""LatentWatch peer benchmark: numpy / scipy / scikit-learn Gaussian density scoring.

Usage:
    python3 Tests/Benchmarks/peer_bench.py --data DIR [--quick] [--gmm FILE.npy ...]

DIR must contain (float32 / int64, C order, written by the Swift benchmark):
    train_x.npy  [N, D] float32    training activations
    train_y.npy  [N]    int64      class labels
    query_x.npy  [Q, D] float32    query activations

Prints exactly ONE JSON object to stdout; everything else goes to stderr.
Everything runs single-threaded (BLAS thread pools pinned to 1).

Model (shared by every implementation so the numbers are comparable):
  * class priors  pi_k = n_k / N
  * class means   mu_k
  * covariance    Sigma_k = (1 - r) * S_k + r * I,  S_k = Xc^T Xc / n_k  (ML estimate),
                  r = 0.1.  This is exactly what sklearn's QuadraticDiscriminantAnalysis
                  (solver='svd', reg_param=0.1) uses, so its decision_function can be checked.
  * GDA           log p(x) = logsumexp_k(log pi_k - 0.5 [D log 2pi + logdet Sigma_k
                                                      + ||L_k^{-1}(x - mu_k)||^2])
  * tied          min_k (x - mu_k)^T Sigma^{-1} (x - mu_k), Sigma = (1 - r) * pooled + r * I
"""

import os

# Must happen before numpy (and anything that imports numpy) is loaded.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import contextlib
import io
import json
import math
import re
import statistics
import sys
import time
import warnings

import numpy as np

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover - optional dependency
    threadpool_info = None
    threadpool_limits = None

import scipy
import scipy.linalg
import scipy.linalg.blas as sblas
import scipy.linalg.lapack as slapack
import sklearn
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.mixture import GaussianMixture

REG = 0.1
LOG2PI = math.log(2.0 * math.pi)
perf = time.perf_counter


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log("peer_bench: ERROR: " + msg)
    sys.exit(1)


# --------------------------------------------------------------------------------------
# timing helpers
# --------------------------------------------------------------------------------------

class Cfg:
    def __init__(self, quick):
        self.quick = quick
        self.row_block = 16 if quick else 64        # rows per timed block
        self.row_budget_s = 0.15 if quick else 1.5  # target timed seconds per row variant
        self.row_min_reps = 5 if quick else 15
        self.row_max_reps = 40 if quick else 200
        self.batch_budget_s = 0.3 if quick else 2.0
        self.batch_min_reps = 3 if quick else 7
        self.batch_max_reps = 10 if quick else 40
        self.numpy_fit_reps = 1 if quick else 5
        self.qda_fit_reps = 1 if quick else 3
        self.gmm_max_iter = 3 if quick else 10
        self.check_rows = 8


def _reps(budget_s, est_s, lo, hi):
    return max(lo, min(hi, int(budget_s / max(est_s, 1e-9))))


def time_rows(fns, rows, cfg):
    """Median seconds per call of fn(row) for every fn in the dict fns.

    One call per row; rows are visited cyclically so consecutive calls see different
    data.  A repetition times a block of cfg.row_block calls.  Variants are interleaved
    round-robin (same block of rows for each variant in a round) so that drifting
    background load on a shared machine hits all variants alike.
    """
    q = len(rows)
    block = cfg.row_block
    reps = {}
    for name, fn in fns.items():  # warm-up, also sizes the repetition count
        t0 = perf()
        for i in range(block):
            fn(rows[i % q])
        reps[name] = _reps(cfg.row_budget_s, (perf() - t0), cfg.row_min_reps, cfg.row_max_reps)
    times = {name: [] for name in fns}
    pos = block
    for r in range(max(reps.values())):
        blk = [rows[(pos + j) % q] for j in range(block)]
        pos += block
        for name, fn in fns.items():
            if r >= reps[name]:
                continue
            t0 = perf()
            for x in blk:
                fn(x)
            times[name].append((perf() - t0) / block)
    return {name: statistics.median(t) for name, t in times.items()}


def time_batch(fns, xb, cfg):
    """Median seconds per call of fn(xb) for every fn in fns (interleaved round-robin)."""
    reps = {}
    for name, fn in fns.items():
        t0 = perf()
        fn(xb)  # warm-up
        reps[name] = _reps(cfg.batch_budget_s, perf() - t0, cfg.batch_min_reps,
                           cfg.batch_max_reps)
    times = {name: [] for name in fns}
    for r in range(max(reps.values())):
        for name, fn in fns.items():
            if r >= reps[name]:
                continue
            t0 = perf()
            fn(xb)
            times[name].append(perf() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def time_fit(fn, reps):
    times = []
    for _ in range(reps):
        t0 = perf()
        fn()
        times.append(perf() - t0)
    return statistics.median(times)


def lse1(s):
    m = s.max()
    return m + math.log(np.exp(s - m).sum())


def lse_rows(s):
    m = s.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))[:, 0]


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


# --------------------------------------------------------------------------------------
# fitting (numpy)
# --------------------------------------------------------------------------------------

def numpy_fit(X, yi, K, dtype):
    """Full-covariance GDA fit.  Returns everything the scorers need.

    dtype float32: Gram/Cholesky/triangular inverse in float32 (data already float32).
    dtype float64: data upcast first (conversion included in the timing).
    """
    Xd = X if dtype == np.float32 else X.astype(np.float64)
    N, D = Xd.shape
    order = np.argsort(yi, kind="stable")
    counts = np.bincount(yi, minlength=K)
    Xs = Xd[order]
    mus = np.empty((K, D), dtype=dtype)
    Ls = np.empty((K, D, D), dtype=dtype)
    Wstack = np.empty((K * D, D), dtype=dtype)
    bstack = np.empty(K * D, dtype=dtype)
    logdet = np.empty(K)
    start = 0
    for k in range(K):
        n = int(counts[k])
        Xk = Xs[start:start + n]
        start += n
        mu = Xk.mean(axis=0)
        Xc = Xk - mu
        S = Xc.T @ Xc                       # numpy dispatches A.T @ A to syrk
        S *= (1.0 - REG) / n
        S.flat[::D + 1] += REG
        L = np.linalg.cholesky(S)           # lower
        W, info = (slapack.strtri if dtype == np.float32 else slapack.dtrtri)(L, lower=1)
        if info != 0:
            die(f"trtri failed for class {k} (info={info})")
        mus[k] = mu
        Ls[k] = L
        Wstack[k * D:(k + 1) * D] = W
        bstack[k * D:(k + 1) * D] = W @ mu
        logdet[k] = 2.0 * np.log(np.diag(L).astype(np.float64)).sum()
    priors = counts / float(N)
    const = np.log(priors) - 0.5 * (D * LOG2PI + logdet)
    return dict(K=K, D=D, mu=mus, L=Ls, W=Wstack, b=bstack, logdet=logdet,
                priors=priors, const=const, counts=counts)


def tied_fit(X, yi, K):
    """Pooled (tied) covariance, float64.  Not timed (only scoring is benchmarked)."""
    Xd = X.astype(np.float64)
    N, D = Xd.shape
    mus = np.empty((K, D))
    S = np.zeros((D, D))
    for k in range(K):
        Xk = Xd[yi == k]
        mus[k] = Xk.mean(axis=0)
        Xc = Xk - mus[k]
        S += Xc.T @ Xc
    S *= (1.0 - REG) / N
    S.flat[::D + 1] += REG
    L = np.linalg.cholesky(S)
    W, info = slapack.dtrtri(L, lower=1)
    if info != 0:
        die("trtri failed for tied covariance")
    return dict(mu=mus, Sigma=S, L=L, W=W, M=mus @ W.T)


# --------------------------------------------------------------------------------------
# numpy scorers
# --------------------------------------------------------------------------------------

def gda_single_variants(P64):
    K, D = P64["K"], P64["D"]
    const = P64["const"].copy()
    W32 = np.ascontiguousarray(P64["W"], dtype=np.float32)
    b32 = P64["b"].astype(np.float32)
    W64 = np.ascontiguousarray(P64["W"])
    b64 = P64["b"].copy()
    mu32 = [np.ascontiguousarray(P64["mu"][k], dtype=np.float32) for k in range(K)]
    L32 = [np.ascontiguousarray(P64["L"][k], dtype=np.float32) for k in range(K)]
    L32f = [np.asfortranarray(P64["L"][k], dtype=np.float32) for k in range(K)]
    W32f = [np.asfortranarray(P64["W"][k * D:(k + 1) * D], dtype=np.float32) for k in range(K)]
    z32 = np.empty(K * D, dtype=np.float32)
    z64 = np.empty(K * D, dtype=np.float64)
    maha = np.empty(K)
    strsv, strmv = sblas.strsv, sblas.strmv
    solve_tri = scipy.linalg.solve_triangular

    def stacked_f32(x):
        # one GEMV over the stacked inverse-Cholesky factors [K*D, D]
        np.dot(W32, x, out=z32)
        np.subtract(z32, b32, out=z32)
        z = z32.reshape(K, D)
        m = np.einsum("kd,kd->k", z, z)
        return lse1(const - 0.5 * m)

    def stacked_f64(x):
        np.dot(W64, x.astype(np.float64), out=z64)
        np.subtract(z64, b64, out=z64)
        z = z64.reshape(K, D)
        m = np.einsum("kd,kd->k", z, z)
        return lse1(const - 0.5 * m)

    def solve_triangular_f32(x):
        for k in range(K):
            v = solve_tri(L32[k], x - mu32[k], lower=True, check_finite=False,
                          overwrite_b=True)
            maha[k] = v @ v
        return lse1(const - 0.5 * maha)

    def blas_trsv_f32(x):
        for k in range(K):
            v = strsv(L32f[k], x - mu32[k], lower=1, overwrite_x=1)
            maha[k] = v @ v
        return lse1(const - 0.5 * maha)

    def blas_trmv_f32(x):
        # W_k = L_k^{-1} is lower triangular: half the bytes of the dense stacked GEMV
        for k in range(K):
            v = strmv(W32f[k], x - mu32[k], lower=1, overwrite_x=1)
            maha[k] = v @ v
        return lse1(const - 0.5 * maha)

    return {
        "stacked_matmul_f32": stacked_f32,
        "stacked_matmul_f64": stacked_f64,
        "scipy_solve_triangular_f32": solve_triangular_f32,
        "blas_strsv_f32": blas_trsv_f32,
        "blas_strmv_f32": blas_trmv_f32,
    }


def gda_batch_variants(P64, nmax):
    K, D = P64["K"], P64["D"]
    const = P64["const"].copy()
    W32 = np.ascontiguousarray(P64["W"], dtype=np.float32)
    b32 = P64["b"].astype(np.float32)
    W64 = np.ascontiguousarray(P64["W"])
    b64 = P64["b"].copy()
    mu32 = P64["mu"].astype(np.float32)
    mu64 = P64["mu"].copy()
    Wk32T = [W32[k * D:(k + 1) * D].T for k in range(K)]       # views, BLAS trans flag
    Wk32f = [np.asfortranarray(W32[k * D:(k + 1) * D]) for k in range(K)]
    Wk64f = [np.asfortranarray(W64[k * D:(k + 1) * D]) for k in range(K)]
    L32 = [np.ascontiguousarray(P64["L"][k], dtype=np.float32) for k in range(K)]
    buf32 = np.empty((nmax, D), dtype=np.float32)
    buf64 = np.empty((nmax, D), dtype=np.float64)
    big32 = np.empty((nmax, K * D), dtype=np.float32)
    big64 = np.empty((nmax, K * D), dtype=np.float64)
    strmm, dtrmm = sblas.strmm, sblas.dtrmm
    solve_tri = scipy.linalg.solve_triangular

    def stacked_gemm_f32(X):
        n = X.shape[0]
        Z = big32[:n]
        np.matmul(X, W32.T, out=Z)
        Z -= b32
        Z3 = Z.reshape(n, K, D)
        m = np.einsum("nkd,nkd->nk", Z3, Z3)
        return lse_rows(const - 0.5 * m)

    def stacked_gemm_f64(X):
        n = X.shape[0]
        Z = big64[:n]
        np.matmul(X.astype(np.float64), W64.T, out=Z)
        Z -= b64
        Z3 = Z.reshape(n, K, D)
        m = np.einsum("nkd,nkd->nk", Z3, Z3)
        return lse_rows(const - 0.5 * m)

    def perclass_gemm_f32(X):
        n = X.shape[0]
        Z = buf32[:n]
        m = np.empty((n, K), dtype=np.float64)
        for k in range(K):
            np.matmul(X, Wk32T[k], out=Z)
            Z -= b32[k * D:(k + 1) * D]
            m[:, k] = np.einsum("nd,nd->n", Z, Z)
        return lse_rows(const - 0.5 * m)

    def trmm_f32(X):
        # Z^T = W_k (X - mu_k)^T computed in place; (X - mu_k) in C order is (.)^T in F order
        n = X.shape[0]
        Z = buf32[:n]
        m = np.empty((n, K), dtype=np.float64)
        for k in range(K):
            np.subtract(X, mu32[k], out=Z)
            strmm(1.0, Wk32f[k], Z.T, side=0, lower=1, overwrite_b=1)
            m[:, k] = np.einsum("nd,nd->n", Z, Z)
        return lse_rows(const - 0.5 * m)

    def trmm_f64(X):
        n = X.shape[0]
        Z = buf64[:n]
        m = np.empty((n, K), dtype=np.float64)
        for k in range(K):
            np.subtract(X, mu64[k], out=Z)
            dtrmm(1.0, Wk64f[k], Z.T, side=0, lower=1, overwrite_b=1)
            m[:, k] = np.einsum("nd,nd->n", Z, Z)
        return lse_rows(const - 0.5 * m)

    def solve_triangular_f32(X):
        n = X.shape[0]
        Z = buf32[:n]
        m = np.empty((n, K), dtype=np.float64)
        for k in range(K):
            np.subtract(X, mu32[k], out=Z)
            V = solve_tri(L32[k], Z.T, lower=True, check_finite=False, overwrite_b=True)
            m[:, k] = np.einsum("dn,dn->n", V, V)
        return lse_rows(const - 0.5 * m)

    return {
        "stacked_gemm_f32": stacked_gemm_f32,
        "stacked_gemm_f64": stacked_gemm_f64,
        "perclass_gemm_f32": perclass_gemm_f32,
        "blas_strmm_f32": trmm_f32,
        "blas_dtrmm_f64": trmm_f64,
        "scipy_solve_triangular_f32": solve_triangular_f32,
    }


def tied_single_variants(T):
    W32 = np.ascontiguousarray(T["W"], dtype=np.float32)
    W64 = np.ascontiguousarray(T["W"])
    W32f = np.asfortranarray(T["W"], dtype=np.float32)
    M32 = T["M"].astype(np.float32)
    M64 = T["M"].copy()
    c64 = np.einsum("kd,kd->k", M64, M64)
    D = W32.shape[0]
    z32 = np.empty(D, dtype=np.float32)
    z64 = np.empty(D, dtype=np.float64)
    strmv = sblas.strmv

    def whiten_f32(x):
        np.dot(W32, x, out=z32)
        d = M32 - z32
        return float(np.einsum("kd,kd->k", d, d).min())

    def whiten_f64(x):
        np.dot(W64, x.astype(np.float64), out=z64)
        d = M64 - z64
        return float(np.einsum("kd,kd->k", d, d).min())

    def expanded_f32(x):
        # ||z||^2 - 2 M z + ||M_k||^2 (argmin only needs the K x D GEMV; value needs ||z||^2)
        np.dot(W32, x, out=z32)
        s = c64 - 2.0 * (M32 @ z32)
        return float(s.min() + float(z32 @ z32))

    def trmv_f32(x):
        z = strmv(W32f, x, lower=1)
        d = M32 - z
        return float(np.einsum("kd,kd->k", d, d).min())

    return {
        "whiten_matmul_f32": whiten_f32,
        "whiten_matmul_f64": whiten_f64,
        "expanded_matmul_f32": expanded_f32,
        "blas_strmv_f32": trmv_f32,
    }


# --------------------------------------------------------------------------------------
# references (float64, independent factorisations) for the correctness checks
# --------------------------------------------------------------------------------------

def reference_gda(P64, X):
    """Per-class joint log p(x, k) in float64 via eigendecomposition of Sigma_k."""
    K, D = P64["K"], P64["D"]
    Xd = X.astype(np.float64)
    out = np.empty((Xd.shape[0], K))
    for k in range(K):
        L = P64["L"][k].astype(np.float64)
        Sigma = L @ L.T
        evals, evecs = np.linalg.eigh(Sigma)
        Y = (Xd - P64["mu"][k].astype(np.float64)) @ evecs
        maha = (Y * Y / evals).sum(axis=1)
        out[:, k] = (math.log(P64["priors"][k])
                     - 0.5 * (D * LOG2PI + np.log(evals).sum() + maha))
    return out


def reference_tied(T, X):
    Xd = X.astype(np.float64)
    Pinv = np.linalg.inv(T["Sigma"])
    best = np.full(Xd.shape[0], np.inf)
    for mu in T["mu"]:
        d = Xd - mu
        best = np.minimum(best, np.einsum("nd,de,ne->n", d, Pinv, d))
    return best


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

def blas_info():
    info = {}
    try:
        cfg = np.show_config(mode="dicts")
        deps = cfg.get("Build Dependencies", {})
        info["numpy_blas"] = {k: deps.get("blas", {}).get(k)
                              for k in ("name", "version", "openblas configuration")}
        info["numpy_lapack"] = {k: deps.get("lapack", {}).get(k) for k in ("name", "version")}
    except Exception as e:  # pragma: no cover
        info["numpy_show_config_error"] = repr(e)
    if threadpool_info is not None:
        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                   "architecture", "threading_layer", "num_threads")}
            | {"file": os.path.basename(p.get("filepath", ""))}
            for p in threadpool_info()
        ]
    return info


def load(data_dir):
    paths = {n: os.path.join(data_dir, n + ".npy") for n in ("train_x", "train_y", "query_x")}
    for n, p in paths.items():
        if not os.path.isfile(p):
            die(f"missing {p}")
    X = np.load(paths["train_x"])
    y = np.load(paths["train_y"])
    Q = np.load(paths["query_x"])
    if X.ndim != 2 or Q.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] \
            or X.shape[1] != Q.shape[1]:
        die(f"bad shapes: train_x {X.shape}, train_y {y.shape}, query_x {Q.shape}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    if not (np.isfinite(X).all() and np.isfinite(Q).all()):
        die("non-finite values in input")
    classes, yi = np.unique(y, return_inverse=True)
    return X, y, yi.astype(np.int64), classes, Q


def run(args):
    cfg = Cfg(args.quick)
    t_start = perf()
    X, y, yi, classes, Q = load(args.data)
    N, D = X.shape
    K = len(classes)
    nq = Q.shape[0]
    log(f"peer_bench: N={N} D={D} K={K} Q={nq} quick={cfg.quick}")
    if np.bincount(yi).min() <= D:
        log("peer_bench: warning: some class has <= D samples; covariance relies on reg")
    rows = [Q[i] for i in range(nq)]
    out = {
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "sklearn_version": sklearn.__version__,
        "python_version": sys.version.split()[0],
        "blas": blas_info(),
        "blas_core": next((p.get("architecture") for p in (threadpool_info() if threadpool_info else [])
                           if p.get("internal_api") == "openblas"), None),
        "config": {"n_train": N, "dim": D, "n_classes": K, "n_query": nq,
                   "reg_param": REG, "quick": cfg.quick, "threads": 1,
                   "row_block": cfg.row_block, "covariance": "(1-r)*ML_cov + r*I"},
    }
    variants = {}
    checks = {}

    # ---------------- fit (numpy) ----------------
    P64 = numpy_fit(X, yi, K, np.float64)
    P32 = numpy_fit(X, yi, K, np.float32)
    T = tied_fit(X, yi, K)

    ref_joint = reference_gda(P64, Q)
    ref_lp = lse_rows(ref_joint)

    # float32 fit must give the same model as the float64 fit
    nc = cfg.check_rows
    f32_scorer = gda_single_variants(P32)["stacked_matmul_f64"]
    checks["numpy_fit_f32_vs_ref"] = rel_err([f32_scorer(Q[i]) for i in range(nc)],
                                             ref_lp[:nc])

    # ---------------- correctness checks ----------------
    single = gda_single_variants(P64)
    for name, fn in single.items():
        got = [fn(Q[i]) for i in range(nc)]
        checks[f"gda_one.{name}"] = rel_err(got, ref_lp[:nc])
    batch = gda_batch_variants(P64, nq)
    for name, fn in batch.items():
        checks[f"gda_batch.{name}"] = rel_err(fn(Q), ref_lp)
    tied = tied_single_variants(T)
    ref_tied = reference_tied(T, Q[:nc])
    for name, fn in tied.items():
        checks[f"tied_one.{name}"] = rel_err([fn(Q[i]) for i in range(nc)], ref_tied)

    # scikit-learn GaussianMixture with parameters set from the class statistics (no EM)
    def make_gmm(dtype):
        g = GaussianMixture(n_components=K, covariance_type="full")
        g.weights_ = P64["priors"].astype(dtype)
        g.means_ = P64["mu"].astype(dtype)
        Ls = P64["L"].astype(np.float64)
        g.covariances_ = np.einsum("kij,klj->kil", Ls, Ls).astype(dtype)
        Wk = P64["W"].reshape(K, D, D)
        g.precisions_cholesky_ = np.ascontiguousarray(np.transpose(Wk, (0, 2, 1)), dtype=dtype)
        g.precisions_ = np.einsum("kji,kjl->kil", Wk, Wk).astype(dtype)
        g.converged_ = True
        g.n_iter_ = 0
        g.lower_bound_ = 0.0
        g.n_features_in_ = D
        return g

    gmms = {"gmm_f64_params": make_gmm(np.float64), "gmm_f32_params": make_gmm(np.float32)}
    for name, g in gmms.items():
        checks[f"sklearn_one.{name}"] = rel_err(
            [g.score_samples(Q[i][None, :])[0] for i in range(nc)], ref_lp[:nc])
        checks[f"sklearn_batch.{name}"] = rel_err(g.score_samples(Q), ref_lp)

    # QDA fit is timed here (item 5) and the last fitted model is reused below.
    qda_fit_times = []
    for _ in range(cfg.qda_fit_reps):
        t0 = perf()
        qda = QuadraticDiscriminantAnalysis(reg_param=REG).fit(X, y)
        qda_fit_times.append(perf() - t0)
    # decision_function = log pi_k - 0.5 (logdet_k + maha_k)  ==  joint_k + 0.5 D log 2pi
    dec = qda.decision_function(Q[:64])
    checks["sklearn_qda.decision_vs_ref"] = rel_err(dec, ref_joint[:64] + 0.5 * D * LOG2PI)
    agree = float(np.mean(qda.predict(Q) == classes[np.argmax(ref_joint, axis=1)]))
    checks["sklearn_qda.argmax_agreement"] = agree

    bad = {k: v for k, v in checks.items()
           if (k.endswith("argmax_agreement") and v < 0.999)
           or (not k.endswith("argmax_agreement") and not (v <= 1e-3))}
    out["checks"] = checks
    if bad:
        log("peer_bench: numerical checks FAILED (max relative error > 1e-3): "
            + json.dumps(bad))
        log(json.dumps(out))  # stderr: keep stdout free of a misleading result
        sys.exit(2)
    log(f"peer_bench: checks passed (worst {max(v for k, v in checks.items() if 'agreement' not in k):.2e})"
        f" [{perf() - t_start:.1f}s]")

    # ---------------- 1 + 2. single-row GDA (numpy and sklearn, interleaved) ----------
    fns = {"numpy." + k: f for k, f in single.items()}
    for name, g in gmms.items():
        fns["sklearn." + name] = lambda x, g=g: g.score_samples(x[None, :])
    fns["sklearn.qda_predict_log_proba"] = lambda x: qda.predict_log_proba(x[None, :])
    res = {k: t * 1e6 for k, t in time_rows(fns, rows, cfg).items()}
    for k, t in res.items():
        log(f"  one-row {k}: {t:.1f} us")
    v = {k[6:]: t for k, t in res.items() if k.startswith("numpy.")}
    variants["numpy_gda_one_us"] = v
    best = min(v, key=v.get)
    out["numpy_gda_one_us"] = v[best]
    out["numpy_gda_one_best"] = best
    v = {k[8:]: t for k, t in res.items() if k.startswith("sklearn.gmm")}
    variants["sklearn_gda_one_us"] = v
    best = min(v, key=v.get)
    out["sklearn_gda_one_us"] = v[best]
    out["sklearn_gda_one_best"] = best
    out["sklearn_qda_one_us"] = res["sklearn.qda_predict_log_proba"]
    log(f"  [{perf() - t_start:.1f}s]")

    # ---------------- 3. batch ----------------
    fns = {"numpy." + k: f for k, f in batch.items()}
    for name, g in gmms.items():
        fns["sklearn." + name] = g.score_samples
    fns["sklearn.qda_predict_log_proba"] = qda.predict_log_proba
    res = {k: nq / t for k, t in time_batch(fns, Q, cfg).items()}
    for k, t in res.items():
        log(f"  batch {k}: {t:.0f} rows/s")
    v = {k[6:]: t for k, t in res.items() if k.startswith("numpy.")}
    variants["numpy_gda_batch_per_s"] = v
    best = max(v, key=v.get)
    out["numpy_gda_batch_per_s"] = v[best]
    out["numpy_gda_batch_best"] = best
    v = {k[8:]: t for k, t in res.items() if k.startswith("sklearn.gmm")}
    variants["sklearn_gda_batch_per_s"] = v
    best = max(v, key=v.get)
    out["sklearn_gda_batch_per_s"] = v[best]
    out["sklearn_gda_batch_best"] = best
    out["sklearn_qda_batch_per_s"] = res["sklearn.qda_predict_log_proba"]
    log(f"  [{perf() - t_start:.1f}s]")

    # ---------------- 4. tied Mahalanobis ----------------
    v = {k: t * 1e6 for k, t in time_rows(tied, rows, cfg).items()}
    for k, t in v.items():
        log(f"  tied one-row {k}: {t:.1f} us")
    variants["numpy_tied_one_us"] = v
    best = min(v, key=v.get)
    out["numpy_tied_one_us"] = v[best]
    out["numpy_tied_one_best"] = best

    # ---------------- 5. fit ----------------
    v = {
        "fit_f32": time_fit(lambda: numpy_fit(X, yi, K, np.float32), cfg.numpy_fit_reps),
        "fit_f64": time_fit(lambda: numpy_fit(X, yi, K, np.float64), cfg.numpy_fit_reps),
    }
    log(f"  numpy fit: {v}")
    variants["numpy_fit_s"] = v
    best = min(v, key=v.get)
    out["numpy_fit_s"] = v[best]
    out["numpy_fit_best"] = best

    out["sklearn_fit_s"] = statistics.median(qda_fit_times)
    out["sklearn_fit_what"] = "QuadraticDiscriminantAnalysis(reg_param=0.1).fit (svd solver)"
    log(f"  sklearn QDA fit: {out['sklearn_fit_s']:.2f} s  [{perf() - t_start:.1f}s]")

    # ---------------- 6. GMM EM iterations, on the files given with --gmm ----------------
    for path in args.gmm:
        Xg = np.load(path).astype(np.float64)
        Dg = Xg.shape[1]
        try:
            gmm = GaussianMixture(n_components=K, covariance_type="full", max_iter=cfg.gmm_max_iter,
                                  tol=0, n_init=1, init_params="random_from_data", random_state=0,
                                  verbose=2, verbose_interval=1)
            vbuf = io.StringIO()
            with warnings.catch_warnings(), contextlib.redirect_stdout(vbuf):
                warnings.simplefilter("ignore")
                t0 = perf()
                gmm.fit(Xg)
                t_gmm = perf() - t0
            lapses = [(int(a), float(b)) for a, b in
                      re.findall(r"Iteration (\d+)\s+time lapse ([0-9.eE+-]+)s", vbuf.getvalue())]
            steady = [b for a, b in lapses if a >= 2] or [b for _, b in lapses]
            out[f"sklearn_gmm_iter_s_{Dg}"] = statistics.median(steady) if steady else None
            out[f"sklearn_gmm_fit_total_s_{Dg}"] = t_gmm
            log(f"  sklearn GMM D={Dg}: {t_gmm:.2f} s / {gmm.n_iter_} iterations  [{perf() - t_start:.1f}s]")
        except ValueError as e:  # EM can fail on some data (collapsed components); the other figures stand.
            log(f"  sklearn GMM D={Dg} fit failed: {e}")
            out[f"sklearn_gmm_iter_s_{Dg}"] = None
    out["sklearn_gmm_note"] = ("GaussianMixture(covariance_type='full', tol=0).fit on float64; per iteration: "
                               "median of the verbose log's time lapses, iterations >= 2")

    # ---------------- 7. exact nearest neighbour of one input (deep KNN's search), if the files are there ----------
    nb_train = os.path.join(args.data, "nb_train_x.npy")
    if os.path.exists(nb_train):
        from sklearn.neighbors import NearestNeighbors

        def l2(a):
            a = a.astype(np.float32)
            return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)

        R = l2(np.load(nb_train))
        Qn = l2(np.load(os.path.join(args.data, "nb_query_x.npy")))
        r2 = np.einsum("ij,ij->i", R, R)

        def numpy_nn(q):
            return float(np.sqrt(max(0.0, float((r2 - 2 * (R @ q)).min() + q @ q))))

        nn = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(R)

        def sklearn_nn(q):
            return float(nn.kneighbors(q[None, :], return_distance=True)[0][0, 0])

        fns = {"numpy_dot": numpy_nn, "sklearn_brute": sklearn_nn}
        got = [numpy_nn(Qn[i]) for i in range(8)]
        checks["nn_numpy_vs_sklearn"] = rel_err(got, [sklearn_nn(Qn[i]) for i in range(8)])
        v = {k: t * 1e6 for k, t in time_rows(fns, [Qn[i] for i in range(Qn.shape[0])], cfg).items()}
        log(f"  nearest neighbour one query: {v}")
        variants["nn_one_us"] = v
        out["numpy_nn_one_us"] = v["numpy_dot"]
        out["sklearn_nn_one_us"] = v["sklearn_brute"]
        out["nn_rows"] = int(R.shape[0])

    out["variants"] = variants
    out["total_runtime_s"] = perf() - t_start
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="directory with train_x/train_y/query_x .npy")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--gmm", action="append", default=[],
                    help="an N x D .npy to time GaussianMixture's EM iterations on (repeatable)")
    args = ap.parse_args()
    limiter = (threadpool_limits(limits=1) if threadpool_limits is not None
               else contextlib.nullcontext())
    with limiter:
        # keep stdout clean for the single JSON object
        real_stdout = sys.stdout
        sys.stdout = sys.stderr
        try:
            out = run(args)
        finally:
            sys.stdout = real_stdout
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
