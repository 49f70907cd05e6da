#!/usr/bin/env python3
"""How many calibration inputs the neighbour index's combined p-value needs (Docs/Evaluation.md, finding 9).

For each layer, the calibration split is subsampled to several sizes n (several seeded draws each); the same
layer is fitted by the Python package with a required neighbour index and without one, calibrated on those n
inputs, and both are scored on the test split and the OOD sets. Per n it prints, averaged over draws:

- power at alpha: the share of each OOD set's inputs whose epistemic p-value (what the monitor alerts on) is at
  most alpha, averaged over the sets, for alpha = 0.01 and 0.001;
- the realised alert rate on the (in-distribution) test split at alpha = 0.01;
- mean AUROC ranked by the epistemic p-value itself (ties count half), which carries the calibration's resolution.

Usage (LATENTWATCH_LIBRARY names the built libLatentWatchC.so):
  python3 Tests/Evaluation/neighbour_calibration_size.py DATA/image:conv3_gap DATA/text:emb_l6 \
      [--sizes 200,500,1000,2000] [--draws 5]
"""

import argparse
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Sources", "Python"))
import latentwatch as lw  # noqa: E402


def auroc(negatives, positives):
    """AUROC of `positives` ranked above `negatives` by larger score, ties counted half."""
    neg = np.sort(np.asarray(negatives, dtype=np.float64))
    pos = np.asarray(positives, dtype=np.float64)
    below = np.searchsorted(neg, pos, side="left")
    equal = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * equal).sum() / (len(neg) * len(pos)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("layers", nargs="+", help="DIR:layer, DIR holding <layer>_{train,cal,test,ood_*}.npy")
    ap.add_argument("--sizes", default="200,500,1000,2000")
    ap.add_argument("--draws", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"latentwatch {lw.__version__}; draws per size {args.draws}")
    for spec in args.layers:
        d, layer = spec.rsplit(":", 1)
        train = np.load(f"{d}/{layer}_train.npy")
        labels = np.load(f"{d}/labels_train.npy")
        cal = np.load(f"{d}/{layer}_cal.npy")
        test = np.load(f"{d}/{layer}_test.npy")
        oods = {
            os.path.basename(p)[len(layer) + 5 : -4]: np.load(p)
            for p in sorted(glob.glob(f"{d}/{layer}_ood_*.npy"))
        }
        print(f"\n{spec}: {len(train)} fitting rows, {len(cal)} calibration rows, OOD sets {', '.join(oods)}")
        print("n | index | power@0.01 | power@0.001 | ID rate@0.01 | mean AUROC by p")
        for n in [s for s in sizes if s <= len(cal)] + ([len(cal)] if len(cal) not in sizes else []):
            rows = {"off": [], "index": []}
            for draw in range(args.draws if n < len(cal) else 1):
                pick = np.random.default_rng(draw).choice(len(cal), size=n, replace=False)
                for name, nb in (("off", "off"), ("index", 32768)):
                    m = lw.fit(train, labels, layer_name=layer, calibration=cal[pick], neighbours=nb)
                    p_test = m.score(test).epistemic_p_value
                    p_ood = {k: m.score(v).epistemic_p_value for k, v in oods.items()}
                    rows[name].append(
                        (
                            np.mean([(p <= 0.01).mean() for p in p_ood.values()]),
                            np.mean([(p <= 0.001).mean() for p in p_ood.values()]),
                            (p_test <= 0.01).mean(),
                            np.mean([auroc(-p_test, -p) for p in p_ood.values()]),
                            {k: float((p <= 0.01).mean()) for k, p in p_ood.items()},
                        )
                    )
            for name in ("off", "index"):
                a = np.array([r[:4] for r in rows[name]]).mean(axis=0)
                print(f"{n} | {name} | {a[0]:.4f} | {a[1]:.4f} | {a[2]:.4f} | {a[3]:.4f}")
            if n == len(cal):
                for name in ("off", "index"):
                    sets = rows[name][0][4]
                    print(f"  per set, power@0.01 ({name}): " + ", ".join(f"{k} {v:.3f}" for k, v in sets.items()))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
