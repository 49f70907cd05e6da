"""Models: a fitted density of one layer's activations (``lw_model``), loading, scoring, fitting and writing."""


import ctypes
import numbers
import os
import threading
from dataclasses import dataclass
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _capi
from ._arrays import OwnedHandle, as_float_array, check, shape_str
from ._capi import lib
from ._errors import ConfigurationError, DTypeError, NonFiniteError, ShapeError, error_for_status

__all__ = ["Model", "Score", "Scores", "load", "fit"]

PathLike = Union[str, os.PathLike]

_PRECISIONS = {"float32": _capi.LW_DTYPE_FLOAT32, "float16": _capi.LW_DTYPE_FLOAT16}
_PRECISION_NAMES = {v: k for k, v in _PRECISIONS.items()}
_POOLINGS = {
    "flatten": _capi.LW_POOL_FLATTEN,
    "global-average": _capi.LW_POOL_GLOBAL_AVERAGE,
    "mean-tokens": _capi.LW_POOL_MEAN_TOKENS,
}


def _precision_code(precision: Optional[str], allow_none: bool) -> int:
    if precision is None and allow_none:
        return 0
    try:
        return _PRECISIONS[str(precision)]
    except KeyError:
        raise ConfigurationError(
            f"precision is {precision!r}; use 'float32' or 'float16'"
            + (" (or None to keep the model's)" if allow_none else "")
        ) from None


@dataclass(frozen=True)
class Score:
    """The scores of one activation (:meth:`Model.score` of one input).

    Attributes:
        surprise: -log p(z): epistemic uncertainty (large means unlike the fitted data).
        surprise_p_value: the surprise's conformal p-value (NaN when the model has no calibration).
        entropy: entropy of p(y | z) in nats: aleatoric uncertainty.
        entropy_p_value: the entropy's conformal p-value (NaN when not calibrated).
        log_density: log p(z).
        max_posterior: max_k p(k | z).
        mahalanobis: squared Mahalanobis distance to the nearest component.
        relative_mahalanobis: ``mahalanobis`` minus the background Gaussian's.
        predicted_component: argmax_k p(k | z) (for a regression model, the most probable target bin).
        predicted_label: that component's class label; -1 for mixtures and regression models (as in
            :class:`Scores`).
        prediction: a regression model's prediction of its target (the predictive mean); NaN for classifiers.
        predictive_spread: the predictive standard deviation: a regression model's aleatoric score; NaN otherwise.
        spread_p_value: the spread's conformal p-value; NaN when not calibrated or not a regression model.
        neighbour_distance: the distance to the nearest row of the model's neighbour index (``fit(neighbours=)``);
            NaN without one.
        epistemic_p_value: the p-value a :class:`Monitor` alarms on: ``surprise_p_value``, or with a neighbour
            index the conformal p-value of the surprise and ``neighbour_distance`` combined (Docs/Statistics.md).
    """

    surprise: float
    surprise_p_value: float
    entropy: float
    entropy_p_value: float
    log_density: float
    max_posterior: float
    mahalanobis: float
    relative_mahalanobis: float
    predicted_component: int
    predicted_label: int
    prediction: float = float("nan")
    predictive_spread: float = float("nan")
    spread_p_value: float = float("nan")
    neighbour_distance: float = float("nan")
    epistemic_p_value: float = float("nan")


class Scores(NamedTuple):
    """The scores of a batch (:meth:`Model.score` of n inputs): one numpy array of n entries per score.

    The C library writes every column straight into these arrays (``lw_model_score_batch``). A row the
    library refused (NaN or infinite values) has a nonzero ``status`` (``LW_ERR_NON_FINITE``), NaN in the float
    columns and -1 in ``predicted_label``; the other rows are unaffected. ``prediction``, ``predictive_spread``
    and ``spread_p_value`` are a regression model's (NaN for classifiers and mixtures); ``neighbour_distance`` is
    NaN without a neighbour index, and ``epistemic_p_value`` is the p-value a :class:`Monitor` alarms on (see
    :class:`Score`).
    """

    surprise: np.ndarray
    surprise_p_value: np.ndarray
    entropy: np.ndarray
    entropy_p_value: np.ndarray
    log_density: np.ndarray
    max_posterior: np.ndarray
    mahalanobis: np.ndarray
    relative_mahalanobis: np.ndarray
    predicted_label: np.ndarray
    status: np.ndarray
    prediction: np.ndarray
    predictive_spread: np.ndarray
    spread_p_value: np.ndarray
    neighbour_distance: np.ndarray
    epistemic_p_value: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of the rows that were scored (``status == 0``)."""
        return self.status == 0


_FLOAT_COLUMNS = (
    "surprise",
    "surprise_p_value",
    "entropy",
    "entropy_p_value",
    "log_density",
    "max_posterior",
    "mahalanobis",
    "relative_mahalanobis",
    "prediction",
    "predictive_spread",
    "spread_p_value",
    "neighbour_distance",
    "epistemic_p_value",
)
_DOUBLE_P = ctypes.POINTER(ctypes.c_double)
_INT64_P = ctypes.POINTER(ctypes.c_int64)
_INT32_P = ctypes.POINTER(ctypes.c_int32)


class Model(OwnedHandle):
    """A fitted density of one layer's activations (a LatentWatch model file, ``.lwm``).

    Create one with :func:`load`, :meth:`Model.from_bytes` or :func:`fit`; do not call the constructor. A model
    is immutable and may be used by many threads at once; :meth:`score` releases the GIL while the library
    computes. Monitors created from a model keep their own reference, so a model may be closed (or garbage
    collected) while monitors built on it go on.

    Example::

        m = latentwatch.load("h1.lwm")
        s = m.score(batch)              # batch: (n, 128) float32 -> Scores of n-entry arrays
        print(s.surprise_p_value.min())
    """

    __slots__ = ("_handle", "_info", "_labels", "_lock", "__weakref__")
    _free = "lw_model_free"

    def __init__(self, _handle: ctypes.c_void_p) -> None:
        if not isinstance(_handle, ctypes.c_void_p) or not _handle.value:
            raise TypeError("Model is created by latentwatch.load, Model.from_bytes or latentwatch.fit")
        self._handle: Optional[ctypes.c_void_p] = _handle
        self._lock = threading.Lock()
        info = _capi.lw_model_info()
        info.struct_size = ctypes.sizeof(info)
        check(lib.lw_model_get_info(_handle, ctypes.byref(info)))
        self._info = {
            "layer": info.layer.decode("utf-8"),
            "family": info.family.decode("utf-8"),
            "fit_notes": info.fit_notes.decode("utf-8") if info.fit_notes else "",
            "input_shape": tuple(int(info.input_shape[i]) for i in range(info.input_rank)),
            "input_count": int(info.input_count),
            "latent_dimension": int(info.latent_dimension),
            "component_count": int(info.component_count),
            "calibration_count": int(info.calibration_count),
            "fit_samples": int(info.fit_samples),
            "posterior_temperature": float(info.posterior_temperature) or None,
            "joint_count": int(info.joint_count),
            "target_bins": int(info.target_bins) or None,
            "interval_count": int(info.interval_count),
            "disagreement_count": int(info.disagreement_count),
            "neighbour_count": int(info.neighbour_count),
            "fingerprint": int(info.fingerprint) if info.has_fingerprint else None,
            "precision": _PRECISION_NAMES.get(info.precision, str(info.precision)),
        }
        self._labels: Optional[List[int]] = None
        if info.has_class_labels:
            count = ctypes.c_size_t(0)
            status = lib.lw_model_class_labels(_handle, None, 0, ctypes.byref(count))
            if status not in (0, _capi.LW_ERR_BUFFER_TOO_SMALL):
                check(status)
            buf = (ctypes.c_int64 * max(1, count.value))()
            check(lib.lw_model_class_labels(_handle, buf, count.value, ctypes.byref(count)))
            self._labels = [int(buf[i]) for i in range(count.value)]

    # ---- creation -----------------------------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray, memoryview]) -> "Model":
        """A model from the bytes of a model file (as :meth:`to_bytes` returns them). The bytes are not kept.

        Raises:
            ModelFileError: the bytes are not a valid model file (truncated, damaged, implausible).
            UnsupportedModelError: a newer format version, or a density family this library lacks.
        """
        if not isinstance(data, bytes):
            data = bytes(data)
        handle = ctypes.c_void_p()
        check(lib.lw_model_load_bytes(data, len(data), ctypes.byref(handle)))
        return cls(handle)

    # ---- properties --------------------------------------------------------------------------------------------

    @property
    def layer(self) -> str:
        """The layer name stored in the model file."""
        return self._info["layer"]

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """The shape of one activation, as fitted (for example ``(512,)`` or ``(64, 7, 7)``)."""
        return self._info["input_shape"]

    @property
    def input_count(self) -> int:
        """Elements of one activation: the product of :attr:`input_shape`."""
        return self._info["input_count"]

    @property
    def family(self) -> str:
        """The density family: ``"gda"``, ``"tied"``, ``"gmm-full"`` or ``"gmm-diag"``."""
        return self._info["family"]

    @property
    def latent_dimension(self) -> int:
        """The dimension after pooling and projection."""
        return self._info["latent_dimension"]

    @property
    def component_count(self) -> int:
        """Classes (gda, tied) or mixture components (gmm-*)."""
        return self._info["component_count"]

    @property
    def calibration_count(self) -> int:
        """Held-out scores behind the p-values."""
        return self._info["calibration_count"]

    @property
    def fit_samples(self) -> int:
        """Rows the density was fitted on."""
        return self._info["fit_samples"]

    @property
    def fingerprint(self) -> Optional[int]:
        """CRC-32 of the model file's bytes; None for a model fitted in this process and not read back."""
        return self._info["fingerprint"]

    @property
    def precision(self) -> str:
        """How the parameters are held: ``"float32"`` or ``"float16"``."""
        return self._info["precision"]

    @property
    def class_labels(self) -> Optional[List[int]]:
        """The class labels in component order (gda, tied), or None for mixtures."""
        return None if self._labels is None else list(self._labels)

    @property
    def posterior_temperature(self) -> Optional[float]:
        """The temperature of the calibrated class posterior p(y | z) that entropy and ``max_posterior`` come
        from, or None for Bayes' rule on the density (mixtures; fits without calibration labels)."""
        return self._info["posterior_temperature"]

    @property
    def joint_count(self) -> int:
        """Inputs of the joint calibration the model carries (:func:`calibrate_jointly`), or 0 for none."""
        return self._info["joint_count"]

    @property
    def target_bins(self) -> Optional[int]:
        """A regression model's number of target bins (families ``"regression"`` and ``"regression-tied"``), or
        None for classifiers and mixtures."""
        return self._info["target_bins"]

    @property
    def has_prediction_interval(self) -> bool:
        """Whether the model carries a calibrated prediction interval (a regression model fitted with calibration
        targets)."""
        return self._info["interval_count"] > 0

    def prediction_interval(self, prediction: Any, spread: Any, level: float = 0.9) -> Tuple[Any, Any]:
        """A regression model's conformal prediction interval at ``level`` (``lw_model_prediction_interval``):
        ``prediction -/+ q * spread``, covering the target with probability at least ``level`` for inputs
        exchangeable with the calibration inputs (Docs/Statistics.md).

        Args:
            prediction: ``Score.prediction`` or the ``Scores.prediction`` column.
            spread: ``Score.predictive_spread`` or the ``Scores.predictive_spread`` column.
            level: the coverage, in (0, 1).

        Returns:
            ``(low, high)``: floats, or arrays for array arguments (NaN where the prediction is NaN).

        Raises:
            ConfigurationError: a model without an interval calibration, or a level outside (0, 1).
        """
        if not self.has_prediction_interval:
            raise ConfigurationError(
                f"the model of layer '{self.layer}' ({self.family}) has no prediction interval; fit a regression "
                "family with calibration targets"
            )
        if not 0 < level < 1:
            raise ConfigurationError(f"level is {level!r}; it must be in (0, 1)")
        p = np.asarray(prediction, dtype=np.float64)
        sp = np.asarray(spread, dtype=np.float64)
        if p.shape != sp.shape:
            raise ShapeError(f"prediction has shape {shape_str(p.shape)} and spread {shape_str(sp.shape)}")
        low = np.full(p.shape, np.nan)
        high = np.full(p.shape, np.nan)
        lo, hi = ctypes.c_double(), ctypes.c_double()
        h = self._live_handle()
        for i in np.ndindex(p.shape):
            if np.isfinite(p[i]) and np.isfinite(sp[i]):
                check(lib.lw_model_prediction_interval(h, float(p[i]), float(sp[i]), float(level), lo, hi))
                low[i], high[i] = lo.value, hi.value
        if p.ndim == 0:
            return float(low), float(high)
        return low, high

    @property
    def neighbour_count(self) -> int:
        """Rows in the model's neighbour index (``fit(neighbours=)``); 0 when it has none."""
        return self._info["neighbour_count"]

    @property
    def has_disagreement_calibration(self) -> bool:
        """Whether the model carries the calibration of its disagreement with the host's prediction
        (:meth:`calibrate_disagreement`)."""
        return self._info["disagreement_count"] > 0

    def calibrate_disagreement(self, calibration: Any, host_predictions: Any) -> "Model":
        """A new model that also calibrates the distance between the host model's own prediction and this
        regression model's (``lw_calibrate_disagreement``; Docs/Statistics.md, "Host-prediction disagreement").
        A :class:`Monitor` of it created with ``outputs="prediction"`` then reports each input's
        ``disagreement`` and its p-value, and raises ``"disagreement"`` alerts at ``disagreement_alpha``. This
        model is unchanged.

        Args:
            calibration: held-out in-distribution activations, shape ``(rows, *input_shape)``: best the rows the
                model was calibrated on.
            host_predictions: the host's prediction of each row's target, shape ``(rows,)``, in the targets' units.

        Raises:
            ConfigurationError: a model that is not a regression model.
            ShapeError, DTypeError, NonFiniteError: arrays of the wrong shape or type, non-finite predictions.
        """
        cal, keep = _activations_struct(calibration, None, "calibration activations", self.input_shape)
        p = _targets_array(host_predictions, int(cal.count), "host predictions")
        handle = ctypes.c_void_p()
        check(lib.lw_calibrate_disagreement(
            self._live_handle(), ctypes.byref(cal), p.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), len(p),
            ctypes.byref(handle)))
        del keep, p  # the library read the buffers during the call only
        return Model(handle)

    @property
    def fit_notes(self) -> str:
        """What the fit chose (shrinkage, components, ...)."""
        return self._info["fit_notes"]

    def __repr__(self) -> str:
        fp = "none" if self.fingerprint is None else f"{self.fingerprint:08x}"
        state = "" if self._handle is not None else ", closed"
        return (
            f"<latentwatch.Model layer={self.layer!r} family={self.family!r} input_shape={self.input_shape} "
            f"components={self.component_count} calibration={self.calibration_count} fingerprint={fp}{state}>"
        )

    # ---- scoring -----------------------------------------------------------------------------------------------

    def _live_handle(self) -> ctypes.c_void_p:
        h = self._handle
        if h is None:
            raise error_for_status(_capi.LW_ERR_INVALID_HANDLE, f"the model for layer '{self.layer}' was closed")
        return h

    def score(self, x: Any) -> Union[Score, Scores]:
        """Scores one activation or a batch.

        Args:
            x: one activation of shape :attr:`input_shape` (or flat, of :attr:`input_count` elements), or a batch
                of shape ``(n, *input_shape)`` or ``(n, input_count)``. float32 C-contiguous arrays are read in
                place; other real dtypes (float64, float16, integers) and non-contiguous arrays are converted to
                a contiguous float32 copy first.

        Returns:
            For one activation, a :class:`Score` of floats (``lw_model_score``). For a batch, :class:`Scores`
            whose columns the library fills in place (``lw_model_score_batch``, which uses BLAS for large
            batches; results equal the one-input form to float rounding).

        Raises:
            ShapeError: ``x`` has another shape (the message names the expected and the actual shape).
            NonFiniteError: one activation holding NaN or infinity. In a batch, such rows are reported in
                ``Scores.status`` instead, and the other rows are scored.
            DTypeError: ``x`` is complex, object or string typed (a ``TypeError``).
        """
        a = as_float_array(x, "the activation")
        shape = self.input_shape
        n_in = self.input_count
        if a.shape == shape or a.shape == (n_in,):
            return self._score_one(a)
        if a.ndim >= 1 and (a.shape[1:] == shape or a.shape[1:] == (n_in,)):
            return self._score_batch(a)
        flat = len(shape) > 1
        raise ShapeError(
            f"layer '{self.layer}' scores one activation of shape {shape_str(shape)}"
            + (f" (or flat, {n_in} elements)" if flat else "")
            + f" or a batch of shape (n, {', '.join(map(str, shape))})"
            + (f" or (n, {n_in})" if flat else "")
            + f"; got shape {shape_str(a.shape)}"
        )

    def _score_one(self, a: np.ndarray) -> Score:
        out = _capi.lw_scores()
        out.struct_size = ctypes.sizeof(out)
        check(lib.lw_model_score(self._live_handle(), a.__array_interface__["data"][0], a.size, ctypes.byref(out)))
        return Score(
            out.surprise,
            out.surprise_p_value,
            out.entropy,
            out.entropy_p_value,
            out.log_density,
            out.max_posterior,
            out.mahalanobis,
            out.relative_mahalanobis,
            out.predicted_component,
            out.predicted_label,
            out.prediction,
            out.predictive_spread,
            out.spread_p_value,
            out.neighbour_distance,
            out.epistemic_p_value,
        )

    def _score_batch(self, a: np.ndarray) -> Scores:
        n = a.shape[0]
        cols = {name: np.empty(n, dtype=np.float64) for name in _FLOAT_COLUMNS}
        labels = np.empty(n, dtype=np.int64)
        status = np.empty(n, dtype=np.int32)
        if n == 0:
            return Scores(**cols, predicted_label=labels, status=status)
        c = _capi.lw_score_columns()
        c.struct_size = ctypes.sizeof(c)
        for name in _FLOAT_COLUMNS:
            setattr(c, name, cols[name].ctypes.data_as(_DOUBLE_P))
        c.predicted_label = labels.ctypes.data_as(_INT64_P)
        c.status = status.ctypes.data_as(_INT32_P)
        check(lib.lw_model_score_batch(self._live_handle(), a.ctypes.data, a.size, n, ctypes.byref(c)))
        return Scores(**cols, predicted_label=labels, status=status)

    # ---- writing -----------------------------------------------------------------------------------------------

    def to_bytes(self, precision: Optional[str] = None, compression_level: Optional[int] = None) -> bytes:
        """The model file's bytes (``lw_model_encode``).

        Args:
            precision: None to keep the model's, ``"float16"`` to store means and factors at half the size, or
                ``"float32"``.
            compression_level: zstd level 1 to 22, or None for the default (9).
        """
        p = _precision_code(precision, allow_none=True)
        level = 0 if compression_level is None else int(compression_level)
        h = self._live_handle()
        length = ctypes.c_size_t(0)
        status = lib.lw_model_encode(h, p, level, None, 0, ctypes.byref(length))
        if status != _capi.LW_ERR_BUFFER_TOO_SMALL:
            check(status)
        buf = ctypes.create_string_buffer(length.value)
        check(lib.lw_model_encode(h, p, level, buf, length.value, ctypes.byref(length)))
        return buf.raw[: length.value]

    def save(self, path: PathLike, precision: Optional[str] = None, compression_level: Optional[int] = None) -> None:
        """Writes the model file atomically (a temporary file renamed into place; ``lw_model_write``).

        Args:
            path: where to write (conventionally ``.lwm``).
            precision: None to keep the model's, ``"float16"`` (half the size) or ``"float32"``.
            compression_level: zstd level 1 to 22, or None for the default (9).

        Raises:
            LatentWatchIOError: the file cannot be written (an ``OSError``).
        """
        p = _precision_code(precision, allow_none=True)
        level = 0 if compression_level is None else int(compression_level)
        check(lib.lw_model_write(self._live_handle(), os.fsencode(path), p, level))



def load(path: PathLike) -> Model:
    """Reads a model file (``.lwm``); every size and checksum is verified before anything is used.

    Raises:
        LatentWatchIOError: the file cannot be opened or read (an ``OSError``).
        ModelFileError: the file is not a valid model file (truncated, damaged, implausible sizes).
        UnsupportedModelError: a newer format version, or a density family this library lacks.
    """
    handle = ctypes.c_void_p()
    check(lib.lw_model_load(os.fsencode(path), ctypes.byref(handle)))
    return Model(handle)


def _labels_array(labels: Any, n: int, what: str) -> np.ndarray:
    a = np.asarray(labels)
    if a.dtype.kind in "iu" or a.dtype.kind == "b":
        out = np.require(a, dtype=np.int64, requirements="CA")
    elif a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        out = np.require(a, dtype=np.int64, requirements="CA")
    else:
        raise DTypeError(f"{what} has dtype {a.dtype}; class labels must be integers")
    if out.shape != (n,):
        raise ShapeError(f"{what} has shape {shape_str(out.shape)}; {n} rows need shape ({n},)")
    return out


def _targets_array(targets: Any, n: int, what: str) -> np.ndarray:
    t = np.asarray(targets)
    if t.dtype.kind not in "fiu":
        raise DTypeError(f"{what} have dtype {t.dtype}; give real numbers")
    # Aligned too: arrays unpickled from another process (Dask, pickle protocol 5) may sit at any address.
    t = np.require(t, dtype=np.float64, requirements="CA")
    if t.shape != (n,):
        raise ShapeError(f"{what} have shape {shape_str(t.shape)}; give one number per row: shape ({n},)")
    if not np.all(np.isfinite(t)):
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise NonFiniteError(f"{what}[{i}] is {t[i]}; targets must be finite")
    return t


def _activations_struct(
    x: Any, labels: Any, what: str, row_shape: Optional[Tuple[int, ...]] = None, targets: Any = None
) -> Tuple[_capi.lw_activations, List[Any]]:
    """An ``lw_activations`` over ``x`` (and labels or targets), and the arrays it points into (keep them alive)."""
    a = as_float_array(x, what)
    if a.ndim < 2:
        raise ShapeError(
            f"{what} has shape {shape_str(a.shape)}; give rows: shape (n, *row_shape), for example (n, 128)"
        )
    if a.ndim - 1 > _capi.LW_MAX_RANK:
        raise ShapeError(f"{what} rows have rank {a.ndim - 1}; at most {_capi.LW_MAX_RANK} is supported")
    if row_shape is not None and a.shape[1:] != row_shape:
        raise ShapeError(
            f"{what} rows have shape {shape_str(a.shape[1:])}; the training rows have {shape_str(row_shape)}"
        )
    s = _capi.lw_activations()
    lib.lw_activations_init(ctypes.byref(s))
    s.rank = a.ndim - 1
    for i, d in enumerate(a.shape[1:]):
        s.shape[i] = d
    s.values = a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    s.length = a.size
    s.count = a.shape[0]
    keep: List[Any] = [a]
    if labels is not None:
        la = _labels_array(labels, a.shape[0], what.replace("activations", "labels"))
        s.labels = la.ctypes.data_as(_INT64_P)
        keep.append(la)
    if targets is not None:
        ta = _targets_array(targets, a.shape[0], what.replace("activations", "targets"))
        s.targets = ta.ctypes.data_as(_DOUBLE_P)
        keep.append(ta)
    return s, keep


def fit(
    activations: Any,
    labels: Optional[Any] = None,
    *,
    family: Optional[str] = None,
    layer_name: str = "layer",
    calibration: Optional[Any] = None,
    calibration_labels: Optional[Any] = None,
    pooling: str = "flatten",
    l2_normalize: bool = True,
    precision: str = "float32",
    pca_components: Optional[int] = None,
    pca_variance_fraction: Optional[float] = None,
    calibration_fraction: float = 0.2,
    split_seed: int = 0,
    mixture_components: int = 8,
    mixture_seed: int = 0,
    fit_background: bool = True,
    calibrate_posterior: bool = True,
    targets: Optional[Any] = None,
    calibration_targets: Optional[Any] = None,
    target_bins: int = 10,
    neighbours: Union[int, str, None] = None,
    neighbour_cells: Optional[int] = None,
    neighbour_probes: Optional[int] = None,
) -> Model:
    """Fits a density to in-distribution activations (``lw_fit``) and returns the model.

    The GIL is released while the library fits, so other Python threads keep running.

    Args:
        activations: in-distribution rows, shape ``(n, *row_shape)`` (for example ``(n, 512)``, or
            ``(n, 64, 7, 7)`` with ``pooling="global-average"``). float32 C-contiguous arrays are read in place;
            other real dtypes are converted (copied).
        labels: ``n`` integer class labels; needed by the class-conditional families ``"gda"`` and ``"tied"``.
        family: ``"gda"`` (a full covariance per class; the default without ``targets``), ``"tied"`` (one shared covariance: Mahalanobis),
            ``"gmm-full"`` or ``"gmm-diag"`` (unsupervised mixtures, no labels), ``"regression"`` or
            ``"regression-tied"`` (a regression model's layer: needs ``targets``; Docs/Statistics.md).
        layer_name: the layer name stored in the model.
        calibration: held-out in-distribution rows (same row shape) behind the p-values. Without them,
            ``calibration_fraction`` of ``activations`` is held out (by a seeded hash of the row index) and not
            used for fitting.
        calibration_labels: optional labels of the calibration rows: the class posterior p(y | z) is calibrated
            on them (without ``calibration``, on the labels of the rows held out).
        pooling: ``"flatten"`` (as is), ``"global-average"`` ((C, H, W) -> C) or ``"mean-tokens"`` ((T, D) -> D).
        l2_normalize: L2-normalise each pooled activation (the default; Docs/Evaluation.md has the evidence).
        precision: ``"float32"`` or ``"float16"``: how the model holds its parameters.
        pca_components: project onto this many principal components (None: no projection).
        pca_variance_fraction: or keep this fraction of the variance, in (0, 1] (not with ``pca_components``).
        calibration_fraction: the share held out when ``calibration`` is None, in [0, 1).
        split_seed: the seed of that split.
        mixture_components: components of the ``gmm-*`` families.
        mixture_seed: the seed of the mixtures' initialisation.
        fit_background: fit the background Gaussian behind ``relative_mahalanobis``.
        calibrate_posterior: calibrate p(y | z) on the labelled calibration rows (gda, tied; for the regression
            families, the posterior over target bins on the calibration targets; Docs/Statistics.md);
            False: Bayes' rule on the density.
        targets: ``n`` finite real targets of a regression model (the regression families; with ``targets`` the
            default family is ``"regression"``).
        calibration_targets: the calibration rows' targets: they calibrate the predictive distribution and the
            prediction interval (without ``calibration``, the held-out rows' own targets are used).
        target_bins: quantile bins the targets are cut into (regression families).
        neighbours: the neighbour index, whose nearest-row distance is combined with the surprise into
            ``epistemic_p_value`` (better on near-OOD inputs; Docs/Evaluation.md): None (the default) keeps one of
            at most 32768 fitting rows and 16 MiB (a seeded uniform sample, stored as one-byte integer codes: rows x
            latent dimension bytes in the model file), left out where the fit cannot keep one (a latent dimension
            beyond 32768) or calibrates on fewer than 1000 rows (too few to resolve the combined p-value's small
            values; the model's notes say why); a number of rows keeps one of that size or fails; ``"off"`` (or 0)
            keeps none.
        neighbour_cells: k-means cells of that index (None: the square root of the rows kept).
        neighbour_probes: cells searched per input (None: 2).

    Raises:
        ShapeError: activations that are not rows, or calibration rows of another shape.
        ConfigurationError: an unknown family or pooling, ``gda``/``tied`` without labels, bad fractions.
        FitError: too little data, a class with too few rows, a covariance that cannot be factorised.
    """
    if family is None:
        family = "gda" if targets is None else "regression"
    if targets is not None and (labels is not None or calibration_labels is not None):
        raise ConfigurationError("give targets (a regression model) or labels (a classifier), not both")
    config, keep_strings = _fit_config(
        family=family,
        layer_name=layer_name,
        pooling=pooling,
        l2_normalize=l2_normalize,
        precision=precision,
        pca_components=pca_components,
        pca_variance_fraction=pca_variance_fraction,
        calibration_fraction=calibration_fraction,
        split_seed=split_seed,
        mixture_components=mixture_components,
        mixture_seed=mixture_seed,
        fit_background=fit_background,
        calibrate_posterior=calibrate_posterior,
    )
    if not 1 <= int(target_bins) <= 1000:
        raise ConfigurationError(f"target_bins is {target_bins!r}; it must be 1 to 1000")
    config.target_bins = int(target_bins)
    _set_neighbours(config, neighbours, neighbour_cells, neighbour_probes)
    train, keep = _activations_struct(activations, labels, "activations", targets=targets)
    keep.extend(keep_strings)
    cal_p = None
    if calibration is not None:
        row_shape = tuple(int(train.shape[i]) for i in range(train.rank))
        cal, keep_cal = _activations_struct(
            calibration, calibration_labels, "calibration activations", row_shape, targets=calibration_targets
        )
        keep.extend(keep_cal)
        cal_p = ctypes.byref(cal)
    elif calibration_labels is not None:
        raise ConfigurationError("calibration_labels were given without calibration activations")
    elif calibration_targets is not None:
        raise ConfigurationError("calibration_targets were given without calibration activations")
    handle = ctypes.c_void_p()
    check(lib.lw_fit(ctypes.byref(train), cal_p, ctypes.byref(config), ctypes.byref(handle)))
    del keep  # the library read the buffers during the call only
    return Model(handle)


def calibrate_jointly(
    models: Sequence[Model],
    calibration: Sequence[Any],
    *,
    carved: bool = False,
    split_seed: int = 0,
    calibration_fraction: float = 0.2,
    statistic: str = "cauchy",
) -> List[Model]:
    """Calibrates the fused p-value of several layers' models on the inputs they were all calibrated on
    (``lw_calibrate_jointly``) and returns new models, in the same order, that carry the joint calibration. A
    :class:`Monitor` of exactly these layers then fuses their p-values into a conformal p-value (``fusion=
    "automatic"``, the default): its alert rate is at most the level asked for on average over calibration
    sets, as one layer's is, where Bonferroni is conservative.

    Args:
        models: two or more models fitted on the same inputs' activations of different layers.
        calibration: one array per model, row i being the same input on every layer: each fit's ``calibration``
            rows, or, with ``carved``, the ``activations`` each fit carved its calibration rows off.
        carved: the fits held out ``calibration_fraction`` of their activations with ``split_seed`` (their
            default, without ``calibration``).
        split_seed: with ``carved``: the fits' ``split_seed``.
        calibration_fraction: with ``carved``: the fits' ``calibration_fraction``.
        statistic: ``"cauchy"`` (the default) or ``"fisher"``: how the layers' p-values combine.

    Raises:
        ShapeError: an array whose rows are not its model's shape.
        ConfigurationError: fewer than two models, other rows than the models' calibration rows, an unknown
            statistic.
    """
    if statistic not in _JOINT_STATISTICS:
        raise ConfigurationError(f"statistic is {statistic!r}; use 'cauchy' or 'fisher'")
    models = list(models)
    calibration = list(calibration)
    if len(models) != len(calibration):
        raise ConfigurationError(f"{len(models)} models and {len(calibration)} calibration arrays; give one per model")
    if len(models) < 2 or len(models) > _capi.LW_MAX_LAYERS:
        raise ConfigurationError(f"{len(models)} models; give 2 to {_capi.LW_MAX_LAYERS}")
    keep: List[Any] = []
    structs = []
    for i, (m, x) in enumerate(zip(models, calibration)):
        if not isinstance(m, Model):
            raise TypeError(f"models[{i}] is a {type(m).__name__}, not a latentwatch.Model")
        s, k = _activations_struct(x, None, f"calibration[{i}] activations")
        structs.append(s)
        keep.extend(k)
    carved_by = None
    if carved:
        config, keep_strings = _fit_config(
            family="gda",
            layer_name="layer",
            pooling="flatten",
            l2_normalize=True,
            precision="float32",
            pca_components=None,
            pca_variance_fraction=None,
            calibration_fraction=calibration_fraction,
            split_seed=split_seed,
            mixture_components=8,
            mixture_seed=0,
            fit_background=True,
            calibrate_posterior=True,
        )
        keep.extend(keep_strings)
        carved_by = ctypes.byref(config)
    n = len(models)
    handles = (ctypes.c_void_p * n)(*[m._live_handle().value for m in models])
    pointers = (ctypes.POINTER(_capi.lw_activations) * n)(*[ctypes.pointer(s) for s in structs])
    out = (ctypes.c_void_p * n)()
    check(lib.lw_calibrate_jointly(handles, pointers, n, carved_by, _JOINT_STATISTICS[statistic], out))
    del keep  # the library read the buffers during the call only
    return [Model(ctypes.c_void_p(out[i])) for i in range(n)]


_JOINT_STATISTICS = {"cauchy": _capi.LW_JOINT_CAUCHY, "fisher": _capi.LW_JOINT_FISHER}


def _set_neighbours(
    config: _capi.lw_fit_config,
    neighbours: Union[int, str, None],
    neighbour_cells: Optional[int],
    neighbour_probes: Optional[int],
) -> None:
    """Sets the neighbour index's fields of ``config`` from :func:`fit`'s ``neighbours`` options."""

    def count(name: str, value: Any, largest: int) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= int(value) <= largest:
            raise ConfigurationError(f"{name} is {value!r}; it must be 1 to {largest}")
        return int(value)

    if isinstance(neighbours, str) and neighbours != "off":
        raise ConfigurationError(f"neighbours is {neighbours!r}; it must be None, a number of rows or 'off'")
    integral = isinstance(neighbours, numbers.Integral) and not isinstance(neighbours, bool)
    if neighbours == "off" or (integral and int(neighbours) == 0):
        if neighbour_cells is not None or neighbour_probes is not None:
            raise ConfigurationError("neighbour_cells and neighbour_probes were given with neighbours='off'")
        config.neighbour_index = _capi.LW_NEIGHBOURS_OFF
        return
    config.neighbour_rows = 0 if neighbours is None else count("neighbours", neighbours, _NEIGHBOUR_ROWS)
    if neighbour_cells is not None:
        config.neighbour_cells = count("neighbour_cells", neighbour_cells, _NEIGHBOUR_CELLS)
    if neighbour_probes is not None:
        config.neighbour_probes = count("neighbour_probes", neighbour_probes, _NEIGHBOUR_CELLS)
    config.neighbour_index = _capi.LW_NEIGHBOURS_AUTOMATIC if neighbours is None else _capi.LW_NEIGHBOURS_REQUIRED


# NeighbourOptions.maximumSampleSize and .maximumCells.
_NEIGHBOUR_ROWS = 1 << 20
_NEIGHBOUR_CELLS = 4096


def _fit_config(
    *,
    family: str,
    layer_name: str,
    pooling: str,
    l2_normalize: bool,
    precision: str,
    pca_components: Optional[int],
    pca_variance_fraction: Optional[float],
    calibration_fraction: float,
    split_seed: int,
    mixture_components: int,
    mixture_seed: int,
    fit_background: bool,
    calibrate_posterior: bool,
) -> Tuple[_capi.lw_fit_config, List[bytes]]:
    """An ``lw_fit_config`` from :func:`fit`'s options, and the encoded strings it points to (keep them alive)."""
    if pooling not in _POOLINGS:
        raise ConfigurationError(f"pooling is {pooling!r}; use one of {', '.join(map(repr, _POOLINGS))}")
    config = _capi.lw_fit_config()
    lib.lw_fit_config_init_sized(ctypes.byref(config), ctypes.sizeof(config))
    family_b = str(family).encode("utf-8")
    layer_b = str(layer_name).encode("utf-8")
    config.family = family_b
    config.layer_name = layer_b
    config.pooling = _POOLINGS[pooling]
    config.l2_normalize = 1 if l2_normalize else 0
    config.precision = _precision_code(precision, allow_none=False)
    config.pca_components = 0 if pca_components is None else int(pca_components)
    config.pca_variance_fraction = 0.0 if pca_variance_fraction is None else float(pca_variance_fraction)
    config.calibration_fraction = float(calibration_fraction)
    config.split_seed = int(split_seed)
    config.mixture_components = int(mixture_components)
    config.mixture_seed = int(mixture_seed)
    config.fit_background = 1 if fit_background else 0
    config.calibrate_posterior = 1 if calibrate_posterior else 0
    return config, [family_b, layer_b]
