#!/usr/bin/env python3
"""Whole process, from file to file: `latentwatch score` against a numpy script doing the same work.

Usage (from the repository root, after `swift build -c release --product latentwatch`):
    python3 Tests/Benchmarks/score_whole_process.py [--rows 51200] [--repeats 3] [--binary .build/release/latentwatch]

Both sides start a fresh process, read the same float32 .npy of queries (rows x 512), compute the surprise
-log p(z) of each row under the same kind of model (10 class-conditional Gaussians, full covariance, no L2
normalisation, float32 parameters) and write one float64 .npy of scores:
  * ours: `latentwatch score --model M --input Q --output S` (the model fitted by `latentwatch fit`, untimed);
  * numpy: `python3 THIS --numpy-child PARAMS Q S`, which loads the parameters (means, inverse Cholesky factors,
    log normalisers and weights, fitted here with numpy from the same training file and the same fixed shrinkage,
    (1 - r) S + r I, untimed), scores with one float32 triangular product (strmm) and norm per class and scipy's logsumexp, and
    saves. latentwatch fits on all of the training file too (a separate calibration file is passed).
Wall-clock time of each process, best of --repeats; BLAS pinned to one thread on both sides. The two score
vectors are compared (Spearman correlation) so that a broken side cannot win.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

D, K, PER_CLASS, SHRINK = 512, 10, 2000, 0.1


def numpy_child(params: str, queries: str, out: str) -> None:
    from scipy.linalg.blas import strmm
    from scipy.special import logsumexp

    p = np.load(params)
    means, factors, lognorm, logw = p["means"], p["factors"], p["lognorm"], p["logw"]
    x = np.load(queries)
    joint = np.empty((x.shape[0], len(means)), dtype=np.float64)
    for k in range(len(means)):
        # W (x - mu) for every row at once: a triangular product (BLAS strmm, numpy's best in peer_bench.py) on
        # the centred rows seen as a column-major D x n matrix, then float32 column norms.
        y = strmm(1.0, factors[k], (x - means[k]).T, lower=1, overwrite_b=1)
        joint[:, k] = logw[k] + lognorm[k] - 0.5 * np.einsum("ij,ij->j", y, y)
    np.save(out, -logsumexp(joint, axis=1))


def fit_numpy(train: np.ndarray, labels: np.ndarray) -> dict:
    means, factors, lognorm, logw = [], [], [], []
    for k in range(K):
        xk = train[labels == k].astype(np.float64)
        mu = xk.mean(axis=0)
        cov = np.cov(xk, rowvar=False, bias=True)
        cov = (1 - SHRINK) * cov + SHRINK * np.eye(D)  # latentwatch's fixed shrinkage: (1 - r) S + r I
        chol = np.linalg.cholesky(cov)
        means.append(mu.astype(np.float32))
        factors.append(np.linalg.inv(chol).astype(np.float32))
        lognorm.append(-0.5 * (D * np.log(2 * np.pi) + 2 * np.log(np.diag(chol)).sum()))
        logw.append(np.log(len(xk) / len(train)))
    return {"means": np.stack(means), "factors": np.stack(factors), "lognorm": np.array(lognorm),
            "logw": np.array(logw)}


def timed(cmd: list) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--numpy-child":
        numpy_child(*sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=51200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--binary", default=".build/release/latentwatch")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(K, D)) * 2
    mixing = rng.normal(size=(K, D, 32)) / np.sqrt(32)
    labels = np.repeat(np.arange(K), PER_CLASS)

    def sample(lab):
        z = rng.normal(size=(len(lab), 32))
        return (centres[lab] + np.einsum("nij,nj->ni", mixing[lab], z) + 0.5 * rng.normal(size=(len(lab), D))
                ).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        train, query = os.path.join(tmp, "train.npy"), os.path.join(tmp, "query.npy")
        lab_path, model, params = os.path.join(tmp, "labels.npy"), os.path.join(tmp, "m.lwm"), os.path.join(tmp, "p.npz")
        calibration = os.path.join(tmp, "calibration.npy")
        np.save(calibration, sample(rng.integers(0, K, size=2000)))  # so that ours fits on all of train, as numpy
        train_x = sample(labels)
        np.save(train, train_x)
        np.save(lab_path, labels.astype(np.int64))
        np.save(query, sample(rng.integers(0, K, size=args.rows)))
        subprocess.run([args.binary, "fit", "--activations", train, "--labels", lab_path, "--family", "gda",
                        "--no-l2", "--regularization", str(SHRINK), "--precision", "float32", "--calibration", calibration,
                        "--output", model], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        np.savez(params, **fit_numpy(train_x, labels))
        ours_out, numpy_out = os.path.join(tmp, "ours.npy"), os.path.join(tmp, "numpy.npy")
        ours = [timed([args.binary, "score", "--model", model, "--input", query, "--output", ours_out])
                for _ in range(args.repeats)]
        peer = [timed([sys.executable, os.path.abspath(__file__), "--numpy-child", params, query, numpy_out])
                for _ in range(args.repeats)]
        a, b = np.load(ours_out), np.load(numpy_out)
        rank = np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]
        system = subprocess.run([args.binary, "inspect", "--system"], capture_output=True, text=True).stdout
    print(system.strip())
    print(f"numpy {np.__version__}; queries {args.rows} x {D}, K = {K}; best of {args.repeats} wall-clock runs")
    print(f"latentwatch score: {min(ours):.2f} s (runs {', '.join(f'{t:.2f}' for t in ours)})")
    print(f"numpy script:      {min(peer):.2f} s (runs {', '.join(f'{t:.2f}' for t in peer)})")
    print(f"speedup: {min(peer) / min(ours):.2f}x (target >= 1.3x); Spearman correlation of the scores: {rank:.4f}")
    if rank < 0.99:
        sys.exit("the two sides disagree on the scores' order: not a comparison")


if __name__ == "__main__":
    main()
