#!/usr/bin/env python3
"""Sharded fitting of a LatentWatch model on a Dask cluster.

One task per shard runs `latentwatch fit --statistics-only` on that shard's activations and returns its mergeable
statistics (a .lws file's bytes). The statistics are merged pairwise on the workers (`latentwatch merge
--statistics-only`), and the last task fits and calibrates the model (`latentwatch merge --calibration`). The
model equals a single-pass `latentwatch fit --calibration` on all the shards' rows, up to rounding
(Tests/LatentWatchCLITests/DaskShardedFitTests.swift checks it).

Every worker needs the `latentwatch` executable and read access to the shard files. On one machine that holds
already. On a cluster, use shared storage, or copy the files to each worker first. Shards are .npy arrays, given in
the order of the whole data set. Each shard's first row index is counted from the shards before it, so the
validation split is the same as in one pass.

    python3 Samples/Dask/sharded_fit.py --latentwatch .build/release/latentwatch \
        --shard x0.npy:y0.npy --shard x1.npy:y1.npy --shard x2.npy:y2.npy \
        --calibration cal.npy --calibration-labels cal_labels.npy --layer h1 --output h1.lwm

Without --scheduler it starts a LocalCluster of --workers processes (one thread each). With --scheduler it
connects to an existing cluster, for example `tcp://scheduler:8786`.

Mixtures (--family gmm-full or gmm-diag; shards need no labels) are fitted by EM in rounds. The shards'
statistics merge into round 0 (the PCA projection and the k-means++ start on the merged reservoir sample). Each
round, one task per shard computes its E-step against the round (`latentwatch fit --mixture-round`), and one task
merges the E-steps into the next round (`latentwatch merge --mixture-round`), until merge reports `finished: true`
(converged, or the iteration limit). The last task fits the model from that round and calibrates it. The rounds
repeat the iterations of a single-pass fit, so the model is the same up to rounding.

    python3 Samples/Dask/sharded_fit.py --family gmm-full --fit-option=--components=8 --fit-option=--pca=32 \
        --shard x0.npy --shard x1.npy --shard x2.npy --calibration cal.npy --layer h1 --output h1.lwm

A regression model's layer (--family regression or regression-tied): each shard comes with its targets
(ACTIVATIONS.npy:TARGETS.npy). The client gathers every shard's targets, one number per row, and hands them to every
shard task, which cuts the target bins on them (`--binning-targets`), so all shards bin alike; the last task
calibrates on --calibration with --calibration-targets (the prediction interval) and, optionally,
--calibration-predictions (the host model's own predictions of the calibration rows: the disagreement a monitor
given the host's predictions alerts on).

    python3 Samples/Dask/sharded_fit.py --family regression --shard x0.npy:t0.npy --shard x1.npy:t1.npy \
        --calibration cal.npy --calibration-targets cal_t.npy --calibration-predictions cal_host.npy \
        --layer h2 --output h2.lwm

With --engine python the tasks use the Python package in process (`latentwatch.gather_statistics`,
`Statistics.merge`, `Statistics.fit`; for mixtures `Statistics.start_mixture`, `expectation` and `advance`)
instead of the executable. Statistics, rounds and E-steps travel between workers pickled as their .lws bytes. The
workers and the client then need the package, not the executable.
"""

import argparse
import os
from functools import partial
from operator import itemgetter
import subprocess
import sys
import tempfile

import numpy as np
from dask.distributed import Client, LocalCluster


def run(command):
    """Runs a latentwatch command; a failure raises with its message, which Dask reports to the client."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def shard_statistics(latentwatch, activations, labels, first_index, fit_options, binning=None):
    """The statistics of one shard, as .lws bytes. With `binning` (every shard's targets, for a regression family)
    `labels` are the shard's targets."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "shard.lws")
        if binning is not None:
            path = os.path.join(d, "binning.npy")
            np.save(path, binning)
            given = ["--targets", labels, "--binning-targets", path]
        else:
            given = ["--labels", labels] if labels else []
        run([latentwatch, "fit", "--activations", activations, *given,
             "--statistics-only", "--first-index", str(first_index), "--output", out, *fit_options])
        with open(out, "rb") as f:
            return f.read()


def written(directory, name, data):
    """Writes bytes to a file in a directory; returns its path."""
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def mixture_start(latentwatch, statistics):
    """Round 0 of EM from the merged statistics, as .lws bytes."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "round.lws")
        run([latentwatch, "merge", written(d, "all.lws", statistics), "--output", out])
        with open(out, "rb") as f:
            return f.read()


def expectation_step(latentwatch, round_bytes, activations, first_index):
    """One shard's E-step against a round, as .lws bytes."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "step.lws")
        run([latentwatch, "fit", "--activations", activations, "--first-index", str(first_index),
             "--mixture-round", written(d, "round.lws", round_bytes), "--output", out])
        with open(out, "rb") as f:
            return f.read()


def maximization_step(latentwatch, round_bytes, *steps):
    """The next round from every shard's E-step: (.lws bytes, finished, merge's report line)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "next.lws")
        paths = [written(d, f"step{i}.lws", s) for i, s in enumerate(steps)]
        report = run([latentwatch, "merge", *paths, "--mixture-round", written(d, "round.lws", round_bytes),
                      "--output", out]).strip().splitlines()
        with open(out, "rb") as f:
            return f.read(), report[-1] == "finished: true", report[-2]


def mixture_model(latentwatch, round_bytes, calibration):
    """The model of a finished round, calibrated, as .lwm bytes, and merge's report."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "model.lwm")
        report = run([latentwatch, "merge", "--mixture-round", written(d, "round.lws", round_bytes),
                      "--calibration", calibration, "--output", out])
        with open(out, "rb") as f:
            return f.read(), report


def em_rounds(client, shards, gather, merge, start, expect, advance, fit, max_rounds=1000):
    """Fits a mixture from shards [(activations.npy, None)] by EM rounds on the cluster, with one engine's task
    functions: gather(activations, first_index=...), merge(a, b), start(statistics), expect(round, activations,
    first_index), advance(round, *steps) -> (round, finished, report line), fit(round) -> (model bytes, report).
    Returns (model bytes, merged statistics, report)."""
    firsts = []
    first = 0
    for activations, _ in shards:
        firsts.append(first)
        first += np.load(activations, mmap_mode="r").shape[0]
    futures = [client.submit(gather, a, first_index=f, pure=False) for (a, _), f in zip(shards, firsts)]
    while len(futures) > 1:
        pairs = [futures[i:i + 2] for i in range(0, len(futures), 2)]
        futures = [client.submit(merge, *p, pure=False) if len(p) == 2 else p[0] for p in pairs]
    statistics = futures[0]
    current = client.submit(start, statistics, pure=False)
    lines = []
    for _ in range(max_rounds):
        steps = [client.submit(expect, current, a, f, pure=False) for (a, _), f in zip(shards, firsts)]
        # The round stays on the workers; only whether it is finished, and its report line, come back.
        advanced = client.submit(advance, current, *steps, pure=False)
        current = client.submit(itemgetter(0), advanced, pure=False)
        finished, line = client.submit(itemgetter(1, 2), advanced, pure=False).result()
        lines.append(line)
        if finished:
            break
    else:
        raise RuntimeError(f"EM did not finish in {max_rounds} rounds")
    (model_bytes, report), merged = client.gather([client.submit(fit, current, pure=False), statistics])
    return model_bytes, merged, "\n".join(lines) + "\n" + report


def sharded_mixture_fit(client, latentwatch, shards, calibration, fit_options):
    """A mixture by EM rounds with the executable on the workers; returns (model bytes, merged statistics bytes,
    report)."""
    return em_rounds(
        client, shards,
        gather=partial(shard_statistics, latentwatch, labels=None, fit_options=fit_options),
        merge=partial(merge_statistics, latentwatch),
        start=partial(mixture_start, latentwatch),
        expect=partial(expectation_step, latentwatch),
        advance=partial(maximization_step, latentwatch),
        fit=partial(mixture_model, latentwatch, calibration=calibration))


def merge_statistics(latentwatch, *parts):
    """Several shards' statistics merged into one, as .lws bytes."""
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, p in enumerate(parts):
            paths.append(os.path.join(d, f"part{i}.lws"))
            with open(paths[-1], "wb") as f:
                f.write(p)
        out = os.path.join(d, "merged.lws")
        run([latentwatch, "merge", *paths, "--statistics-only", "--output", out])
        with open(out, "rb") as f:
            return f.read()


def fit_model(latentwatch, statistics, calibration, calibration_labels, regression=None):
    """The model fitted from merged statistics and calibrated, as .lwm bytes, and merge's report. `regression`:
    (calibration targets, calibration host predictions or None) for a regression family."""
    with tempfile.TemporaryDirectory() as d:
        stats = os.path.join(d, "all.lws")
        with open(stats, "wb") as f:
            f.write(statistics)
        out = os.path.join(d, "model.lwm")
        command = [latentwatch, "merge", stats, "--calibration", calibration, "--output", out]
        if calibration_labels:
            command += ["--calibration-labels", calibration_labels]
        if regression is not None:
            targets, predictions = regression
            command += ["--calibration-targets", targets]
            if predictions:
                command += ["--calibration-predictions", predictions]
        report = run(command)
        with open(out, "rb") as f:
            return f.read(), report


def shard_statistics_in_process(activations, labels, first_index, options, binning=None):
    """The statistics of one shard, gathered by the Python package (pickled as .lws bytes). With `binning` (every
    shard's targets) `labels` are the shard's targets."""
    import latentwatch as lw
    if binning is not None:
        return lw.gather_statistics(np.load(activations), targets=np.load(labels), binning=binning,
                                    first_index=first_index, **options)
    return lw.gather_statistics(np.load(activations), np.load(labels) if labels else None, first_index=first_index,
                                **options)


def merge_in_process(a, b):
    """Two shards' statistics merged by the Python package, into a new object (a task's inputs stay as they are)."""
    import latentwatch as lw
    return lw.merge_statistics([a, b])


def fit_in_process(statistics, calibration, calibration_labels, regression=None):
    """The model fitted and calibrated by the Python package, as .lwm bytes, and a report. `regression`:
    (calibration targets, calibration host predictions or None) for a regression family."""
    if regression is not None:
        targets, predictions = regression
        model = statistics.fit(np.load(calibration), calibration_targets=np.load(targets))
        if predictions:
            model = model.calibrate_disagreement(np.load(calibration), np.load(predictions))
    else:
        model = statistics.fit(np.load(calibration), np.load(calibration_labels) if calibration_labels else None)
    first, end = statistics.rows
    report = (f"fitted {model.family} on {statistics.samples} rows [{first}, {end}) in process, calibrated on "
              f"{model.calibration_count}\nfit notes: {model.fit_notes}\n")
    return model.to_bytes(), report


def start_in_process(statistics):
    """Round 0 of EM from merged statistics, by the Python package."""
    return statistics.start_mixture()


def expectation_in_process(round_, activations, first_index):
    """One shard's E-step against a round, by the Python package."""
    return round_.expectation(np.load(activations), first_index=first_index)


def advance_in_process(round_, *steps):
    """The next round from every shard's E-step, by the Python package: (round, finished, a report line)."""
    following = round_.advance(steps)
    line = (f"round {following.round}: mean log-likelihood {following.log_likelihood}, "
            f"converged: {str(following.converged).lower()}")
    return following, following.finished, line


def mixture_in_process(client, shards, calibration, options):
    """As sharded_mixture_fit, with the Python package on the workers."""
    model_bytes, merged, report = em_rounds(
        client, shards,
        gather=partial(shard_statistics_in_process, labels=None, options=options),
        merge=merge_in_process,
        start=start_in_process,
        expect=expectation_in_process,
        advance=advance_in_process,
        fit=partial(fit_in_process, calibration=calibration, calibration_labels=None))
    return model_bytes, merged.to_bytes(), report


def sharded_fit_in_process(client, shards, calibration, calibration_labels, options, regression=None):
    """As sharded_fit, with the Python package on the workers."""
    futures = []
    first = 0
    binning = all_targets(client, shards) if regression is not None else None
    for activations, labels in shards:
        futures.append(client.submit(shard_statistics_in_process, activations, labels, first, options, binning,
                                     pure=False))
        first += np.load(activations, mmap_mode="r").shape[0]
    while len(futures) > 1:
        pairs = [futures[i:i + 2] for i in range(0, len(futures), 2)]
        futures = [client.submit(merge_in_process, *p, pure=False) if len(p) == 2 else p[0] for p in pairs]
    merged = futures[0]
    model = client.submit(fit_in_process, merged, calibration, calibration_labels, regression, pure=False)
    (model_bytes, report), statistics = client.gather([model, merged])
    return model_bytes, statistics.to_bytes(), report


def all_targets(client, shards):
    """Every shard's targets in order (one number per row: cheap to hand to every shard task), scattered once to
    the workers."""
    return client.scatter(np.concatenate([np.load(t).astype(np.float64).reshape(-1) for _, t in shards]),
                          broadcast=True)


def sharded_fit(client, latentwatch, shards, calibration, calibration_labels, fit_options, regression=None):
    """Fits one model from shards [(activations.npy, labels.npy)] (for a regression family, `regression` given:
    [(activations.npy, targets.npy)]) on the cluster; returns (model bytes, merged statistics bytes, report)."""
    futures = []
    first = 0
    binning = all_targets(client, shards) if regression is not None else None
    for activations, labels in shards:
        futures.append(client.submit(shard_statistics, latentwatch, activations, labels, first, fit_options,
                                     binning, pure=False))
        first += np.load(activations, mmap_mode="r").shape[0]
    # A tree of pairwise merges: log2(shards) rounds, each on the workers.
    while len(futures) > 1:
        pairs = [futures[i:i + 2] for i in range(0, len(futures), 2)]
        futures = [client.submit(merge_statistics, latentwatch, *p, pure=False) if len(p) == 2 else p[0]
                   for p in pairs]
    merged = futures[0]
    model = client.submit(fit_model, latentwatch, merged, calibration, calibration_labels, regression, pure=False)
    (model_bytes, report), statistics = client.gather([model, merged])
    return model_bytes, statistics, report


def python_options(parser, fit_options):
    """`gather_statistics` keywords for the --fit-option values the Python engine knows."""
    known = {"--components": ("mixture_components", int), "--seed": ("mixture_seed", int),
             "--pca": ("pca_components", int)}
    options = {}
    for option in fit_options:
        name, sep, value = option.partition("=")
        if name not in known or not sep:
            parser.error(f"--fit-option {option}: the python engine takes {', '.join(k + '=N' for k in known)}")
        key, kind = known[name]
        options[key] = kind(value)
    return options


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latentwatch", default="latentwatch", help="the latentwatch executable")
    parser.add_argument("--shard", action="append", required=True, metavar="ACTIVATIONS.npy[:LABELS.npy]",
                        help="one shard (repeat, in the order of the whole data set); labels for gda and tied, "
                             "targets for regression and regression-tied")
    parser.add_argument("--calibration", required=True, help="held-out activations to calibrate on")
    parser.add_argument("--calibration-labels", help="their labels (calibrates the class posterior)")
    parser.add_argument("--calibration-targets", help="their targets (regression families: required)")
    parser.add_argument("--calibration-predictions",
                        help="the host model's own predictions of them (regression families: calibrates the "
                             "disagreement)")
    parser.add_argument("--family", default="gda",
                        choices=["gda", "tied", "gmm-full", "gmm-diag", "regression", "regression-tied"])
    parser.add_argument("--layer", help="layer name stored in the model")
    parser.add_argument("--fit-option", action="append", default=[], metavar="OPTION",
                        help="another `latentwatch fit` option for every shard, for example --fit-option=--pca=64")
    parser.add_argument("--output", required=True, help="where to write the model file")
    parser.add_argument("--statistics-output", help="also write the merged statistics (.lws) here")
    parser.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--engine", choices=["cli", "python"], default="cli",
                        help="cli: the latentwatch executable on the workers; python: the Python package in process")
    args = parser.parse_args(argv)
    mixture = args.family.startswith("gmm")
    regression = None
    if args.family.startswith("regression"):
        if not args.calibration_targets or args.calibration_labels:
            parser.error(f"--family {args.family} needs --calibration-targets (and takes no --calibration-labels)")
        regression = (os.path.abspath(args.calibration_targets),
                      os.path.abspath(args.calibration_predictions) if args.calibration_predictions else None)
    elif args.calibration_targets or args.calibration_predictions:
        parser.error("--calibration-targets and --calibration-predictions go with --family regression or "
                     "regression-tied")
    shards = []
    for s in args.shard:
        activations, sep, labels = s.partition(":")
        if not sep and not mixture:
            parser.error(f"--shard {s}: expected ACTIVATIONS.npy:LABELS.npy (gda and tied need labels; regression "
                         "families need ACTIVATIONS.npy:TARGETS.npy)")
        shards.append((os.path.abspath(activations), os.path.abspath(labels) if sep and not mixture else None))
    fit_options = ["--family", args.family, *args.fit_option]
    if args.layer:
        fit_options += ["--layer", args.layer]
    latentwatch = os.path.abspath(args.latentwatch) if os.path.sep in args.latentwatch else args.latentwatch
    calibration_labels = os.path.abspath(args.calibration_labels) if args.calibration_labels else None
    if args.scheduler:
        client = Client(args.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        if args.engine == "python":
            options = {"family": args.family, **python_options(parser, args.fit_option)}
            if args.layer:
                options["layer_name"] = args.layer
            if mixture:
                model, statistics, report = mixture_in_process(client, shards, os.path.abspath(args.calibration),
                                                               options)
            else:
                model, statistics, report = sharded_fit_in_process(client, shards, os.path.abspath(args.calibration),
                                                                   calibration_labels, options, regression)
        elif mixture:
            model, statistics, report = sharded_mixture_fit(client, latentwatch, shards,
                                                            os.path.abspath(args.calibration), fit_options)
        else:
            model, statistics, report = sharded_fit(client, latentwatch, shards, os.path.abspath(args.calibration),
                                                    calibration_labels, fit_options, regression)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    with open(args.output, "wb") as f:
        f.write(model)
    if args.statistics_output:
        with open(args.statistics_output, "wb") as f:
            f.write(statistics)
    sys.stdout.write(report)
    where = f"the cluster at {args.scheduler}" if args.scheduler else f"a LocalCluster of {args.workers} workers"
    print(f"sharded fit: {len(shards)} shards on {where} ({args.engine} engine); wrote {args.output}")


if __name__ == "__main__":
    main()
