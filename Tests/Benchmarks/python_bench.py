#!/usr/bin/env python3
"""Micro-benchmark of the latentwatch Python package (in process, through ctypes).

Usage (from the repository root, with the package installed or LATENTWATCH_LIBRARY set):
    python3 Tests/Benchmarks/python_bench.py [--calls N] [--rounds R] [--json]

Prints, for a synthetic GDA model with D = 512 features and K = 10 classes fitted by latentwatch.fit:
  * Monitor.assess            µs per call (one input, default policy, float32, no alert raised)
  * raw lw_monitor_assess     µs per call through ctypes with prebuilt structs (the floor of the FFI path)
  * Monitor.assess minus raw  µs per call, paired: alternating blocks of the two, the median difference
  * Model.score (one input)   µs per call
  * Monitor.assess_batch      µs per input, batches of 64
  * Monitor.submit            µs per call, host side (background mode)
  * torch forward hook        µs per input added to the forward pass (copy to float32 numpy + enqueue), for
                              batch 1 and batch 32, when torch is importable
and the CPU model (from /proc/cpuinfo). Each figure is the median of R rounds of N calls after a warm-up; the
spread (min..max over rounds) is printed beside it. BLAS is pinned to one thread, as in peer_bench.py.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Callable, Dict, Optional  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
try:
    import latentwatch  # noqa: E402
except ImportError:
    sys.path.insert(0, os.path.join(ROOT, "Sources", "Python"))
    import latentwatch  # noqa: E402
from latentwatch import _capi  # noqa: E402

D, K = 512, 10


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def synthetic(rng: np.random.Generator, n_per_class: int):
    """Class-structured data: K means on a sphere, Gaussian noise; float32."""
    means = rng.normal(size=(K, D)).astype(np.float32) * 2.0
    labels = np.repeat(np.arange(K), n_per_class)
    x = means[labels] + rng.normal(size=(labels.size, D)).astype(np.float32)
    return x.astype(np.float32), labels, means


class RawAssess:
    """Prebuilt arguments for calling ``lw_monitor_assess`` on one-layer float32 rows of ``queries`` through ctypes:
    per call only ``layers[0]`` changes (to one of ``addresses``), and the result lands in ``out``."""

    def __init__(self, monitor: "latentwatch.Monitor", queries: np.ndarray) -> None:
        d = queries.shape[1]
        self.inputs = _capi.lw_inputs()
        _capi.lib.lw_inputs_init(ctypes.byref(self.inputs))
        self.layers = (ctypes.c_void_p * 1)()
        self.lengths = (ctypes.c_size_t * 1)(d)
        self.inputs.layer_count = 1
        self.inputs.layers = self.layers
        self.inputs.lengths = self.lengths
        self.out = _capi.lw_assessment()
        self.out.struct_size = ctypes.sizeof(self.out)
        self.addresses = [queries.ctypes.data + i * d * 4 for i in range(queries.shape[0])]
        self.handle = monitor._handle
        self.call = _capi.lib.lw_monitor_assess
        self.inputs_ref, self.out_ref = ctypes.byref(self.inputs), ctypes.byref(self.out)


def rounds_of(fn: Callable[[], None], calls: int, rounds: int, per: int = 1) -> Dict[str, float]:
    """µs per unit (calls × per units per round): median, min and max over rounds."""
    fn()  # warm-up round
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6 / (calls * per))
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=7, help="rounds per measure")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--model", help="a model file to use instead of fitting the synthetic one (latentwatch-bench "
                    "passes the model and queries its Swift figures come from)")
    ap.add_argument("--queries", help="a float32 .npy of queries (rows of the model's input size) to use")
    args = ap.parse_args()
    n, r = args.calls, args.rounds
    results: Dict[str, Dict[str, float]] = {}
    info: Dict[str, str] = {
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "library": latentwatch.LIBRARY_PATH,
        "library_version": latentwatch.library_version,
    }

    rng = np.random.default_rng(0)
    if args.model:
        model = latentwatch.load(args.model)
        info["fit_seconds"] = "0 (loaded)"
    else:
        train, labels, means = synthetic(rng, 500)
        t0 = time.perf_counter()
        model = latentwatch.fit(train, labels, layer_name="synthetic", l2_normalize=False)
        info["fit_seconds"] = f"{time.perf_counter() - t0:.2f}"
    if args.queries:
        queries = np.ascontiguousarray(np.load(args.queries), dtype=np.float32)
        n = queries.shape[0]
    else:
        means = synthetic(rng, 1)[2] if args.model else means
        queries = (means[rng.integers(0, K, size=n)] + rng.normal(size=(n, D))).astype(np.float32)

    # Monitor.assess: the public one-input path (builds an Assessment dataclass per call). Default policy, no sink:
    # an alert still allocates inside the library, but no Python callback competes for the GIL.
    monitor = latentwatch.Monitor(model)

    def assess_all() -> None:
        assess = monitor.assess
        for row in queries:
            assess(row)

    results["Monitor.assess"] = rounds_of(assess_all, n, r)

    # Raw lw_monitor_assess: prebuilt lw_inputs / lw_assessment, only the pointer changes per call.
    raw = RawAssess(monitor, queries)
    layers, f, handle, inputs_ref, out_ref, addresses = (
        raw.layers, raw.call, raw.handle, raw.inputs_ref, raw.out_ref, raw.addresses)

    def raw_all() -> None:
        for a in addresses:
            layers[0] = a
            if f(handle, inputs_ref, None, out_ref) != 0:
                raise RuntimeError(_capi.last_error())

    results["raw lw_monitor_assess (ctypes)"] = rounds_of(raw_all, n, r)

    # Paired: blocks of the raw call and of Monitor.assess alternate, so both see the same machine state; the
    # median of the per-pair differences is the wrapper's cost on the host thread (its own Python work, and
    # the caches it finds cold after each library call).
    differences = []
    for _ in range(max(10, 4 * r)):
        t0 = time.perf_counter()
        raw_all()
        t1 = time.perf_counter()
        assess_all()
        t2 = time.perf_counter()
        differences.append(((t2 - t1) - (t1 - t0)) * 1e6 / n)
    results["Monitor.assess minus raw call, paired"] = {
        "median": statistics.median(differences), "min": min(differences), "max": max(differences)}

    def score_all() -> None:
        score = model.score
        for row in queries:
            score(row)

    results["Model.score (one input)"] = rounds_of(score_all, n, r)

    batch = 64
    chunks = [queries[i:i + batch] for i in range(0, n - n % batch, batch)]

    def batch_all() -> None:
        for c in chunks:
            monitor.assess_batch(c)

    results[f"Monitor.assess_batch (per input, batches of {batch})"] = rounds_of(batch_all, len(chunks), r, batch)
    assessed = monitor.stats()["assessed"]
    flagged = sum(int(monitor.assess(row).out_of_distribution) for row in queries)
    monitor.close()

    background = latentwatch.Monitor(model, mode="background", queue_capacity=n + 16)

    t_submit = []
    background.flush(60)
    for _ in range(r):
        t0 = time.perf_counter()
        for row in queries:
            background.submit(row)
        t_submit.append((time.perf_counter() - t0) * 1e6 / n)
        background.flush(60)
    results["Monitor.submit (background, host side)"] = {
        "median": statistics.median(t_submit), "min": min(t_submit), "max": max(t_submit)}
    dropped = background.stats()["dropped"]
    background.close()
    info["queries_flagged_out_of_distribution"] = f"{flagged} of {n}"
    info["inputs_assessed_while_timing"] = str(assessed)
    info["submits_dropped"] = str(dropped)

    torch_note: Optional[str] = None
    try:
        import torch
        from torch import nn

        import latentwatch.torch as lwt
    except ImportError:
        torch_note = "torch not importable: hook cost not measured"
    if torch_note is None:
        info["torch"] = torch.__version__
        torch.set_num_threads(1)
        module = nn.Sequential(nn.Identity())  # the monitored output is the input itself: D = 512 features

        class Discard:
            """A monitor stand-in that takes each queued forward call and drops it: the timed loop then measures
            the forward thread's cost (reduce, copy to float32 numpy, enqueue) with a consumer that keeps the
            queue short and hardly competes for the GIL."""

            layer_names = ["synthetic"]
            mode = "inline"

            def assess_batch(self, *layers, request_ids=None, outputs=None):
                return [None] * layers[0].shape[0]

        for bs in (1, 32):
            x = torch.from_numpy(queries[:bs].copy())
            calls = max(200, n // bs)

            def forward_loop() -> None:
                with torch.no_grad():
                    for _ in range(calls):
                        module(x)

            bare = rounds_of(forward_loop, calls, r, bs)
            att = lwt.attach(module, Discard(), layer="0", reduce="flatten", queue_size=calls * (r + 2))
            hooked = rounds_of(forward_loop, calls, r, bs)
            att.detach(timeout=600)
            if att.dropped or att.errors:
                raise RuntimeError(f"hook benchmark dropped {att.dropped}, errors {att.errors}")
            results[f"torch hook, batch {bs}: µs per input added to forward (copy + enqueue)"] = {
                k: hooked[k] - bare["median"] for k in ("median", "min", "max")}
            results[f"torch forward without hook, batch {bs} (µs per input)"] = bare
            # End to end: a real inline monitor consuming on the worker thread while the forward loop runs.
            live = latentwatch.Monitor(model, shift=None, window=None)
            att = lwt.attach(module, live, layer="0", reduce="flatten", queue_size=1 << 20)
            t0 = time.perf_counter()
            forward_loop()
            forward_time = time.perf_counter() - t0
            att.detach(timeout=600)
            total = time.perf_counter() - t0
            live.close()
            results[f"torch hook, batch {bs}: forward loop with a live monitor (µs per input)"] = {
                "median": forward_time * 1e6 / (calls * bs), "min": float("nan"), "max": float("nan")}
            results[f"torch hook, batch {bs}: until all assessed (µs per input)"] = {
                "median": total * 1e6 / (calls * bs), "min": float("nan"), "max": float("nan")}
    else:
        info["torch"] = torch_note

    if args.json:
        clean = {name: {k: (None if v != v else v) for k, v in m.items()} for name, m in results.items()}
        print(json.dumps({"info": info, "microseconds": clean}, indent=2))
        return
    print(f"CPU: {info['cpu']} (python {info['python']}, numpy {info['numpy']}, library {info['library_version']}, "
          f"torch {info['torch']})")
    print(f"model: GDA D={D} K={K}, fitted in {info['fit_seconds']} s; {n} calls x {r} rounds per measure")
    for name, v in results.items():
        spread = "" if v["min"] != v["min"] else f"   ({v['min']:.2f} .. {v['max']:.2f})"
        print(f"  {name:72s} {v['median']:8.2f} µs{spread}")
    print(f"  queries flagged out of distribution: {info['queries_flagged_out_of_distribution']}; "
          f"background submits dropped: {info['submits_dropped']}")


if __name__ == "__main__":
    main()
