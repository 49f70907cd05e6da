#!/usr/bin/env python3
"""The regression scenario: a small CNN regressing the rotation angle of Fashion-MNIST images, LatentWatch's
output-conditional density on its layers, against a deep ensemble of 5 CNNs (Postels et al. 2020's reference).

Data (offline): Debian's `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist, MIT). In distribution: the
classes 0 T-shirt, 1 Trouser, 2 Pullover, 3 Dress, 5 Sandal, 7 Sneaker, 8 Bag, each image rotated by an angle drawn
uniformly from [-60, 60] degrees (the target); symmetric items (bags, trousers) make some angles ambiguous. Splits:
2,000 per class from the FMNIST train set for training (14,000), 500 per class of the rest for calibration (3,500),
500 per class of the FMNIST test set for testing (3,500). Out of distribution, rotated alike: `heldout` (1,000 test
images of the held-out classes 4 Coat, 6 Shirt, 9 Ankle boot: near), `digits` (scikit-learn's 8x8 digits resized
to 20x20 and centred, as in make_image.py), `inverted` (255 - ID test images) and `noise` (uniform). 1,000 each.

Model: conv3x3(1->16)-BN-ReLU-pool, conv3x3(16->32)-BN-ReLU-pool, conv3x3(32->64)-BN-ReLU, global average pool
(`gap`, 64), fc(64->64)-ReLU (`fc`, 64), fc(64->1) predicting angle / 60; Adam (weight decay 1e-4),
MSE, batch 128, 10 epochs (one-cycle learning rate, max 3e-3), 1 CPU thread. Five such CNNs with seeds 0..4 form the ensemble; seed 0 is the monitored
model.

LatentWatch (the Python package, in process, on the real library): `fit(acts, targets=...)` on the training
activations with the default configuration (family `regression`, 10 bins, L2 normalisation, held-out shrinkage),
`regression-tied`, and both without L2; calibrated on the calibration split with its targets. Reported:
  * surprise AUROC per OOD set against the ensemble's variance of predictions;
  * Spearman correlation with the CNN's absolute error on ID test inputs: of the predictive spread, and of the
    ensemble's standard deviation;
  * coverage of the 90 % prediction interval on ID test targets;
  * the surprise of two models of one layer, with and without L2, fused by the Cauchy statistic (AUROC only);
  * Spearman correlation with the CNN's error of two scores of the host's own prediction: its distance from the
    bins' prediction, and that distance over the spread;
  * cost per input: one forward pass plus scoring, against five forward passes.

    python3 Tests/Evaluation/make_regression.py [OUT_DIR]      (default /work/evaldata/regression)

Needs torch, numpy, scipy, scikit-learn and the latentwatch package (LATENTWATCH_LIBRARY or an installed one).
Prints two Markdown tables and writes OUT_DIR/results.json and the arrays (`save_arrays`).
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_image import FM, HELDOUT, ID_CLASSES, MEAN, STD, idx_images, idx_labels  # noqa: E402

torch.set_num_threads(1)
EPOCHS = 10
MEMBERS = 5
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rotate(images_u8: np.ndarray, degrees: np.ndarray) -> torch.Tensor:
    """Normalised float tensors of the images rotated by `degrees` (bilinear, zero padding in pixel space)."""
    x = torch.tensor(images_u8, dtype=torch.float32).unsqueeze(1) / 255.0
    t = torch.tensor(np.deg2rad(degrees), dtype=torch.float32)
    c, s = torch.cos(t), torch.sin(t)
    theta = torch.stack([torch.stack([c, -s, torch.zeros_like(c)], 1), torch.stack([s, c, torch.zeros_like(c)], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (x - MEAN) / STD


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.c2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.c3 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.fc = nn.Linear(64, 64)
        self.out = nn.Linear(64, 1)

    def forward(self, x, acts=False):
        gap = self.c3(self.c2(self.c1(x))).mean((2, 3))
        f = F.relu(self.fc(gap))
        y = self.out(f).squeeze(1) * 60.0
        return (y, {"gap": gap, "fc": f}) if acts else y


def train(x: torch.Tensor, y: np.ndarray, seed: int) -> CNN:
    torch.manual_seed(seed)
    m = CNN()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = EPOCHS * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    yt = torch.tensor(y / 60.0, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        m.train()
        for idx in torch.randperm(len(x), generator=g).split(128):
            opt.zero_grad()
            loss = F.mse_loss(m(x[idx]) / 60.0, yt[idx])
            loss.backward()
            opt.step()
            sched.step()
    return m.eval()


@torch.no_grad()
def run(m: CNN, x: torch.Tensor):
    outs, acts = [], {"gap": [], "fc": []}
    for b in x.split(1000):
        y, a = m(b, acts=True)
        outs.append(y.numpy())
        for k in acts:
            acts[k].append(a[k].numpy().astype(np.float32))
    return np.concatenate(outs), {k: np.concatenate(v) for k, v in acts.items()}


def main() -> None:
    import latentwatch as lw

    out_dir = sys.argv[1] if len(sys.argv) > 1 else "/work/evaldata/regression"
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    xtr, ytr = idx_images(f"{FM}/train-images-idx3-ubyte.gz"), idx_labels(f"{FM}/train-labels-idx1-ubyte.gz")
    xte, yte = idx_images(f"{FM}/t10k-images-idx3-ubyte.gz"), idx_labels(f"{FM}/t10k-labels-idx1-ubyte.gz")
    train_i, cal_i, test_i = [], [], []
    for c in ID_CLASSES:
        idx = rng.permutation(np.flatnonzero(ytr == c))
        train_i += list(idx[:2000])
        cal_i += list(idx[2000:2500])
        test_i += list(rng.permutation(np.flatnonzero(yte == c))[:500])
    heldout_i = rng.permutation(np.flatnonzero(np.isin(yte, HELDOUT)))[:1000]
    digits = load_digits().images
    small = F.interpolate(torch.tensor(digits[:, None] / 16.0, dtype=torch.float32), size=(20, 20), mode="bilinear",
                          align_corners=False)
    digits28 = np.zeros((len(digits), 28, 28), np.uint8)
    digits28[:, 4:24, 4:24] = np.clip(small[:, 0].numpy() * 255, 0, 255).astype(np.uint8)
    images = {
        "train": xtr[train_i], "calibration": xtr[cal_i], "test": xte[test_i],
        "heldout": xte[heldout_i], "digits": digits28[rng.permutation(len(digits28))[:1000]],
        "inverted": 255 - xte[rng.permutation(test_i)[:1000]],
        "noise": rng.integers(0, 256, size=(1000, 28, 28), dtype=np.uint8),
    }
    angles = {k: rng.uniform(-60, 60, size=len(v)) for k, v in images.items()}
    x = {k: rotate(v, angles[k]) for k, v in images.items()}

    t0 = time.time()
    members = [train(x["train"], angles["train"], seed) for seed in range(MEMBERS)]
    train_seconds = time.time() - t0
    preds = {k: np.stack([run(m, v)[0] for m in members]) for k, v in x.items()}
    _, acts = zip(*[(None, run(members[0], v)[1]) for v in x.values()])
    acts = dict(zip(x.keys(), acts))
    mae = float(np.abs(preds["test"][0] - angles["test"]).mean())
    member_mae = [float(np.abs(p - angles["test"]).mean()) for p in preds["test"]]
    mae_ens = float(np.abs(preds["test"].mean(0) - angles["test"]).mean())

    save_arrays(out_dir, acts, preds, angles)
    results = {"train_seconds": train_seconds, "cnn_test_mae": mae, "ensemble_test_mae": mae_ens,
               "member_test_mae": member_mae}
    ood_sets = ["heldout", "digits", "inverted", "noise"]
    results["rows"] = evaluate(lw, acts, preds, angles, ood_sets, ("fc", "gap"), "5 CNNs")
    one = x["test"][:1]
    m0 = members[0]
    with torch.no_grad():
        results["cost_us"] = cost(lw, lambda: m0(one, acts=True), acts, angles, "fc")
    json.dump(results, open(os.path.join(out_dir, "results.json"), "w"), indent=1)

    print(f"CNN test MAE {mae:.2f} deg (members {', '.join(f'{v:.2f}' for v in member_mae)}), ensemble "
          f"{mae_ens:.2f}; 5 CNNs trained in {train_seconds:.0f} s\n")
    print_results(results, ood_sets, "CNN")


def save_arrays(out_dir, acts, preds, targets) -> None:
    """OUT_DIR/arrays/{split}_{layer}.npy (float32 activations of the monitored model), {split}_targets.npy,
    {split}_predictions.npy (the monitored model's output) and {split}_ensemble_variance.npy (the variance of the five
    members' outputs) for every split: what `make_regression_ci_subset.py` cuts the CI fixtures from, and what other
    preparations or scores can be tried on without training again."""
    d = os.path.join(out_dir, "arrays")
    os.makedirs(d, exist_ok=True)
    for split, layers in acts.items():
        for layer, a in layers.items():
            np.save(os.path.join(d, f"{split}_{layer}.npy"), np.ascontiguousarray(a, dtype=np.float32))
        np.save(os.path.join(d, f"{split}_targets.npy"), np.asarray(targets[split], dtype=np.float64))
        np.save(os.path.join(d, f"{split}_predictions.npy"), np.asarray(preds[split][0], dtype=np.float64))
        np.save(os.path.join(d, f"{split}_ensemble_variance.npy"), np.asarray(preds[split].var(0), dtype=np.float64))


def evaluate(lw, acts, preds, targets, ood_sets, layers, ensemble):
    """The result rows: the ensemble's variance, then LatentWatch's four configurations on each layer (fitted on the
    training activations and targets, calibrated on the calibration split's): surprise AUROC per OOD set against
    the ID test inputs, Spearman correlation of the score with the monitored model's (member 0's) absolute error,
    coverage of the 90 % prediction interval, and the bins' own mean absolute error."""
    err = np.abs(preds["test"][0] - targets["test"])
    rows = []
    ens_var = {k: preds[k].var(0) for k in preds}
    rows.append({"method": f"deep ensemble ({ensemble}), variance", "layer": "-",
                 "auroc": {o: auroc(ens_var["test"], ens_var[o]) for o in ood_sets},
                 "spearman": float(spearmanr(np.sqrt(ens_var["test"]), err)[0]), "coverage90": None})
    configs = [("regression", True), ("regression-tied", True), ("regression", False), ("regression-tied", False)]
    for layer in layers:
        scored = {}
        for family, l2 in configs:
            m = lw.fit(acts["train"][layer], targets=targets["train"], calibration=acts["calibration"][layer],
                       calibration_targets=targets["calibration"], family=family, l2_normalize=l2, layer_name=layer)
            s = {k: m.score(acts[k][layer]) for k in acts}
            scored[(family, l2)] = s
            low, high = m.prediction_interval(s["test"].prediction, s["test"].predictive_spread, 0.9)
            rows.append({
                "method": f"LatentWatch {family}{'' if l2 else ', no L2'}" + (" (default)" if family == "regression" and l2 else ""),
                "layer": layer,
                "auroc": {o: auroc(s["test"].surprise, s[o].surprise) for o in ood_sets},
                "spearman": float(spearmanr(s["test"].predictive_spread, err)[0]),
                "coverage90": float(np.mean((low <= targets["test"]) & (targets["test"] <= high))),
                "bins_mae": float(np.abs(s["test"].prediction - targets["test"]).mean()),
                # Scores of the host's own prediction: its distance from the bins' prediction, raw and in units
                # of the spread (what a monitor given the host's output could compute).
                "spearman_disagreement": float(spearmanr(np.abs(s["test"].prediction - preds["test"][0]), err)[0]),
                "spearman_disagreement_z": float(spearmanr(
                    np.abs(s["test"].prediction - preds["test"][0]) / s["test"].predictive_spread, err)[0]),
            })
        # The same layer monitored twice, with and without L2 normalisation, the two surprise p-values fused by
        # the Cauchy statistic (what a jointly calibrated fusion of two models ranks by: its p-value is a
        # decreasing function of the statistic, so the AUROC is the statistic's).
        for family in ("regression", "regression-tied"):
            def cauchy(k):
                p = np.clip(np.stack([scored[(family, True)][k].surprise_p_value,
                                      scored[(family, False)][k].surprise_p_value]), 1e-300, 1 - 1e-16)
                return np.tan((0.5 - p) * np.pi).mean(0)
            rows.append({"method": f"LatentWatch {family}, L2 and no L2 fused (Cauchy)", "layer": layer,
                         "auroc": {o: auroc(cauchy("test"), cauchy(o)) for o in ood_sets},
                         "spearman": None, "coverage90": None})
    return rows


def auroc(inside, outside) -> float:
    """AUROC of a score separating `outside` (positive) from `inside`."""
    return float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))], np.r_[inside, outside]))


def cost(lw, forward, acts, targets, layer) -> dict:
    """Per input, batch of 1: the monitored model's forward pass (`forward()`, with its activations), scoring one
    input of `layer` with the default model (through Python), and five forward passes."""
    for _ in range(50):
        forward()
    t = time.perf_counter()
    for _ in range(500):
        forward()
    forward_us = (time.perf_counter() - t) / 500 * 1e6
    model = lw.fit(acts["train"][layer], targets=targets["train"], calibration=acts["calibration"][layer],
                   calibration_targets=targets["calibration"])
    row = acts["test"][layer][0]
    for _ in range(200):
        model.score(row)
    t = time.perf_counter()
    for _ in range(2000):
        model.score(row)
    score_us = (time.perf_counter() - t) / 2000 * 1e6
    return {"forward": forward_us, "score_" + layer: score_us, "ensemble": MEMBERS * forward_us}


def print_results(results, ood_sets, model_name) -> None:
    print(f"| method | layer | " + " | ".join(f"AUROC {o}" for o in ood_sets)
          + f" | Spearman(score, {model_name} error) | 90 % coverage |")
    print("|---|---|" + "---|" * (len(ood_sets) + 2))
    for r in results["rows"]:
        cov = "-" if r["coverage90"] is None else f"{r['coverage90']:.3f}"
        rho = "-" if r["spearman"] is None else f"{r['spearman']:.3f}"
        print(f"| {r['method']} | {r['layer']} | " + " | ".join(f"{r['auroc'][o]:.3f}" for o in ood_sets)
              + f" | {rho} | {cov} |")
    print(f"\nSpearman with the {model_name}'s absolute error on the ID test inputs: the spread, |{model_name} "
          f"prediction - bins' prediction|, and that over the spread")
    print("| method | layer | spread | disagreement | disagreement / spread |\n|---|---|---|---|---|")
    for r in results["rows"]:
        if "spearman_disagreement" in r:
            print(f"| {r['method']} | {r['layer']} | {r['spearman']:.3f} | {r['spearman_disagreement']:.3f} | "
                  f"{r['spearman_disagreement_z']:.3f} |")
    c = results["cost_us"]
    layer = next(k for k in c if k.startswith("score_"))
    print(f"\nper input (batch of 1, 1 thread): forward {c['forward']:.0f} us; scoring {layer[6:]} {c[layer]:.1f} us "
          f"(through Python); five forwards {c['ensemble']:.0f} us")

if __name__ == "__main__":
    main()
