#!/usr/bin/env python3
"""The neighbour index through the real CLI: AUROC per OOD set of the default fit and of the same fit with
`--neighbours`, on every layer given, ranking inputs by what a monitor alerts on.

For each `DATA:LAYER` (a folder in the evaluation layout, `<layer>_<split>.npy` and `labels_train.npy`, as
`make_image.py` and `make_text.py` write them; regression folders give `--targets` instead, see below) the script
runs `latentwatch fit` twice (without an index, `--neighbours off`, and with `--neighbours ROWS`, the default's
index where the fit calibrates on at least 1,000 inputs), scores the test and OOD sets with
`latentwatch score`, and reports AUROC of test against each OOD set:

  default     the surprise (the fit without an index)
  neighbour   the distance to the nearest stored fitting row alone
  combined    the Cauchy combination of the surprise's and the distance's p-values, which the model's combined
              conformal p-value is an increasing function of (ranking by it, not by its rounded p-value)

Regression scenarios (`make_regression.py`, `make_tabular_regression.py` arrays: `<split>_<layer>.npy`,
`train_targets.npy`): pass `--regression`, the splits are train / calibration / test and the OOD set names.

With `LATENTWATCH_LIBRARY` set to a release build of liblatentwatch.so, the script also times one-input scoring of
both models through the Python package (`Model.score` of one row, 2,000 test rows, median of 5 passes, alternating
the two models; ctypes' few microseconds are in both).

Usage:
  python3 Tests/Evaluation/neighbour_eval.py --cli .build/release/latentwatch DATA/image:fc DATA/image:conv3_gap
  python3 Tests/Evaluation/neighbour_eval.py --regression --cli ... /work/evaldata/regression/arrays:fc
  python3 Tests/Evaluation/neighbour_eval.py --regression --fit-args "--no-l2 --family regression-tied" ...
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.metrics import roc_auc_score


def cauchy(*ps):
    return np.mean([np.tan((0.5 - np.clip(p, 1e-300, 1 - 1e-16)) * np.pi) for p in ps], axis=0)


def auroc(s_id, s_ood):
    return float(roc_auc_score(np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))], np.r_[s_id, s_ood]))


def loo_combined(cal_s, cal_n, s, n):
    """The model's combined p-values of rows (s, n) against calibration rows (cal_s, cal_n), built as
    LatentModelFitter builds them: each calibration row's Cauchy statistic of its leave-one-out p-values."""
    m = len(cal_s)
    ss, sn = np.sort(cal_s), np.sort(cal_n)
    ge = lambda sorted_, v: len(sorted_) - np.searchsorted(sorted_, v, side="left")  # noqa: E731
    t_cal = cauchy((ge(ss, cal_s) - 1 + 1) / (m + 1), (ge(sn, cal_n) - 1 + 1) / (m + 1))
    t = cauchy((1 + ge(ss, s)) / (m + 1), (1 + ge(sn, n)) / (m + 1))
    st = np.sort(t_cal)
    return (1 + ge(st, t)) / (m + 1)


def validity(cal, test, splits=400, alphas=(0.01, 0.05, 0.1), seed=0):
    """Mean realised alert rate of the combined p-value over random re-splits of the pooled calibration and test
    rows into a calibration set of the original size and the rest (the scores are fixed functions of an input
    given the fitted model, so the pooled rows are exchangeable)."""
    s = np.r_[cal["surprise"], test["surprise"]]
    n = np.r_[cal["neighbour"], test["neighbour"]]
    m = len(cal["surprise"])
    rng = np.random.default_rng(seed)
    rates = {a: [] for a in alphas}
    for _ in range(splits):
        perm = rng.permutation(len(s))
        c, t = perm[:m], perm[m:]
        p = loo_combined(s[c], n[c], s[t], n[t])
        for a in alphas:
            rates[a].append(float(np.mean(p <= a)))
    return {str(a): {"mean": float(np.mean(v)), "sd": float(np.std(v))} for a, v in rates.items()}


def one_input_micros(plain_path, nb_path, rows):
    """Median microseconds per one-input `Model.score` of each model, or None without the library."""
    if not os.environ.get("LATENTWATCH_LIBRARY"):
        return None
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Sources", "Python"))
    import latentwatch

    models = {"plain": latentwatch.load(plain_path), "neighbours": latentwatch.load(nb_path)}
    x = np.ascontiguousarray(rows[:2000], dtype=np.float32)
    times = {k: [] for k in models}
    for k, m in models.items():  # warm-up
        for r in x[:200]:
            m.score(r)
    for _ in range(5):
        for k, m in models.items():
            t = time.perf_counter()
            for r in x:
                m.score(r)
            times[k].append((time.perf_counter() - t) / len(x) * 1e6)
    return {k: float(np.median(v)) for k, v in times.items()}


def splits(data, layer, regression):
    if regression:
        names = sorted({f.split("_")[0] for f in os.listdir(data) if f.endswith(f"_{layer}.npy")})
        oods = [n for n in names if n not in ("train", "calibration", "test")]
        path = lambda s: os.path.join(data, f"{s}_{layer}.npy")  # noqa: E731
        return path("train"), path("calibration"), path("test"), {o: path(o) for o in oods}
    oods = sorted(f[len("labels_ood_"):-4] for f in os.listdir(data) if f.startswith("labels_ood_"))
    path = lambda s: os.path.join(data, f"{layer}_{s}.npy")  # noqa: E731
    return path("train"), path("cal"), path("test"), {o: path(f"ood_{o}") for o in oods}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=".build/release/latentwatch")
    ap.add_argument("--rows", type=int, default=32768)
    ap.add_argument("--regression", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--fit-args", default="", help="more `latentwatch fit` options for both fits, for example "
                    "\"--no-l2 --family regression-tied\"")
    ap.add_argument("layers", nargs="+", help="DATA:LAYER")
    a = ap.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in a.layers:
            data, layer = spec.rsplit(":", 1)
            train, cal, test, oods = splits(data, layer, a.regression)
            if a.regression:
                sup = ["--targets", os.path.join(data, "train_targets.npy"),
                       "--calibration-targets", os.path.join(data, "calibration_targets.npy")]
            else:
                sup = ["--labels", os.path.join(data, "labels_train.npy")]
            row = {}
            for name, extra in (("plain", ["--neighbours", "off"]), ("nb", ["--neighbours", str(a.rows)])):
                model = os.path.join(tmp, f"{name}.lwm")
                t = time.time()
                subprocess.run([a.cli, "fit", "--activations", train, "--calibration", cal, "--layer", layer,
                                "--output", model] + sup + extra + a.fit_args.split(), check=True, capture_output=True)
                fit_s = time.time() - t
                cols = {}
                for split, path in [("cal", cal), ("test", test)] + sorted(oods.items()):
                    out = os.path.join(tmp, f"{name}_{split}.csv")
                    subprocess.run([a.cli, "score", "--model", model, "--input", path, "--output", out,
                                    "--score", "surprise", "--score", "surprise-p-value", "--score", "neighbour",
                                    "--score", "neighbour-p-value", "--score", "p-value"],
                                   check=True, capture_output=True)
                    cols[split] = np.genfromtxt(out, delimiter=",", names=True, deletechars="")
                row[name] = (cols, fit_s, os.path.getsize(model))
            plain, nb = row["plain"][0], row["nb"][0]
            micros = one_input_micros(os.path.join(tmp, "plain.lwm"), os.path.join(tmp, "nb.lwm"), np.load(test))
            r = {"fit_seconds": {"plain": row["plain"][1], "neighbours": row["nb"][1]},
                 "file_bytes": {"plain": row["plain"][2], "neighbours": row["nb"][2]}, "auroc": {}}
            for o in sorted(oods):
                comb = lambda c: cauchy(c["surprise-p-value"], c["neighbour-p-value"])  # noqa: E731
                r["auroc"][o] = {
                    "default": auroc(plain["test"]["surprise"], plain[o]["surprise"]),
                    "neighbour": auroc(nb["test"]["neighbour"], nb[o]["neighbour"]),
                    "combined": auroc(comb(nb["test"]), comb(nb[o])),
                }
            for k in ("default", "neighbour", "combined"):
                r[f"mean_{k}"] = float(np.mean([v[k] for v in r["auroc"].values()]))
            r["test_alert_rate_0.01"] = float(np.mean(nb["test"]["p-value"] <= 0.01))
            r["validity"] = validity(nb["cal"], nb["test"])
            # The CLI's combined p-values against this script's construction on the same calibration scores.
            mine = loo_combined(nb["cal"]["surprise"], nb["cal"]["neighbour"], nb["test"]["surprise"],
                                nb["test"]["neighbour"])
            r["p_value_mismatch_share"] = float(np.mean(np.abs(mine - nb["test"]["p-value"]) > 1e-9))
            if micros:
                r["one_input_us"] = micros
            result[spec] = r
            print(f"{spec}: mean default {r['mean_default']:.4f}  neighbour {r['mean_neighbour']:.4f}  combined "
                  f"{r['mean_combined']:.4f}  (file {r['file_bytes']['plain'] / 1e6:.2f} -> "
                  f"{r['file_bytes']['neighbours'] / 1e6:.2f} MB, fit {r['fit_seconds']['plain']:.1f} -> "
                  f"{r['fit_seconds']['neighbours']:.1f} s, test alert rate at 0.01: {r['test_alert_rate_0.01']:.4f})")
            if micros:
                print(f"    one input through the Python package: {micros['plain']:.1f} -> {micros['neighbours']:.1f} us "
                      f"({micros['neighbours'] / micros['plain']:.2f}x)")
            print(f"    test rows whose CLI p-value differs from this script's: {r['p_value_mismatch_share']:.4f}")
            print("    realised alert rate over 400 re-splits: " + ", ".join(
                f"{a}: {v['mean']:.4f} (sd {v['sd']:.4f})" for a, v in r["validity"].items()))
            for o, v in r["auroc"].items():
                print(f"    {o:20s} {v['default']:.3f}  {v['neighbour']:.3f}  {v['combined']:.3f}")
            sys.stdout.flush()
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
