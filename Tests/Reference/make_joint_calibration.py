#!/usr/bin/env python3
"""Reference values for JointCalibration: the conformal p-value of a fused statistic of several layers' p-values,
calibrated on the inputs every layer was calibrated on. Writes Tests/Fixtures/reference/joint_calibration.json.

    python3 Tests/Reference/make_joint_calibration.py      (numpy only)

Per layer l, calibration surprises s_il (i = 1..m) and the layer's conformal p-value of a score s,
p_l(s) = (1 + #{i : s_il >= s}) / (m + 1). Calibration input i's p-value on layer l leaves it out:
(1 + #{j != i : s_jl >= s_il}) / (m + 1). The statistic is Cauchy's, mean_l tan((1/2 - p_l) pi), or Fisher's,
-sum_l log p_l; its calibration values T_i are stored as float32, and a new input's fused p-value is
(1 + #{i : T_i >= T}) / (m + 1), comparing float32(T). Scores are float32 values (so both sides compare the same
numbers); the layers are correlated, one holds ties, and some test inputs lie beyond every calibration score.
"""
import json
from pathlib import Path

import numpy as np


def layer_p(cal: np.ndarray, s: np.ndarray) -> np.ndarray:
    return (1 + (cal[None, :] >= s[:, None]).sum(axis=1)) / (len(cal) + 1)


def loo_p(cal: np.ndarray) -> np.ndarray:
    return (1 + (cal[None, :] >= cal[:, None]).sum(axis=1) - 1) / (len(cal) + 1)


def statistic(name: str, p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-300, 1 - 1e-16)
    if name == "cauchy":
        return np.tan((0.5 - q) * np.pi).mean(axis=1)
    return -np.log(np.clip(p, 1e-300, 1)).sum(axis=1)


def main() -> None:
    rng = np.random.default_rng(17)
    m, n, layers = 300, 400, 3
    def draw(k: int, shift: float) -> np.ndarray:
        z = rng.standard_normal((k, 1))
        x = np.hstack([z + 0.6 * rng.standard_normal((k, 1)) for _ in range(layers)]) + shift
        x[:, 2] = np.round(x[:, 2] * 4) / 4  # ties on the last layer
        return (x * 10 + 50).astype(np.float32)
    cal = draw(m, 0.0)
    test = np.vstack([draw(n - 40, 0.0), draw(40, 3.0)])
    out = {"calibration": cal.astype(float).T.tolist(), "test": test.astype(float).T.tolist(), "fused": {}}
    cal64 = cal.astype(np.float64)
    test64 = test.astype(np.float64)
    p_cal = np.stack([loo_p(cal64[:, l]) for l in range(layers)], axis=1)
    p_test = np.stack([layer_p(cal64[:, l], test64[:, l]) for l in range(layers)], axis=1)
    for name in ("cauchy", "fisher"):
        t_cal = statistic(name, p_cal).astype(np.float32)
        t_test = statistic(name, p_test).astype(np.float32)
        fused = (1 + (t_cal[None, :] >= t_test[:, None]).sum(axis=1)) / (m + 1)
        out["fused"][name] = fused.tolist()
    out["layer_p_test"] = p_test.T.tolist()
    path = Path(__file__).resolve().parents[1] / "Fixtures" / "reference" / "joint_calibration.json"
    path.write_text(json.dumps(out) + "\n")
    f = np.array(out["fused"]["cauchy"])
    print(f"wrote {path}: m = {m}, {n} test inputs; cauchy fused p <= 0.05 on {(f[: n - 40] <= 0.05).mean():.3f} "
          f"of in-distribution and {(f[n - 40:] <= 0.05).mean():.3f} of shifted test inputs")


if __name__ == "__main__":
    main()
