"""Shared setup of the latentwatch Python package tests (Tests/PythonTests).

Run from the repository root:  python3 -m unittest discover -s Tests/PythonTests -v

Which package is tested: the source tree (Sources/Python) when $LATENTWATCH_LIBRARY is set or the source tree has
a bundled library (latentwatch/_lib, put there by `pip install ./Sources/Python`); else an installed latentwatch;
else the source tree with a library the Swift build left in .build/{release,debug}. Failing all of these, the
import fails with the package's ImportError, which says what to do.

The command-line tool (for `fit`, `score` and `replay`) is $LATENTWATCH_BIN, else .build/debug/latentwatch,
else .build/release/latentwatch; the tests that need it skip without it (and fail under CI=true).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(ROOT, "Sources", "Python")
DATA = os.path.join(ROOT, "Samples", "Data", "digits-mlp")
HEADER_DIR = os.path.join(ROOT, "Sources", "CLatentWatch", "include")


def _choose_package() -> None:
    bundled = os.path.join(SOURCE, "latentwatch", "_lib", "liblatentwatch.so")
    if os.environ.get("LATENTWATCH_LIBRARY") or os.path.isfile(bundled):
        sys.path.insert(0, SOURCE)
        return
    spec = importlib.util.find_spec("latentwatch")
    if spec is not None and spec.origin and not os.path.abspath(spec.origin).startswith(SOURCE + os.sep):
        return  # an installed package
    for kind in ("release", "debug"):
        built = os.path.join(ROOT, ".build", kind, "libLatentWatchC.so")
        if os.path.isfile(built):
            os.environ["LATENTWATCH_LIBRARY"] = built
            break
    sys.path.insert(0, SOURCE)


_choose_package()

import numpy as np  # noqa: E402

import latentwatch  # noqa: E402


def find_binary() -> Optional[str]:
    """The latentwatch command-line tool, or None."""
    env = os.environ.get("LATENTWATCH_BIN")
    if env:
        return env
    for kind in ("debug", "release"):
        path = os.path.join(ROOT, ".build", kind, "latentwatch")
        if os.path.isfile(path):
            return path
    return None


def require_binary(test: unittest.TestCase) -> str:
    """The tool's path, or skip the test (fail under CI)."""
    path = find_binary()
    if path is None or not os.path.isfile(path):
        if os.environ.get("CI"):
            raise RuntimeError("the latentwatch tool is not built: CI must not skip these tests")
        raise unittest.SkipTest("the latentwatch tool is not built (.build/debug/latentwatch); set LATENTWATCH_BIN")
    return path


def run_tool(binary: str, args: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run([binary] + args, check=True, capture_output=True, text=True)


def stream():
    """The bundled stream: (h1 rows, h2 rows, first out-of-distribution index)."""
    h1 = np.load(os.path.join(DATA, "stream_h1.npy"))
    h2 = np.load(os.path.join(DATA, "stream_h2.npy"))
    start = int(np.load(os.path.join(DATA, "stream_ood_start.npy")).reshape(-1)[0])
    return h1, h2, start


def fit_digits_models(layers=("h1", "h2")) -> List["latentwatch.Model"]:
    """gda models of the digits MLP's layers, fitted in process on the train split, calibrated on the
    calibration split with its labels (what `latentwatch fit ... --calibration ... --calibration-labels` does)."""
    labels = np.load(os.path.join(DATA, "train_labels.npy"))
    cal_labels = np.load(os.path.join(DATA, "calibration_labels.npy"))
    return [
        latentwatch.fit(
            np.load(os.path.join(DATA, f"train_{layer}.npy")),
            labels,
            layer_name=layer,
            calibration=np.load(os.path.join(DATA, f"calibration_{layer}.npy")),
            calibration_labels=cal_labels,
        )
        for layer in layers
    ]


class TempDirTestCase(unittest.TestCase):
    """A test case with a temporary folder, removed afterwards."""

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="lwpytest-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)
