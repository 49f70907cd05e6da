"""LatentWatch: runtime uncertainty monitoring for neural networks, in process.

Fit densities on a layer's activations, score inputs for epistemic uncertainty (surprise, -log p(z)) and
aleatoric uncertainty (entropy of p(y | z)) as calibrated p-values, and raise alerts on streams of inputs. This
package calls the LatentWatch C library (``liblatentwatch.so``, bundled) through :mod:`ctypes`; every call
releases the GIL.

    import latentwatch as lw
    h1 = lw.fit(train_h1, train_labels, layer_name="h1", calibration=calibration_h1)
    h2 = lw.load("h2.lwm")
    with lw.Monitor([h1, h2], on_alert=print) as monitor:
        a = monitor.assess(x_h1, x_h2)            # one input, one array per layer
        b = monitor.assess_batch(X_h1, X_h2)      # n inputs: numpy columns

Submodules: :mod:`latentwatch.sidecar` (client of ``latentwatch serve``, returning the same
:class:`Assessment`), :mod:`latentwatch.torch` (forward hooks) and :mod:`latentwatch.onnx` (onnxruntime).
"""

from __future__ import annotations

from . import _capi
from ._capi import ABI_VERSION, LIBRARY_PATH
from ._errors import (
    BufferTooSmallError,
    ConfigurationError,
    DTypeError,
    FitError,
    FlushTimeoutError,
    InternalError,
    InvalidArgumentError,
    InvalidHandleError,
    LatentWatchError,
    LatentWatchIOError,
    ModelFileError,
    MonitorClosedError,
    NonFiniteError,
    QueueFullError,
    ShapeError,
    UnsupportedModelError,
    WrongStateError,
)
from ._model import Model, Score, Scores, calibrate_jointly, fit, load
from ._monitor import AssessmentBatch, Monitor
from ._statistics import Statistics, gather_statistics, merge_statistics
from ._types import Alert, Assessment, Flags, LayerAssessment

__version__ = "0.1.0"


#: The loaded C library's version string, for example ``"0.7.0"``.
library_version: str = _capi.library_version()

__all__ = [
    "ABI_VERSION",
    "LIBRARY_PATH",
    "library_version",
    "__version__",
    # models
    "Model",
    "Score",
    "calibrate_jointly",
    "Scores",
    "load",
    "fit",
    # sharded fitting
    "Statistics",
    "gather_statistics",
    "merge_statistics",
    # monitors
    "Monitor",
    "Assessment",
    "AssessmentBatch",
    "LayerAssessment",
    "Alert",
    "Flags",
    # errors
    "LatentWatchError",
    "InvalidArgumentError",
    "InvalidHandleError",
    "LatentWatchIOError",
    "ModelFileError",
    "UnsupportedModelError",
    "ShapeError",
    "NonFiniteError",
    "QueueFullError",
    "MonitorClosedError",
    "ConfigurationError",
    "FitError",
    "BufferTooSmallError",
    "WrongStateError",
    "FlushTimeoutError",
    "InternalError",
    "DTypeError",
]

# The public classes and functions present themselves as latentwatch.X (in help(), reprs and pickles), not
# latentwatch._module.X.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        _obj.__module__ = __name__
del _name, _obj
