#!/usr/bin/env python3
"""Why the Python wrapper costs more around a slow library call: its own work, with the caches cold or warm.

Usage (from the repository root, with the package installed or LATENTWATCH_LIBRARY set):
    python3 Tests/Benchmarks/python_cold_cache.py [--dimension D] [--evict-mb MB] [--pairs P] [--calls N]

Fits a synthetic GDA model (K = 10 classes, D features, no neighbour index) and times, in one process, blocks of
N calls of the raw ``lw_monitor_assess`` (prebuilt ctypes structs) alternating with blocks of N calls of each
other arm; each figure is the median over P pairs of (arm - raw) per call, so both sides of a pair see the same
machine state. The arms:

  * public      ``Monitor.assess`` (the whole wrapper);
  * address     the raw call plus the wrapper's input handling (``Monitor._point_at``: checks and the address);
  * result      the raw call plus building the ``Assessment`` from the result struct (``Monitor._assessment``).

With ``--evict-mb MB`` every call in every arm (raw included) is followed by summing a float32 array of MB
megabytes, which pushes what the interpreter touched out of the core's caches, as a library call that streams
megabytes of factors does (D = 512, K = 10: 5.3 MB). The eviction's own time cancels in the pairing. At D = 8 the
library call touches a few kilobytes, so the difference between ``--evict-mb 0`` and, say, ``--evict-mb 1`` (twice
a Zen 3 core's 512 KB L2; larger blocks take longer to sum and make the pairs noisier) there is the price the same
Python work pays when it finds the caches cold.
"""

import argparse
import statistics
import time
from typing import Callable, Dict

import numpy as np

# python_bench (beside this file) pins BLAS to one thread and finds the package (installed, or Sources/Python).
from python_bench import RawAssess, latentwatch

K = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dimension", type=int, default=8, help="features D (default 8)")
    ap.add_argument("--evict-mb", type=float, default=0.0, help="megabytes summed after every call (default 0)")
    ap.add_argument("--pairs", type=int, default=20, help="pairs of blocks per arm (default 20)")
    ap.add_argument("--calls", type=int, default=500, help="calls per block (default 500)")
    args = ap.parse_args()
    d, n = args.dimension, args.calls

    rng = np.random.default_rng(0)
    means = rng.normal(size=(K, d)).astype(np.float32) * 2
    labels = np.repeat(np.arange(K), max(200, 2 * d))
    train = (means[labels] + rng.normal(size=(labels.size, d))).astype(np.float32)
    model = latentwatch.fit(train, labels, layer_name="synthetic", l2_normalize=False, neighbours="off")
    queries = (means[rng.integers(0, K, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
    monitor = latentwatch.Monitor(model)

    raw_args = RawAssess(monitor, queries)
    layers, call, handle = raw_args.layers, raw_args.call, raw_args.handle
    inputs_ref, out_ref, out, addresses = raw_args.inputs_ref, raw_args.out_ref, raw_args.out, raw_args.addresses
    block = np.ones(int(args.evict_mb * 2**20 / 4), dtype=np.float32)
    evict: Callable[[], object] = block.sum if args.evict_mb > 0 else (lambda: None)
    scratch = monitor._scratch()

    def raw() -> None:
        for a in addresses:
            layers[0] = a
            call(handle, inputs_ref, None, out_ref)
            evict()

    def public() -> None:
        assess = monitor.assess
        for row in queries:
            assess(row)
            evict()

    def address() -> None:
        point_at = monitor._point_at
        for row in queries:
            point_at((row,), scratch)
            call(handle, scratch.inputs_ref, None, scratch.out_ref)
            evict()

    def result() -> None:
        build = monitor._assessment
        for a in addresses:
            layers[0] = a
            call(handle, inputs_ref, None, out_ref)
            build(out, None)
            evict()

    arms: Dict[str, Callable[[], None]] = {"public": public, "address": address, "result": result}
    raw()
    for arm in arms.values():
        arm()
    differences: Dict[str, list] = {name: [] for name in arms}
    raw_times = []
    for _ in range(args.pairs):
        for name, arm in arms.items():
            t0 = time.perf_counter()
            raw()
            t1 = time.perf_counter()
            arm()
            t2 = time.perf_counter()
            differences[name].append(((t2 - t1) - (t1 - t0)) * 1e6 / n)
            raw_times.append((t1 - t0) * 1e6 / n)
    t0 = time.perf_counter()
    for _ in range(n):
        evict()
    evict_us = (time.perf_counter() - t0) * 1e6 / n
    monitor.close()
    print(f"D = {d}, K = {K}, eviction {args.evict_mb:g} MB after every call ({evict_us:.1f} us of it per call); "
          f"raw call with it {statistics.median(raw_times):.1f} us; {args.pairs} pairs of {n} calls per arm")
    for name, v in differences.items():
        q1, q3 = np.percentile(v, [25, 75])
        print(f"  {name:8s} minus raw: {statistics.median(v):+7.2f} us per call (quartiles {q1:+.2f} .. {q3:+.2f})")


if __name__ == "__main__":
    main()
