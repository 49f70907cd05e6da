#!/usr/bin/env python3
"""A second regression scenario, on tabular data: an MLP predicting the log price of diamonds from their carat,
cut, colour, clarity and dimensions, LatentWatch's output-conditional density on its hidden layers, against a deep
ensemble of 5 MLPs (Postels et al. 2020's reference). The evaluation code is make_regression.py's.

Data (offline): the `diamonds` table ggplot2 ships, as plotnine bundles it (plotnine/data/diamonds.csv, 53,940
diamonds; ggplot2's data, MIT licence): read from an installed plotnine, or from its wheel
(`pip download --no-deps plotnine==0.15.9 -d DIR`; pass the .whl path as the second argument). Features: carat,
depth, table, x, y, z, and cut, colour and clarity as their ordinal codes, each standardised on the training split;
target ln(price).

In distribution: diamonds of cut Good, Very Good, Premium or Ideal and at most 2 carats (50,558), split at random
into training (30,334), calibration (10,112) and test (10,112). Out of distribution, regions of the input space
absent from training: `large` (carat over 2, cut not Fair: all 1,772), `fair` (cut Fair, at most 2 carats: all
1,493; an unseen category), `units` (ID test diamonds with x, y, z recorded in centimetres instead of millimetres, a
pipeline bug: far) and `shuffled` (ID test rows with each feature column permuted independently: marginals kept,
joint destroyed: far). At most 2,000 each.

Model: MLP 9 -> 128 (`h1`) -> 64 (`h2`) -> 1, ReLU, Adam (lr 2e-3, weight decay 1e-5), MSE on the standardised
target, batch 256, 15 epochs, 1 CPU thread. Seeds 0..4 form the ensemble; seed 0 is the monitored model. LatentWatch
as in make_regression.py: the four configurations per layer, calibrated on the calibration split with its targets,
and the two fused rows.

    python3 Tests/Evaluation/make_tabular_regression.py [OUT_DIR] [PLOTNINE_WHEEL]
        (default OUT_DIR /work/evaldata/tabular-regression)

Needs torch, numpy, scipy, scikit-learn and the latentwatch package. Prints two Markdown tables (AUROC, Spearman and
coverage; Spearman of the host-prediction scores) and writes OUT_DIR/results.json and the arrays.
"""
import csv
import importlib.util
import io
import json
import os
import sys
import time
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_regression import MEMBERS, cost, evaluate, print_results, save_arrays  # noqa: E402

torch.set_num_threads(1)
EPOCHS = 15
CUTS = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
COLORS = ["J", "I", "H", "G", "F", "E", "D"]
CLARITIES = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]


def diamonds_csv(wheel: str | None) -> str:
    """The text of plotnine's diamonds.csv, from its wheel or the installed package."""
    if wheel:
        with zipfile.ZipFile(wheel) as z:
            return z.read("plotnine/data/diamonds.csv").decode("utf-8")
    spec = importlib.util.find_spec("plotnine")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("plotnine is not installed: pip install plotnine, or pass its wheel's path (see the docstring)")
    with open(os.path.join(spec.submodule_search_locations[0], "data", "diamonds.csv"), encoding="utf-8") as f:
        return f.read()


def load(text: str):
    """Features (n, 9: carat, depth, table, x, y, z, cut, colour, clarity codes), ln(price), and the cuts."""
    rows = list(csv.DictReader(io.StringIO(text)))
    x = np.array([[float(r["carat"]), float(r["depth"]), float(r["table"]), float(r["x"]), float(r["y"]),
                   float(r["z"]), CUTS.index(r["cut"]), COLORS.index(r["color"]), CLARITIES.index(r["clarity"])]
                  for r in rows], dtype=np.float64)
    return x, np.log(np.array([float(r["price"]) for r in rows])), x[:, 6].astype(int)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(9, 128)
        self.l2 = nn.Linear(128, 64)
        self.out = nn.Linear(64, 1)

    def forward(self, x, acts=False):
        h1 = F.relu(self.l1(x))
        h2 = F.relu(self.l2(h1))
        y = self.out(h2).squeeze(1)
        return (y, {"h1": h1, "h2": h2}) if acts else y


def train(x: torch.Tensor, y: torch.Tensor, seed: int) -> MLP:
    torch.manual_seed(seed)
    m = MLP()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3, weight_decay=1e-5)
    g = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS):
        m.train()
        for idx in torch.randperm(len(x), generator=g).split(256):
            opt.zero_grad()
            F.mse_loss(m(x[idx]), y[idx]).backward()
            opt.step()
    return m.eval()


def main() -> None:
    import latentwatch as lw

    out_dir = sys.argv[1] if len(sys.argv) > 1 else "/work/evaldata/tabular-regression"
    os.makedirs(out_dir, exist_ok=True)
    x, y, cut = load(diamonds_csv(sys.argv[2] if len(sys.argv) > 2 else None))
    rng = np.random.default_rng(0)
    ident = np.flatnonzero((cut > 0) & (x[:, 0] <= 2.0))
    order = rng.permutation(ident)
    n = len(order)
    split = {"train": order[: int(0.6 * n)], "calibration": order[int(0.6 * n): int(0.8 * n)],
             "test": order[int(0.8 * n):]}
    mean, std = x[split["train"]].mean(0), x[split["train"]].std(0)
    y_mean, y_std = y[split["train"]].mean(), y[split["train"]].std()
    feats = {k: x[v] for k, v in split.items()}
    targets = {k: y[v] for k, v in split.items()}
    large = rng.permutation(np.flatnonzero((cut > 0) & (x[:, 0] > 2.0)))[:2000]
    fair = rng.permutation(np.flatnonzero((cut == 0) & (x[:, 0] <= 2.0)))[:2000]
    feats["large"], targets["large"] = x[large], y[large]
    feats["fair"], targets["fair"] = x[fair], y[fair]
    base = rng.permutation(split["test"])[:2000]
    units = x[base].copy()
    units[:, 3:6] /= 10.0
    feats["units"], targets["units"] = units, y[base]
    shuffled = x[base].copy()
    for j in range(shuffled.shape[1]):
        shuffled[:, j] = shuffled[rng.permutation(len(shuffled)), j]
    feats["shuffled"], targets["shuffled"] = shuffled, y[base]
    xt = {k: torch.tensor((v - mean) / std, dtype=torch.float32) for k, v in feats.items()}
    yt = torch.tensor((targets["train"] - y_mean) / y_std, dtype=torch.float32)

    t0 = time.time()
    members = [train(xt["train"], yt, seed) for seed in range(MEMBERS)]
    train_seconds = time.time() - t0
    with torch.no_grad():
        preds = {k: np.stack([m(v).numpy() * y_std + y_mean for m in members]) for k, v in xt.items()}
        acts = {k: {name: a.numpy().astype(np.float32) for name, a in members[0](v, acts=True)[1].items()}
                for k, v in xt.items()}
    mae = float(np.abs(preds["test"][0] - targets["test"]).mean())
    member_mae = [float(np.abs(p - targets["test"]).mean()) for p in preds["test"]]
    mae_ens = float(np.abs(preds["test"].mean(0) - targets["test"]).mean())
    save_arrays(out_dir, acts, preds, targets)
    results = {"train_seconds": train_seconds, "mlp_test_mae_log_price": mae, "ensemble_test_mae_log_price": mae_ens,
               "member_test_mae_log_price": member_mae,
               "sizes": {k: int(len(v)) for k, v in feats.items()}}
    ood_sets = ["large", "fair", "units", "shuffled"]
    results["ood_mae_log_price"] = {o: float(np.abs(preds[o][0] - targets[o]).mean()) for o in ood_sets}
    results["rows"] = evaluate(lw, acts, preds, targets, ood_sets, ("h2", "h1"), "5 MLPs")
    one = xt["test"][:1]
    m0 = members[0]
    with torch.no_grad():
        results["cost_us"] = cost(lw, lambda: m0(one, acts=True), acts, targets, "h2")
    json.dump(results, open(os.path.join(out_dir, "results.json"), "w"), indent=1)

    print(f"sizes {results['sizes']}")
    print(f"MLP test MAE {mae:.4f} ln(price) (members {', '.join(f'{v:.4f}' for v in member_mae)}), ensemble "
          f"{mae_ens:.4f}; on the OOD sets "
          + ", ".join(f"{o} {v:.3f}" for o, v in results["ood_mae_log_price"].items())
          + f"; 5 MLPs trained in {train_seconds:.0f} s\n")
    print_results(results, ood_sets, "MLP")


if __name__ == "__main__":
    main()
