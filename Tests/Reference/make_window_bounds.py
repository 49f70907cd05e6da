#!/usr/bin/env python3
"""Reference values for WindowRateDetector.calibratedRate: the 1 - beta quantile of Beta(k, m + 1 - k), with
k = #{j in 1..m+1 : j / (m + 1) <= t}, from scipy.stats.beta.ppf. Writes Tests/Fixtures/reference/window_rate_bounds.json.

    python3 Tests/Reference/make_window_bounds.py      (needs scipy)
"""
import json
from pathlib import Path

from scipy.stats import beta as beta_law

CASES = [  # (threshold t, calibration count m, failure probability beta)
    (0.01, 7000, 0.005),     # image fc, one layer, anytime delta 0.01
    (0.01, 1800, 0.005),     # text, one layer
    (0.005, 1800, 0.0025),   # text, two layers (Bonferroni alpha / 2, beta / 2)
    (0.01, 217, 0.005),      # the demo's calibration set
    (0.05, 100, 0.05),
    (0.3, 10, 0.1),
    (0.01, 99, 0.005),       # k = 1: only the largest calibration score
    (0.001, 1_000_000, 0.005),
    (0.001, 500, 0.005),     # k = 0: p <= t is impossible, rate 0
    (0.5, 3, 0.2),
    (0.01, 200_000_000, 0.005),    # k = 2,000,000: beyond the direct sum, summed from the top
    (0.01, 4_294_967_295, 0.005),  # the largest count a model file can hold
]


def k_of(t: float, m: int) -> int:
    """#{j in 1..m+1 : j / (m + 1) <= t}, in the same float arithmetic as the Swift code."""
    n = float(m + 1)
    k = max(0, min(m + 1, int(t * n)))
    while k < m + 1 and (k + 1) / n <= t:
        k += 1
    while k > 0 and k / n > t:
        k -= 1
    return k


def main() -> None:
    out = []
    for t, m, b in CASES:
        k = k_of(t, m)
        if k == 0:
            bound = 0.0
        elif k == m + 1:
            bound = 1.0
        else:
            bound = float(beta_law.ppf(1 - b, k, m + 1 - k))
        out.append({"threshold": t, "m": m, "beta": b, "k": k, "bound": bound})
    path = Path(__file__).resolve().parents[1] / "Fixtures" / "reference" / "window_rate_bounds.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for c in out:
        print(c)


if __name__ == "__main__":
    main()
