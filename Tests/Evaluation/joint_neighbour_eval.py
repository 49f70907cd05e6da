#!/usr/bin/env python3
"""Two layers fused by a joint calibration, with and without neighbour indices, through the real library.

For each `DATA:LAYER1,LAYER2` (a folder in the evaluation layout, `<layer>_<split>.npy` and `labels_train.npy`, as
`make_image.py` and `make_text.py` write them) the script fits both layers with the default configuration, once
without and once with a neighbour index (`neighbours=32768`), calibrates each pair jointly
(`latentwatch.calibrate_jointly`: with indices, each layer joins with its surprise and its neighbour distance), and
assesses the test and OOD sets with a `Monitor` of the pair (stream detectors off). It reports, per OOD set, the
AUROC of test against it ranked by the fused p-value (smaller = more unusual; ties counted half) and by each
layer's own p-value, and the share of test inputs with a fused p-value at or below 0.01 and 0.001.

Usage (LATENTWATCH_LIBRARY pointing at a release build of liblatentwatch.so):
  python3 Tests/Evaluation/joint_neighbour_eval.py DATA/image:fc,conv3_gap DATA/text:emb_l3,emb_l6
"""
import argparse
import json
import os
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Sources", "Python"))
import latentwatch as lw  # noqa: E402


def auroc(test_p, ood_p):
    y = np.r_[np.zeros(len(test_p)), np.ones(len(ood_p))]
    return float(roc_auc_score(y, -np.r_[test_p, ood_p]))


def run(data, layers, neighbours):
    load = lambda layer, split: np.ascontiguousarray(np.load(os.path.join(data, f"{layer}_{split}.npy")),  # noqa: E731
                                                     dtype=np.float32)
    labels = np.load(os.path.join(data, "labels_train.npy"))
    oods = sorted(f[len("labels_ood_"):-4] for f in os.listdir(data) if f.startswith("labels_ood_"))
    models = [lw.fit(load(layer, "train"), labels, layer_name=layer, calibration=load(layer, "cal"),
                     neighbours=neighbours) for layer in layers]
    joint = lw.calibrate_jointly(models, [load(layer, "cal") for layer in layers])
    monitor = lw.Monitor(joint, shift=None, window=None, aleatoric_alpha=None, disagreement_alpha=None)
    out = {}
    for split in ["test"] + ["ood_" + o for o in oods]:
        b = monitor.assess_batch(*[load(layer, split) for layer in layers])
        out[split] = (b.fused_p_value.copy(), b.layer_p_value.copy())
    monitor.close()
    test_fused, test_layers = out["test"]
    rows = {"fused": {}, **{layer: {} for layer in layers}}
    for o in oods:
        fused, per_layer = out["ood_" + o]
        rows["fused"][o] = auroc(test_fused, fused)
        for k, layer in enumerate(layers):
            rows[layer][o] = auroc(test_layers[:, k], per_layer[:, k])
    for r in rows.values():
        r["mean"] = float(np.mean([r[o] for o in oods]))
    rate = {str(a): float(np.mean(test_fused <= a)) for a in (0.01, 0.001)}
    return oods, rows, rate, joint[0].joint_count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs", nargs="+", help="DATA:LAYER1,LAYER2")
    ap.add_argument("--out")
    a = ap.parse_args()
    result = {}
    for spec in a.pairs:
        data, layers = spec.rsplit(":", 1)
        layers = layers.split(",")
        for label, neighbours in [("without", None), ("with", 32768)]:
            oods, rows, rate, m = run(data, layers, neighbours)
            result[f"{spec} {label}"] = {"rows": rows, "rate": rate, "m": m}
            print(f"== {spec}, {label} neighbour indices (joint calibration on {m} inputs); "
                  f"test alert rate {rate['0.01']:.4f} at 0.01, {rate['0.001']:.4f} at 0.001")
            print(f"{'':14s} mean    " + "  ".join(f"{o[:8]:>8s}" for o in oods))
            for name, r in rows.items():
                print(f"{name:14s} {r['mean']:.4f}  " + "  ".join(f"{r[o]:8.3f}" for o in oods))
            sys.stdout.flush()
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
