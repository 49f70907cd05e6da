#!/usr/bin/env python3
"""Classical stream change detectors on the same conformal p-value streams as LatentWatch's ShiftDetector.

Input: a folder with manifest.json =
  {"alpha": 0.01, "streams": [{"file": "x.npy", "change_at": int or null, "scenario": ..., "ood": ..., "run": int}]}
where every file is a float64 1-D array of conformal p-values (uniform-ish for in-distribution inputs; from index
`change_at` on, OOD inputs gradually replace ID ones). Streams with change_at null are pure ID streams.

Detectors, all fed the same sequence (index t = 0-based position of the input whose update raised the alarm):
  * river.drift.ADWIN on x = -log(p) (two-sided: any detected change in the window mean counts as an alarm;
    under the null x ~ Exp(1)), once with river's default delta = 0.002 and once with delta calibrated on
    simulated uniform p-value streams (largest delta on a grid whose null false-alarm probability per stream is
    <= --target-far);
  * river.drift.PageHinkley(mode="up") on x = -log(p) (null mean 1, sd 1): delta = --ph-delta (default 0.25,
    half of a mean shift of 0.5 as in a CUSUM reference value), alpha = river's default forgetting factor
    1 - 1e-4, min_instances = 30, threshold = smallest value on a grid whose simulated null false-alarm
    probability per stream is <= --target-far;
  * a fixed-window binomial test: non-overlapping windows of n = 100 inputs (aligned at t = 0); alarm at the
    window's last input when #{p <= alpha} > q, q = the upper binomial(n, alpha) quantile at level 0.001 (smallest
    q with P(K <= q) >= 0.999, so P(K > q) <= 0.001 per window under uniform p-values).
River's detectors reset themselves after each alarm; they are not reset otherwise.

Reported per detector: on ID streams, the number of streams with any alarm and alarms per 10^4 inputs; on
change streams, false alarms (any alarm before change_at), the delay of the first alarm at or after change_at
(delay = t - change_at; 0 = alarm on the first post-change input), median / mean delay over detected streams and
the number of misses (no alarm from change_at to the end). Results are grouped by (scenario, ood).

Calibration streams are continuous uniform p-values (numpy default_rng(--seed)); real conformal p-values are
discrete and slightly conservative, so the realised null rate on real ID streams can differ.

Usage:
  /work/evaldata/.venv-river/bin/python stream_baselines.py --streams DIR --out baselines.json
  /work/evaldata/.venv-river/bin/python stream_baselines.py --self-test [--out selftest.json]
"""
import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import river  # noqa: E402
from river import drift  # noqa: E402

ADWIN_DELTA_GRID = [1e-6, 1e-5, 1e-4, 1e-3, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
PH_THRESHOLD_GRID = [20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 60.0, 70.0, 80.0, 100.0, 150.0, 200.0]


# ------------------------------------------------------------------------------------------------------------
# Detectors: each takes a p-value array and returns the sorted list of alarm indices
# ------------------------------------------------------------------------------------------------------------

def neglogp(p):
    """x = -log(p) (Exp(1) for uniform p); p is clipped to >= 1e-300."""
    return -np.log(np.clip(p, 1e-300, 1.0))


def run_river(detector, x):
    """Feed the values x to a river drift detector; return the indices t at which drift_detected was set."""
    alarms = []
    for t, v in enumerate(x.tolist()):
        detector.update(v)
        if detector.drift_detected:
            alarms.append(t)
    return alarms


def adwin_alarms(p, delta):
    """river.drift.ADWIN(delta) (Bifet & Gavalda 2007; other parameters river defaults: clock 32, max_buckets 5,
    min_window_length 5, grace_period 10) on -log(p); two-sided."""
    return run_river(drift.ADWIN(delta=delta), neglogp(p))


def page_hinkley_alarms(p, threshold, delta, alpha=1 - 1e-4, min_instances=30):
    """river.drift.PageHinkley(mode="up") (Page 1954) on -log(p): alarm when the faded cumulative sum of
    (x_t - running mean - delta) rises more than `threshold` above its running minimum."""
    ph = drift.PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold, alpha=alpha, mode="up")
    return run_river(ph, neglogp(p))


def binom_upper_quantile(n, alpha, level):
    """Smallest q with P(Binomial(n, alpha) <= q) >= 1 - level (pure Python, exact)."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * alpha ** k * (1 - alpha) ** (n - k)
        if cdf >= 1 - level:
            return k
    return n


def window_alarms(p, alpha, n=100, level=1e-3):
    """Fixed-window binomial test: non-overlapping windows of n inputs; alarm at the window's last index when
    #{p <= alpha} > binom_upper_quantile(n, alpha, level). Trailing partial windows are not tested."""
    q = binom_upper_quantile(n, alpha, level)
    m = len(p) // n
    counts = (p[: m * n].reshape(m, n) <= alpha).sum(1)
    return [int(w * n + n - 1) for w in np.flatnonzero(counts > q)]


# ------------------------------------------------------------------------------------------------------------
# Calibration on simulated null streams
# ------------------------------------------------------------------------------------------------------------

def null_far(alarm_fn, length, n_sim, seed):
    """Fraction of n_sim simulated uniform p-value streams of the given length with at least one alarm."""
    rng = np.random.default_rng(seed)
    hit = 0
    for _ in range(n_sim):
        p = 1.0 - rng.random(length)            # in (0, 1]
        hit += bool(alarm_fn(p))
    return hit / n_sim


def calibrate(length, n_sim, seed, target, ph_delta, log):
    """Pick ADWIN's delta (largest on ADWIN_DELTA_GRID) and PageHinkley's threshold (smallest on
    PH_THRESHOLD_GRID) whose simulated null false-alarm probability per stream of `length` is <= target."""
    adwin_table, ph_table = {}, {}
    adwin_delta = None
    for d in ADWIN_DELTA_GRID:
        far = null_far(lambda p: adwin_alarms(p, d), length, n_sim, seed)
        adwin_table[d] = far
        log(f"  calibrate ADWIN delta={d:g}: null P(any alarm) = {far:.3f}")
        if far <= target:
            adwin_delta = d
        else:
            break
    ph_threshold = None
    for h in PH_THRESHOLD_GRID:
        far = null_far(lambda p: page_hinkley_alarms(p, h, ph_delta), length, n_sim, seed)
        ph_table[h] = far
        log(f"  calibrate PageHinkley threshold={h:g}: null P(any alarm) = {far:.3f}")
        if far <= target:
            ph_threshold = h
            break
    if adwin_delta is None:
        adwin_delta = ADWIN_DELTA_GRID[0]
    if ph_threshold is None:
        ph_threshold = PH_THRESHOLD_GRID[-1]
    return {"stream_length": length, "n_sim": n_sim, "seed": seed, "target_far_per_stream": target,
            "adwin_delta": adwin_delta, "adwin_null_far": adwin_table,
            "ph_threshold": ph_threshold, "ph_null_far": ph_table}


# ------------------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------------------

def summarise(rows):
    """Aggregate per-stream results of one detector on one group of streams."""
    id_rows = [r for r in rows if r["change_at"] is None]
    ch_rows = [r for r in rows if r["change_at"] is not None]
    out = {}
    if id_rows:
        n_in = sum(r["length"] for r in id_rows)
        n_al = sum(r["n_alarms"] for r in id_rows)
        out["id"] = {"streams": len(id_rows), "streams_with_alarm": sum(r["n_alarms"] > 0 for r in id_rows),
                     "alarms": n_al, "inputs": n_in, "alarms_per_1e4": 1e4 * n_al / n_in}
    if ch_rows:
        delays = [r["delay"] for r in ch_rows if r["delay"] is not None]
        out["change"] = {"streams": len(ch_rows),
                         "false_alarm_streams": sum(r["false_alarm"] for r in ch_rows),
                         "detected": len(delays), "missed": len(ch_rows) - len(delays),
                         "median_delay": float(np.median(delays)) if delays else None,
                         "mean_delay": float(np.mean(delays)) if delays else None,
                         "delays": delays}
    return out


def per_stream(alarms, length, change_at):
    """Per-stream record: number of alarms, false alarm before change_at, delay of the first later alarm."""
    rec = {"length": length, "change_at": change_at, "n_alarms": len(alarms)}
    if change_at is not None:
        rec["false_alarm"] = any(t < change_at for t in alarms)
        after = [t for t in alarms if t >= change_at]
        rec["delay"] = (after[0] - change_at) if after else None
    return rec


def make_detectors(alpha, cal, ph_delta, window_n, window_level):
    """Name -> (alarm function, parameter description) for all detectors."""
    q = binom_upper_quantile(window_n, alpha, window_level)
    return {
        "adwin_default": (lambda p: adwin_alarms(p, 0.002),
                          {"input": "-log(p)", "delta": 0.002, "sides": "two-sided"}),
        "adwin_calibrated": (lambda p: adwin_alarms(p, cal["adwin_delta"]),
                             {"input": "-log(p)", "delta": cal["adwin_delta"], "sides": "two-sided"}),
        "page_hinkley": (lambda p: page_hinkley_alarms(p, cal["ph_threshold"], ph_delta),
                         {"input": "-log(p)", "mode": "up", "delta": ph_delta, "threshold": cal["ph_threshold"],
                          "alpha": 1 - 1e-4, "min_instances": 30}),
        "window_binomial": (lambda p: window_alarms(p, alpha, window_n, window_level),
                            {"n": window_n, "alpha": alpha, "level": window_level, "alarm_if_count_gt": q}),
    }


def evaluate(folder, args, log):
    """Run every detector on every stream of folder/manifest.json; return the result dict."""
    with open(os.path.join(folder, "manifest.json")) as fh:
        manifest = json.load(fh)
    alpha = float(manifest.get("alpha", 0.01))
    streams = manifest["streams"]
    data = [np.load(os.path.join(folder, s["file"])).astype(np.float64) for s in streams]
    id_lengths = [len(p) for p, s in zip(data, streams) if s.get("change_at") is None]
    length = args.calib_length or (max(id_lengths) if id_lengths else max(len(p) for p in data))
    log(f"{len(streams)} streams, alpha {alpha}; calibrating on {args.calib_streams} null streams of {length}")
    cal = calibrate(length, args.calib_streams, args.seed, args.target_far, args.ph_delta, log)
    dets = make_detectors(alpha, cal, args.ph_delta, args.window, args.window_level)
    groups = {}
    for s in streams:
        groups.setdefault(f"{s.get('scenario')}/{s.get('ood')}", []).append(s)
    res = {"streams_dir": os.path.abspath(folder), "alpha": alpha, "n_streams": len(streams), "calibration": cal,
           "detectors": {k: v[1] for k, v in dets.items()}, "results": {},
           "delay_definition": "t_first_alarm_at_or_after_change - change_at (0 = alarm on the first post-change "
                               "input); window alarms are at the window's last input"}
    t0 = time.perf_counter()
    for name, (fn, _) in dets.items():
        recs = {}
        for s, p in zip(streams, data):
            recs.setdefault(f"{s.get('scenario')}/{s.get('ood')}", []).append(
                per_stream(fn(p), len(p), s.get("change_at")))
        res["results"][name] = {g: summarise(r) for g, r in recs.items()}
        allrecs = [x for r in recs.values() for x in r]
        res["results"][name]["_all"] = summarise(allrecs)
    res["seconds"] = round(time.perf_counter() - t0, 2)
    res["versions"] = {"python": platform.python_version(), "numpy": np.__version__, "river": river.__version__}
    return res


def print_table(res, file=sys.stdout):
    """Readable table: per detector and group, ID false alarms and change delays."""
    print(f"alpha {res['alpha']}; ADWIN calibrated delta {res['calibration']['adwin_delta']:g}; PageHinkley "
          f"threshold {res['calibration']['ph_threshold']:g} (target null P(any alarm) <= "
          f"{res['calibration']['target_far_per_stream']} per {res['calibration']['stream_length']} inputs)",
          file=file)
    print(f"{'detector':17s} {'group':32s} {'ID str':>6s} {'w/alarm':>7s} {'al/1e4':>7s} | {'chg str':>7s} "
          f"{'FA':>4s} {'miss':>4s} {'med.delay':>9s} {'mean.delay':>10s}", file=file)
    for det, groups in res["results"].items():
        for g, s in groups.items():
            i, c = s.get("id"), s.get("change")
            left = (f"{i['streams']:6d} {i['streams_with_alarm']:7d} {i['alarms_per_1e4']:7.3f}" if i
                    else f"{'':6s} {'':7s} {'':7s}")
            right = ""
            if c:
                med = f"{c['median_delay']:9.1f}" if c["median_delay"] is not None else f"{'-':>9s}"
                mean = f"{c['mean_delay']:10.1f}" if c["mean_delay"] is not None else f"{'-':>10s}"
                right = f"{c['streams']:7d} {c['false_alarm_streams']:4d} {c['missed']:4d} {med} {mean}"
            print(f"{det:17s} {g:32s} {left} | {right}", file=file)


# ------------------------------------------------------------------------------------------------------------
# Self-test
# ------------------------------------------------------------------------------------------------------------

def write_self_test(folder, n_id=50, n_change=20, length=10000, change_at=5000, ramp=500, seed=1):
    """Synthetic manifest: n_id uniform streams, n_change abrupt streams (Beta(0.3, 1) p-values from change_at)
    and n_change gradual streams (each input after change_at is OOD with probability rising linearly from 0 to 1
    over `ramp` inputs)."""
    rng = np.random.default_rng(seed)
    streams = []

    def add(p, ch, kind, run):
        f = f"{kind}_{run:03d}.npy"
        np.save(os.path.join(folder, f), p.astype(np.float64))
        streams.append({"file": f, "change_at": ch, "scenario": "selftest", "ood": kind, "run": run})

    for r in range(n_id):
        add(1.0 - rng.random(length), None, "none", r)
    for r in range(n_change):
        p = 1.0 - rng.random(length)
        p[change_at:] = rng.beta(0.3, 1.0, length - change_at)
        add(p, change_at, "beta0.3_abrupt", r)
    for r in range(n_change):
        p = 1.0 - rng.random(length)
        t = np.arange(length - change_at)
        ood = rng.random(length - change_at) < np.minimum(1.0, (t + 1) / ramp)
        p[change_at:][ood] = rng.beta(0.3, 1.0, ood.sum())
        add(p, change_at, f"beta0.3_ramp{ramp}", r)
    with open(os.path.join(folder, "manifest.json"), "w") as fh:
        json.dump({"alpha": 0.01, "streams": streams}, fh, indent=1)


def check_self_test(res):
    """Plausibility checks of the self-test result; returns a list of (check, passed)."""
    r = res["results"]
    checks = []
    for det in r:
        ab = r[det]["selftest/beta0.3_abrupt"]["change"]
        checks.append((f"{det}: abrupt change detected in every stream", ab["missed"] == 0))
        checks.append((f"{det}: abrupt median delay < 1000", ab["median_delay"] is not None
                       and ab["median_delay"] < 1000))
    for det in ("adwin_calibrated", "page_hinkley"):
        i = r[det]["selftest/none"]["id"]
        checks.append((f"{det}: ID streams with alarm <= 3x target", i["streams_with_alarm"] <= max(
            3, 3 * res["calibration"]["target_far_per_stream"] * i["streams"])))
    w = r["window_binomial"]["selftest/none"]["id"]
    # per window P(K > q) <= 0.001: expected alarms per 1e4 inputs <= 0.1, allow generous slack
    checks.append(("window_binomial: ID alarms per 1e4 <= 0.3", w["alarms_per_1e4"] <= 0.3))
    return checks


def main(argv=None):
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", help="folder with manifest.json and the p-value .npy files")
    ap.add_argument("--self-test", action="store_true", help="generate synthetic streams and run on them")
    ap.add_argument("--out", help="output JSON path")
    ap.add_argument("--target-far", type=float, default=0.01,
                    help="calibration target: null probability of any alarm per stream (default 0.01)")
    ap.add_argument("--calib-streams", type=int, default=400, help="simulated null streams for calibration")
    ap.add_argument("--calib-length", type=int, default=None,
                    help="calibration stream length (default: longest ID stream of the manifest)")
    ap.add_argument("--ph-delta", type=float, default=0.25, help="PageHinkley delta (default 0.25)")
    ap.add_argument("--window", type=int, default=100, help="fixed-window size n (default 100)")
    ap.add_argument("--window-level", type=float, default=1e-3, help="binomial tail level per window")
    ap.add_argument("--seed", type=int, default=0, help="seed of the calibration streams")
    args = ap.parse_args(argv)
    if not args.self_test and not args.streams:
        ap.error("give --streams DIR or --self-test")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.self_test:
        with tempfile.TemporaryDirectory() as tmp:
            write_self_test(tmp)
            res = evaluate(tmp, args, log)
        res["streams_dir"] = "(self-test, temporary)"
        checks = check_self_test(res)
        res["self_test_checks"] = [{"check": c, "passed": bool(ok)} for c, ok in checks]
    else:
        res = evaluate(args.streams, args, log)
    print_table(res)
    if args.self_test:
        for c, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {c}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
        print(f"-> {args.out}")
    if args.self_test and not all(ok for _, ok in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
