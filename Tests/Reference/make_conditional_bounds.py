#!/usr/bin/env python3
"""Reference values for CalibrationCorrection (the conditional method): at each grid rank j (1..16, then each a
quarter above the last, rounded up, up to min(m, 512)), the 1 - beta_j quantile of Beta(j, m + 1 - j) from
scipy.stats.beta.ppf, made non-decreasing, where the grid shares 0.9 beta: half for rank 1, half evenly over the
other G - 1 ranks; and the DKW slack at 0.1 beta, sqrt(log(2 / (0.1 beta)) / (2 m)).
Writes Tests/Fixtures/reference/conditional_bounds.json.

    python3 Tests/Reference/make_conditional_bounds.py      (needs scipy)
"""
import json
import math
from pathlib import Path

from scipy.stats import beta as beta_law

CASES = [  # (calibration count m, failure probability beta)
    (7000, 0.005),   # image, one layer, anytime delta 0.01
    (1800, 0.0025),  # text, two layers
    (2000, 0.005),
    (500, 0.005),
    (217, 0.0025),   # the demo's two layers
    (200, 0.005),
    (20, 0.1),       # m below the grid's top: the grid ends at m
]


def grid(m: int) -> list:
    top = min(m, 512)
    g, j = [], 1
    while j < top:
        g.append(j)
        j = j + 1 if j < 16 else math.ceil(j * 1.25)
    g.append(top)
    return g


def main() -> None:
    out = []
    for m, b in CASES:
        ranks = grid(m)
        grid_beta = 0.9 * b
        bounds, top = [], 0.0
        for i, j in enumerate(ranks):
            share = grid_beta if len(ranks) == 1 else (grid_beta / 2 if i == 0 else grid_beta / 2 / (len(ranks) - 1))
            top = max(top, float(beta_law.ppf(1 - share, j, m + 1 - j)))
            bounds.append(top)
        out.append({"m": m, "beta": b, "ranks": ranks, "bounds": bounds,
                    "slack": math.sqrt(math.log(2 / (0.1 * b)) / (2 * m))})
    path = Path(__file__).resolve().parents[1] / "Fixtures" / "reference" / "conditional_bounds.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for c in out:
        print(c["m"], c["beta"], len(c["ranks"]), c["bounds"][:3], c["slack"])


if __name__ == "__main__":
    main()
