"""Monitors: assess inputs of one or more layers and raise alerts (``lw_monitor``)."""


import atexit
import ctypes
import logging
import os
import struct
import threading
import weakref
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _capi
from ._arrays import as_float_array, check, shape_str
from ._capi import lib
from ._errors import (
    ConfigurationError,
    FlushTimeoutError,
    InvalidArgumentError,
    LatentWatchError,
    MonitorClosedError,
    ShapeError,
    WrongStateError,
    error_for_status,
)
from ._model import Model, load
from ._types import ALERT_KINDS, Alert, Assessment, Flags, LayerAssessment

__all__ = ["Monitor", "AssessmentBatch"]

_log = logging.getLogger("latentwatch")
_F32 = np.dtype(np.float32)

_SHIFTS = {
    None: _capi.LW_SHIFT_OFF,
    "off": _capi.LW_SHIFT_OFF,
    "anytime": _capi.LW_SHIFT_ANYTIME,
    "change": _capi.LW_SHIFT_CHANGE_DETECTION,
}
_FUSIONS = {
    "automatic": _capi.LW_FUSION_AUTOMATIC,
    "calibrated": _capi.LW_FUSION_CALIBRATED,
    "bonferroni": _capi.LW_FUSION_BONFERRONI,
    "cauchy": _capi.LW_FUSION_CAUCHY,
}
_REFERENCES = {
    "calibration-and-stream": _capi.LW_SHIFT_REFERENCE_CALIBRATION_AND_STREAM,
    "calibration-set": _capi.LW_SHIFT_REFERENCE_CALIBRATION_SET,
}
_BETTINGS = {
    "mixture": _capi.LW_BETTING_MIXTURE,
    "power": _capi.LW_BETTING_POWER,
    "linear": _capi.LW_BETTING_LINEAR,
}
_MODES = {"inline": _capi.LW_MODE_INLINE, "background": _capi.LW_MODE_BACKGROUND}
_OVERFLOWS = {"drop": _capi.LW_OVERFLOW_DROP_NEWEST, "reject": _capi.LW_OVERFLOW_REJECT}
_OUTPUTS = {
    None: _capi.LW_OUTPUTS_NONE,
    "logits": _capi.LW_OUTPUTS_LOGITS,
    "probabilities": _capi.LW_OUTPUTS_PROBABILITIES,
    "prediction": _capi.LW_OUTPUTS_PREDICTION,
}
_LOG_LEVELS = {
    None: _capi.LW_LOG_OFF,
    "off": _capi.LW_LOG_OFF,
    "error": _capi.LW_LOG_ERROR,
    "warning": _capi.LW_LOG_WARNING,
    "info": _capi.LW_LOG_INFO,
    "debug": _capi.LW_LOG_DEBUG,
}

# The scalar part of lw_assessment (everything before `layers`), read in one unpack.
_HEAD = struct.Struct("=IIqddddqqdddII")
_LAYERS_OFFSET = _capi.lw_assessment.layers.offset
assert _HEAD.size == _LAYERS_OFFSET, "lw_assessment layout changed"
_LAYER_STRUCTS = [struct.Struct(f"={2 * n}d") for n in range(_capi.LW_MAX_LAYERS + 1)]
_SIZEOF_ASSESSMENT = ctypes.sizeof(_capi.lw_assessment)
# The regression fields after `layers`.
_TAIL = struct.Struct("=dddddddd")
_TAIL_OFFSET = _capi.lw_assessment.prediction.offset


def _structured_dtype(cls: type) -> np.dtype:
    """A numpy structured dtype with the same field offsets as a ctypes Structure of scalars and arrays."""
    names, formats, offsets = [], [], []
    for name, ctype in cls._fields_:
        field = getattr(cls, name)
        if isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
            elem = ctype._type_
            sub = _structured_dtype(elem) if issubclass(elem, ctypes.Structure) else np.dtype(elem)
            formats.append((sub, (ctype._length_,)))
        else:
            formats.append(np.dtype(ctype))
        names.append(name)
        offsets.append(field.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": ctypes.sizeof(cls)})


#: numpy view of ``lw_assessment`` (used by :meth:`Monitor.assess_batch` to read n structs without a Python loop).
ASSESSMENT_DTYPE = _structured_dtype(_capi.lw_assessment)
assert ASSESSMENT_DTYPE.itemsize == _SIZEOF_ASSESSMENT


_FLAGS = [Flags(v) for v in range(32)]
_tuple_new = tuple.__new__
_object_new = object.__new__
_char_from_buffer = ctypes.c_char.from_buffer
_addressof = ctypes.addressof
_assess = lib.lw_monitor_assess
assert [f.name for f in fields(Assessment)] == [
    "index", "request_id", "flags", "fused_p_value", "entropy", "entropy_p_value", "predicted_label",
    "shift_log_evidence", "layers", "output_predicted", "output_confidence", "output_entropy", "output_energy",
    "status", "prediction", "predictive_spread", "spread_p_value", "prediction_interval", "host_prediction",
    "disagreement_distance", "disagreement_p_value",
], "Assessment fields changed: update Monitor._assessment"


def _none_if_nan(x: float) -> Optional[float]:
    return None if x != x else x


def _interval(low: float, high: float) -> Optional[Tuple[float, float]]:
    return None if low != low or high != high else (low, high)


# Monitors still open at interpreter exit are closed first: the library's thread must not call into a Python
# that is being finalised. Callbacks of monitors that could not be closed are kept alive here.
_open_monitors: "weakref.WeakSet[Monitor]" = weakref.WeakSet()
_leaked_callbacks: List[Any] = []


@atexit.register
def _close_open_monitors() -> None:
    for m in list(_open_monitors):
        try:
            m.close()
        except Exception:
            pass


class _CallbackState:
    """What the C callback needs, held apart from the Monitor so that the callback keeps no cycle alive."""

    def __init__(
        self,
        on_alert: Optional[Callable[[Alert], Any]],
        logger: Optional[logging.Logger],
    ) -> None:
        self.on_alert = on_alert
        self.logger = logger
        self.errors = 0
        self.delivered = 0
        self.local = threading.local()

    def deliver(self, p: Any, _context: Any) -> None:
        """The ``lw_alert_callback``: runs on the library's thread, holding the GIL (ctypes takes it)."""
        self.local.inside = True
        try:
            a = p.contents
            alert = Alert(
                kind=a.kind_name.decode("utf-8") if a.kind_name else ALERT_KINDS.get(a.kind, str(a.kind)),
                index=int(a.index),
                request_id=a.request_id.decode("utf-8", "replace") if a.request_id else None,
                p_value=_none_if_nan(a.p_value),
                episode=ALERT_KINDS.get(a.episode) if a.episode else None,
                detail=a.detail.decode("utf-8", "replace") if a.detail else "",
                time=float(a.time),
            )
            self.delivered += 1
            if self.logger is not None:
                level = logging.INFO if alert.kind == "resolved" else logging.WARNING
                p_text = "" if alert.p_value is None else f" p={alert.p_value:.3g}"
                rid = "" if alert.request_id is None else f" ({alert.request_id})"
                self.logger.log(
                    level,
                    "latentwatch %s alert at input %d%s%s: %s",
                    alert.kind,
                    alert.index,
                    rid,
                    p_text,
                    alert.detail,
                    extra={"latentwatch_alert": alert},
                )
            if self.on_alert is not None:
                self.on_alert(alert)
        except BaseException:  # nothing may escape into C
            self.errors += 1
            try:
                _log.exception("latentwatch: the alert callback raised; the alert is dropped for it")
            except BaseException:
                pass
        finally:
            self.local.inside = False

    def inside(self) -> bool:
        return getattr(self.local, "inside", False)


class _Scratch:
    """One thread's reusable call structs for one monitor (so a call allocates few Python objects)."""

    __slots__ = ("inputs", "layers", "lengths", "out", "out_ref", "inputs_ref", "accepted", "accepted_ref")

    def __init__(self, counts: Sequence[int]) -> None:
        n = len(counts)
        self.inputs = _capi.lw_inputs()
        lib.lw_inputs_init(ctypes.byref(self.inputs))
        self.layers = (ctypes.c_void_p * n)()
        self.lengths = (ctypes.c_size_t * n)(*counts)
        self.inputs.layer_count = n
        self.inputs.layers = self.layers
        self.inputs.lengths = self.lengths
        self.out = _capi.lw_assessment()
        self.out.struct_size = _SIZEOF_ASSESSMENT
        self.out_ref = ctypes.byref(self.out)
        self.inputs_ref = ctypes.byref(self.inputs)
        self.accepted = ctypes.c_int32(0)
        self.accepted_ref = ctypes.byref(self.accepted)


@dataclass(frozen=True)
class AssessmentBatch:
    """The assessments of a batch (:meth:`Monitor.assess_batch`): one numpy array per field, n rows.

    Attributes:
        index: int64 stream indices.
        flags: uint32 :class:`Flags` bits.
        fused_p_value, entropy, entropy_p_value, shift_log_evidence: float64 (NaN for "none").
        predicted_label: int64 class from p(y | z); -1 for mixtures and regression models.
        prediction, predictive_spread, spread_p_value: float64, a regression model's (NaN otherwise).
        interval_low, interval_high: float64, its prediction interval at the monitor's ``interval_level`` (NaN
            when there is none; infinite ends when unbounded).
        host_prediction, disagreement_distance, disagreement_p_value: float64: the host's prediction, its
            distance from ``prediction`` and that distance's p-value (``outputs="prediction"``; NaN otherwise).
        output_predicted: int64 class from the classifier's outputs; -1 when none were given.
        output_confidence, output_entropy, output_energy: float64; NaN when no outputs were given.
        layer_surprise: float64, shape (n, layers).
        layer_p_value: float64, shape (n, layers).
        layer_names: the monitor's layer names (the columns of the two arrays above).
        request_ids: the ids passed, or None.
        raw: the assessments as the library wrote them, a numpy structured array of ``lw_assessment``.
    """

    index: np.ndarray
    flags: np.ndarray
    fused_p_value: np.ndarray
    entropy: np.ndarray
    entropy_p_value: np.ndarray
    shift_log_evidence: np.ndarray
    predicted_label: np.ndarray
    output_predicted: np.ndarray
    output_confidence: np.ndarray
    output_entropy: np.ndarray
    output_energy: np.ndarray
    layer_surprise: np.ndarray
    layer_p_value: np.ndarray
    layer_names: Tuple[str, ...]
    request_ids: Optional[Tuple[Optional[str], ...]]
    raw: np.ndarray
    prediction: np.ndarray
    predictive_spread: np.ndarray
    spread_p_value: np.ndarray
    interval_low: np.ndarray
    interval_high: np.ndarray
    host_prediction: np.ndarray
    disagreement_distance: np.ndarray
    disagreement_p_value: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def _flag(self, bit: int) -> np.ndarray:
        return (self.flags & bit) != 0

    @property
    def out_of_distribution(self) -> np.ndarray:
        """Boolean mask: the fused p-value is at most ``input_alpha``."""
        return self._flag(Flags.OUT_OF_DISTRIBUTION)

    @property
    def ambiguous(self) -> np.ndarray:
        """Boolean mask: the aleatoric p-value (of the entropy; of the spread for regression models) is at most
        ``aleatoric_alpha``."""
        return self._flag(Flags.AMBIGUOUS)

    @property
    def window_alarm(self) -> np.ndarray:
        """Boolean mask: a window episode is open."""
        return self._flag(Flags.WINDOW_ALARM)

    @property
    def shift_alarm(self) -> np.ndarray:
        """Boolean mask: a shift episode is open."""
        return self._flag(Flags.SHIFT_ALARM)

    @property
    def disagreement(self) -> np.ndarray:
        """Boolean mask: the outputs predict another class than p(y | z), or a regression host's disagreement
        p-value is at most ``disagreement_alpha``."""
        return self._flag(Flags.DISAGREEMENT)

    def __getitem__(self, i: int) -> Assessment:
        """Row ``i`` as an :class:`Assessment`."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} of a batch of {n}")
        i %= n
        pl = int(self.predicted_label[i])
        op = int(self.output_predicted[i])
        return Assessment(
            index=int(self.index[i]),
            request_id=None if self.request_ids is None else self.request_ids[i],
            flags=Flags(int(self.flags[i])),
            fused_p_value=float(self.fused_p_value[i]),
            entropy=float(self.entropy[i]),
            entropy_p_value=_none_if_nan(float(self.entropy_p_value[i])),
            predicted_label=None if pl == -1 else pl,
            shift_log_evidence=_none_if_nan(float(self.shift_log_evidence[i])),
            layers=tuple(
                LayerAssessment(name, float(self.layer_surprise[i, k]), float(self.layer_p_value[i, k]))
                for k, name in enumerate(self.layer_names)
            ),
            output_predicted=None if op == -1 else op,
            output_confidence=_none_if_nan(float(self.output_confidence[i])),
            output_entropy=_none_if_nan(float(self.output_entropy[i])),
            output_energy=_none_if_nan(float(self.output_energy[i])),
            prediction=_none_if_nan(float(self.prediction[i])),
            predictive_spread=_none_if_nan(float(self.predictive_spread[i])),
            spread_p_value=_none_if_nan(float(self.spread_p_value[i])),
            prediction_interval=_interval(float(self.interval_low[i]), float(self.interval_high[i])),
            host_prediction=_none_if_nan(float(self.host_prediction[i])),
            disagreement_distance=_none_if_nan(float(self.disagreement_distance[i])),
            disagreement_p_value=_none_if_nan(float(self.disagreement_p_value[i])),
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))


ModelSpec = Union[Model, str, os.PathLike]


class Monitor:
    """Assesses inputs of one or more layers and raises alerts (the library's ``lw_monitor``).

    Each input is one activation per monitored layer. The monitor scores every layer with its model, fuses the
    layers' p-values into one per input, flags inputs that look out of distribution or unusually ambiguous,
    watches the stream for a rising rate of small p-values (the window) and for a distribution shift, and sends
    every alert to the configured sinks: a Python callable, a ``logging.Logger``, a JSON-lines file, stderr.

    Modes:
        ``mode="inline"`` (default): :meth:`assess` and :meth:`assess_batch` score on the calling thread and
        return the assessment. ``mode="background"``: :meth:`submit` copies the input into a bounded queue and
        returns at once; a library thread scores it (``assess`` works too).

    Threads and the GIL:
        The library is called through :mod:`ctypes` (``CDLL``), which releases the GIL for every call, so
        other Python threads run while the monitor scores, and several threads may call :meth:`assess` on one
        monitor at once. Alerts are delivered in order on one library thread, which takes the GIL to run
        ``on_alert`` and ``logger``; an exception there is logged to the ``"latentwatch"`` logger and counted
        (``stats()["callback_errors"]``), never raised into the library. A callback must return promptly and
        must not call :meth:`flush` or :meth:`close` on its own monitor (``WrongStateError``).

    Arrays:
        float32 C-contiguous arrays are read in place, and so are float16 ones (passed as binary16) when every
        layer of the call is float16. Other real dtypes (float64, integers) and non-contiguous arrays are
        converted to a contiguous float32 copy first. Complex, object and string arrays raise a ``TypeError``
        (``DTypeError``).

    Args:
        models: one model per monitored layer, in layer order: :class:`Model` objects or paths of model files
            (a single model or path for one layer). The monitor keeps its own references.
        layer_names: a name per layer (None entries: the model's own layer name).
        input_alpha: per-input level on the fused p-value, in (0, 1).
        aleatoric_alpha: level on the entropy p-value, in (0, 1); None turns aleatoric alerts off.
        window: inputs in the rate window; None turns the window off.
        window_level: the window's false-alarm level (probability that one in-distribution window fires).
        window_cooldown: inputs before a window episode may resolve (None: the window's length).
        shift: the shift detector: ``"anytime"`` (no false alarm ever with probability 1 - ``shift_delta``),
            ``"change"`` (Shiryaev-Roberts change detection) or None (off).
        shift_delta: the anytime detector's bound on the probability of any false alarm.
        mean_run_length: the change detector's mean run length between false alarms.
        shift_betting: the shift detector's betting functions: ``"mixture"`` (the default: near and far
            shifts), ``"power"`` (fastest on far shifts) or ``"linear"`` (Vovk's simple jumper).
        jump_rate: the share of the shift detector's capital that moves between betting functions before each
            bet, in [0, 1] (default 0.001).
        calibration_correction: True (the default): the window's and the ``"calibration-set"`` shift detector's
            guarantees hold given the models' calibration sets; False: only on average over calibration sets
            (faster alarms, Docs/Statistics.md).
        shift_reference: what the anytime shift detector ranks each input against: ``"calibration-and-stream"``
            (the default: the calibration set and the stream's earlier inputs; P(any false alarm) <=
            ``shift_delta`` on average over calibration sets) or ``"calibration-set"`` (the calibration set
            alone, corrected: the bound holds given the set, alarms come later).
        fusion: ``"automatic"`` (the default: the models' joint calibration when they carry one for exactly
            these layers, from :func:`calibrate_jointly`; otherwise Bonferroni), ``"calibrated"`` (the joint
            calibration, required: the fused p-value is a conformal p-value), ``"bonferroni"`` (valid under any
            dependence between layers, conservative) or ``"cauchy"`` (more powerful when layers agree, valid
            asymptotically).
        primary_layer: the layer (index or name) whose p(y | z) gives entropy and class; None: the last.
        mode: ``"inline"`` or ``"background"``.
        queue_capacity: background queue capacity, in inputs.
        batch_size: background inputs scored together.
        overflow: what a full background queue does with a new input: ``"drop"`` it (counted; :meth:`submit`
            returns False) or ``"reject"`` it (:meth:`submit` raises ``QueueFullError``).
        outputs: what the host passes beside the activations: None, ``"logits"`` or ``"probabilities"`` (a
            classifier's), or ``"prediction"`` (a regression host's prediction of its target; the primary layer's
            model must be a regression model, best one with :meth:`Model.calibrate_disagreement`).
        output_count: elements of one input's outputs (classes), with ``outputs``; 1 (the default) for
            ``"prediction"``.
        on_alert: called with an :class:`Alert` for every alert, on the library's alert thread.
        alerts_path: a JSON-lines file to append alerts to (rotated at 64 MiB, 5 kept).
        log_level: None (off), ``"error"``, ``"warning"``, ``"info"`` or ``"debug"``: the monitor's own
            diagnostics and alerts to stderr.
        logger: a :class:`logging.Logger` that also receives every alert (WARNING; resolved episodes at INFO),
            with the :class:`Alert` as ``record.latentwatch_alert``.
        record_path: record the monitored activations into this recording file (``.lwr``); None: no recording.
        record_rate: share of inputs recorded, in (0, 1].
        sink_buffer_capacity: alerts buffered per sink before drops.
        interval_level: coverage of the prediction interval each assessment of a regression model carries
            (:attr:`Assessment.prediction_interval`; models fitted with calibration targets), in (0, 1); None:
            none.
        disagreement_alpha: with ``outputs="prediction"``: the ``"disagreement"`` alert and flag when the p-value
            of the distance between the host's prediction and the model's is at most this; None: off.

    Example::

        with latentwatch.Monitor(["h1.lwm", "h2.lwm"], on_alert=print) as monitor:
            a = monitor.assess(h1, h2)          # one input: one array per layer
            if a.out_of_distribution:
                ...
    """

    def __init__(
        self,
        models: Union[ModelSpec, Sequence[ModelSpec]],
        *,
        layer_names: Optional[Sequence[Optional[str]]] = None,
        input_alpha: float = 0.01,
        aleatoric_alpha: Optional[float] = 0.01,
        window: Optional[int] = 200,
        window_level: float = 1e-4,
        window_cooldown: Optional[int] = None,
        shift: Optional[str] = "anytime",
        shift_delta: float = 0.01,
        mean_run_length: float = 10000.0,
        shift_betting: str = "mixture",
        jump_rate: float = 0.001,
        calibration_correction: bool = True,
        shift_reference: str = "calibration-and-stream",
        fusion: str = "automatic",
        primary_layer: Union[int, str, None] = None,
        mode: str = "inline",
        queue_capacity: int = 4096,
        batch_size: int = 32,
        overflow: str = "drop",
        outputs: Optional[str] = None,
        output_count: int = 0,
        on_alert: Optional[Callable[[Alert], Any]] = None,
        alerts_path: Union[str, os.PathLike, None] = None,
        log_level: Optional[str] = None,
        logger: Optional[logging.Logger] = None,
        record_path: Union[str, os.PathLike, None] = None,
        record_rate: float = 1.0,
        sink_buffer_capacity: int = 4096,
        interval_level: Optional[float] = 0.9,
        disagreement_alpha: Optional[float] = 0.01,
    ) -> None:
        self._handle: Optional[ctypes.c_void_p] = None
        self._close_lock = threading.Lock()
        if isinstance(models, (Model, str, os.PathLike)):
            models = [models]
        models = list(models)
        if not models:
            raise ConfigurationError("a monitor needs at least one model (one per monitored layer)")
        if len(models) > _capi.LW_MAX_LAYERS:
            raise ConfigurationError(f"{len(models)} models; a monitor takes at most {_capi.LW_MAX_LAYERS} layers")
        loaded = [m if isinstance(m, Model) else load(m) for m in models]
        if layer_names is not None:
            layer_names = list(layer_names)
            if len(layer_names) != len(loaded):
                raise ConfigurationError(f"{len(layer_names)} layer names for {len(loaded)} models")
        names = [
            (layer_names[i] if layer_names is not None and layer_names[i] is not None else m.layer)
            for i, m in enumerate(loaded)
        ]
        self._names: Tuple[str, ...] = tuple(str(n) for n in names)
        self._shapes: Tuple[Tuple[int, ...], ...] = tuple(m.input_shape for m in loaded)
        self._counts: Tuple[int, ...] = tuple(m.input_count for m in loaded)
        self._layer_count = len(loaded)
        if outputs == "prediction" and output_count == 0:
            output_count = 1
        self._output_count = int(output_count) if outputs is not None else 0

        def pick(table: Dict[Any, int], value: Any, what: str) -> int:
            try:
                return table[value]
            except (KeyError, TypeError):
                choices = ", ".join(repr(k) for k in table)
                raise ConfigurationError(f"{what} is {value!r}; use one of {choices}") from None

        c = _capi.lw_monitor_config()
        lib.lw_monitor_config_init_sized(ctypes.byref(c), ctypes.sizeof(c))
        model_ptrs = (ctypes.c_void_p * len(loaded))(*[m._live_handle().value for m in loaded])
        c.layer_count = len(loaded)
        c.models = model_ptrs
        name_bytes = [None if layer_names is None or layer_names[i] is None else str(layer_names[i]).encode("utf-8")
                      for i in range(len(loaded))]
        name_ptrs = (ctypes.c_char_p * len(loaded))(*name_bytes)
        if layer_names is not None:
            c.layer_names = name_ptrs
        if primary_layer is None:
            c.primary_layer = -1
        elif isinstance(primary_layer, str):
            if primary_layer not in self._names:
                raise ConfigurationError(
                    f"primary_layer {primary_layer!r} is not one of the layers {list(self._names)}"
                )
            c.primary_layer = self._names.index(primary_layer)
        else:
            c.primary_layer = int(primary_layer)
        c.input_alpha = float(input_alpha)
        c.aleatoric_alpha = 0.0 if aleatoric_alpha is None else float(aleatoric_alpha)
        if aleatoric_alpha is not None and not 0 < float(aleatoric_alpha) < 1:
            raise ConfigurationError(f"aleatoric_alpha is {aleatoric_alpha}; it must be in (0, 1), or None for off")
        c.window_length = 0 if window is None else int(window)
        if window is not None and int(window) < 1:
            raise ConfigurationError(f"window is {window}; give a length of at least 1, or None for off")
        c.window_cooldown = 0 if window_cooldown is None else int(window_cooldown)
        c.window_level = float(window_level)
        c.shift = pick(_SHIFTS, shift, "shift")
        c.fusion = pick(_FUSIONS, fusion, "fusion")
        c.shift_delta = float(shift_delta)
        c.shift_mean_run_length = float(mean_run_length)
        c.shift_betting = pick(_BETTINGS, shift_betting, "shift_betting")
        c.shift_jump_rate = float(jump_rate)
        c.calibration_correction = 1 if calibration_correction else 0
        c.shift_reference = pick(_REFERENCES, shift_reference, "shift_reference")
        c.mode = pick(_MODES, mode, "mode")
        c.overflow = pick(_OVERFLOWS, overflow, "overflow")
        c.queue_capacity = int(queue_capacity)
        c.batch_size = int(batch_size)
        c.outputs = pick(_OUTPUTS, outputs, "outputs")
        c.output_count = int(output_count)
        c.log_level = pick(_LOG_LEVELS, log_level, "log_level")
        c.sink_buffer_capacity = int(sink_buffer_capacity)
        c.interval_level = 0.0 if interval_level is None else float(interval_level)
        if interval_level is not None and not 0 < float(interval_level) < 1:
            raise ConfigurationError(f"interval_level is {interval_level}; it must be in (0, 1), or None for none")
        c.disagreement_alpha = 0.0 if disagreement_alpha is None else float(disagreement_alpha)
        if disagreement_alpha is not None and not 0 < float(disagreement_alpha) < 1:
            raise ConfigurationError(
                f"disagreement_alpha is {disagreement_alpha}; it must be in (0, 1), or None for off"
            )
        self._callback_state = _CallbackState(on_alert, logger)
        self._c_callback = None
        if on_alert is not None or logger is not None:
            # Kept referenced for the monitor's lifetime: the library calls it until lw_monitor_close returns.
            self._c_callback = _capi.lw_alert_callback(self._callback_state.deliver)
            c.on_alert = self._c_callback
        alerts_b = os.fsencode(alerts_path) if alerts_path is not None else None
        record_b = os.fsencode(record_path) if record_path is not None else None
        c.alerts_path = alerts_b
        c.record_path = record_b
        c.record_rate = float(record_rate)
        self._mode = mode
        self._background = c.mode == _capi.LW_MODE_BACKGROUND
        handle = ctypes.c_void_p()
        check(lib.lw_monitor_create(ctypes.byref(c), ctypes.byref(handle)))
        self._handle = handle
        self._tls = threading.local()
        _open_monitors.add(self)

    # ---- properties --------------------------------------------------------------------------------------------

    @property
    def layer_names(self) -> List[str]:
        """The monitored layers' names, in layer order."""
        return list(self._names)

    @property
    def input_shapes(self) -> List[Tuple[int, ...]]:
        """The shape of one activation of each layer, in layer order."""
        return list(self._shapes)

    @property
    def mode(self) -> str:
        """``"inline"`` or ``"background"``."""
        return self._mode

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._handle is None

    def __repr__(self) -> str:
        layers = ", ".join(f"{n}{shape_str(s)}" for n, s in zip(self._names, self._shapes))
        return f"<latentwatch.Monitor [{layers}] mode={self._mode}{' closed' if self.closed else ''}>"

    # ---- internals ---------------------------------------------------------------------------------------------

    def _live(self) -> ctypes.c_void_p:
        h = self._handle
        if h is None:
            raise MonitorClosedError("the monitor is closed; create a new Monitor to assess more inputs")
        return h

    def _fail(self, status: int, extra: str = "") -> LatentWatchError:
        if status == _capi.LW_ERR_INVALID_HANDLE and self._handle is None:
            return MonitorClosedError("the monitor was closed during the call")
        message = _capi.last_error()
        return error_for_status(status, message + extra)

    def _scratch(self) -> _Scratch:
        s = getattr(self._tls, "s", None)
        if s is None:
            s = _Scratch(self._counts)
            self._tls.s = s
        return s

    def _arrays(self, layers: Sequence[Any], batch: bool) -> Tuple[List[np.ndarray], int, bool]:
        """The layers' arrays as buffers the library reads, the row count, and whether they are float16."""
        L = self._layer_count
        if len(layers) != L:
            raise ShapeError(
                f"the monitor has {L} layer{'s' if L != 1 else ''} ({', '.join(self._names)}): pass one array per "
                f"layer, in that order; got {len(layers)}"
            )
        arrays = [as_float_array(x, f"layer '{self._names[i]}'", allow_float16=True) for i, x in enumerate(layers)]
        half = all(a.dtype == np.float16 for a in arrays)
        if not half:
            arrays = [a.astype(np.float32) if a.dtype == np.float16 else a for a in arrays]
        rows = -1
        for i, a in enumerate(arrays):
            shape, count = self._shapes[i], self._counts[i]
            if batch:
                ok = a.ndim >= 1 and (a.shape[1:] == shape or a.shape[1:] == (count,))
                n = a.shape[0] if ok else -1
                if not ok:
                    forms = f"(n, {', '.join(map(str, shape))})" + (f" or (n, {count})" if len(shape) > 1 else "")
                    raise ShapeError(
                        f"layer '{self._names[i]}' takes a batch of shape {forms}; got shape {shape_str(a.shape)}"
                    )
                if rows >= 0 and n != rows:
                    raise ShapeError(
                        f"layer '{self._names[i]}' has {n} rows; layer '{self._names[0]}' has {rows}: every layer "
                        f"needs one row per input"
                    )
                rows = n
            else:
                if not (a.shape == shape or a.shape == (count,) or a.shape == (1,) + shape or a.shape == (1, count)):
                    several = a.ndim >= 1 and a.shape[1:] in (shape, (count,))
                    raise ShapeError(
                        f"layer '{self._names[i]}' takes one input of shape {shape_str(shape)} ({count} elements); "
                        f"got shape {shape_str(a.shape)}" + (" (use assess_batch for several inputs)" * several)
                    )
                rows = 1
        return arrays, rows, half

    def _outputs(self, outputs: Any, rows: int, inputs: _capi.lw_inputs) -> Optional[np.ndarray]:
        if outputs is None:
            inputs.outputs = None
            inputs.outputs_length = 0
            return None
        if self._output_count == 0:
            raise InvalidArgumentError(
                "outputs were passed, but the monitor was not configured for them: create it with "
                "outputs='logits' or 'probabilities' and output_count, or outputs='prediction'"
            )
        o = as_float_array(outputs, "outputs")
        k = self._output_count
        if o.size != rows * k or (o.ndim > 1 and o.shape[-1] != k):
            want = f"({k},)" if rows == 1 else f"({rows}, {k})"
            raise ShapeError(f"outputs have shape {shape_str(o.shape)}; {rows} input(s) of {k} outputs need {want}")
        inputs.outputs = o.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        inputs.outputs_length = o.size
        return o

    @staticmethod
    def _request_id(request_id: Optional[str]) -> Optional[bytes]:
        if request_id is None:
            return None
        b = str(request_id).encode("utf-8")
        if b"\0" in b:
            raise InvalidArgumentError(f"request_id {request_id!r} contains a NUL character")
        return b

    def _assessment(self, out: _capi.lw_assessment, request_id: Optional[str]) -> Assessment:
        (_, flags, index, fused, entropy, entropy_p, shift, predicted, out_pred, out_conf, out_ent, out_energy,
         n, _) = _HEAD.unpack_from(out)
        per = _LAYER_STRUCTS[n].unpack_from(out, _LAYERS_OFFSET)
        y, spread, spread_p, low, high, host, distance, distance_p = _TAIL.unpack_from(out, _TAIL_OFFSET)
        names = self._names
        if n == 1:
            layers = (_tuple_new(LayerAssessment, (names[0], per[0], per[1])),)
        else:
            layers = tuple([_tuple_new(LayerAssessment, (names[k], per[2 * k], per[2 * k + 1])) for k in range(n)])
        # The same object Assessment(...) builds, without the frozen dataclass's per-field __setattr__ (this runs
        # once per assess call).
        a = _object_new(Assessment)
        a.__dict__.update({
            "index": index,
            "request_id": request_id,
            "flags": _FLAGS[flags] if flags < 32 else Flags(flags),
            "fused_p_value": fused,
            "entropy": entropy,
            "entropy_p_value": None if entropy_p != entropy_p else entropy_p,
            "predicted_label": None if predicted == -1 else predicted,
            "shift_log_evidence": None if shift != shift else shift,
            "layers": layers,
            "output_predicted": None if out_pred == -1 else out_pred,
            "output_confidence": None if out_conf != out_conf else out_conf,
            "output_entropy": None if out_ent != out_ent else out_ent,
            "output_energy": None if out_energy != out_energy else out_energy,
            "status": 0,
            "prediction": None if y != y else y,
            "predictive_spread": None if spread != spread else spread,
            "spread_p_value": None if spread_p != spread_p else spread_p,
            "prediction_interval": None if low != low or high != high else (low, high),
            "host_prediction": None if host != host else host,
            "disagreement_distance": None if distance != distance else distance,
            "disagreement_p_value": None if distance_p != distance_p else distance_p,
        })
        return a

    # ---- assessing ---------------------------------------------------------------------------------------------

    def _point_at(self, layers: Sequence[Any], s: _Scratch) -> Sequence[Any]:
        """Points the thread's ``lw_inputs`` at one input's layers (and sets its dtype); returns the arrays it points
        into, which the caller keeps alive until the library call returns."""
        ptrs = s.layers
        # The common case first: one flat, aligned, C-contiguous float32 array per layer of the layer's size,
        # passed by address with no other check (the library checks lengths and values again).
        if len(layers) == self._layer_count:
            counts = self._counts
            for i, a in enumerate(layers):
                if type(a) is np.ndarray and a.dtype is _F32 and a.ndim == 1 and a.size == counts[i]:
                    flags = a.flags
                    if flags.c_contiguous and flags.aligned:
                        # The address through a writable buffer export is several times cheaper than
                        # __array_interface__ (which builds a dict per call); read-only arrays take the other way.
                        ptrs[i] = (
                            _addressof(_char_from_buffer(a)) if flags.writeable else a.__array_interface__["data"][0]
                        )
                        continue
                break
            else:
                s.inputs.dtype = _capi.LW_DTYPE_FLOAT32
                return layers
        arrays, _, half = self._arrays(layers, batch=False)
        for i, a in enumerate(arrays):
            ptrs[i] = a.__array_interface__["data"][0]  # a.ctypes.data, cheaper
        s.inputs.dtype = _capi.LW_DTYPE_FLOAT16 if half else _capi.LW_DTYPE_FLOAT32
        return arrays

    def assess(self, *layers: Any, outputs: Any = None, request_id: Optional[str] = None) -> Assessment:
        """Assesses one input on the calling thread (``lw_monitor_assess``; either mode).

        Args:
            *layers: one activation per monitored layer, in layer order, each of the layer's input shape (or flat;
                a leading axis of 1 is accepted). float32, or float16 for every layer, pass without a copy.
            outputs: the classifier's outputs for this input (``output_count`` values), when the monitor was
                created with ``outputs=``.
            request_id: the host's id of the input; alerts carry it.

        Returns:
            The :class:`Assessment`.

        Raises:
            ShapeError: the wrong number of layers, or an array of the wrong shape (the message names the
                expected and the actual shape). The stream is untouched; later calls work.
            NonFiniteError: an activation holding NaN or infinity (the input is refused and counted).
            DTypeError: a complex, object or string array (a ``TypeError``).
            MonitorClosedError: the monitor was closed.
        """
        h = self._handle
        if h is None:
            raise MonitorClosedError("the monitor is closed; create a new Monitor to assess more inputs")
        s = getattr(self._tls, "s", None) or self._scratch()
        arrays = self._point_at(layers, s)  # kept alive until the call returns
        keep = None if outputs is None and s.inputs.outputs_length == 0 else self._outputs(outputs, 1, s.inputs)
        rid = None if request_id is None else self._request_id(request_id)
        status = _assess(h, s.inputs_ref, rid, s.out_ref)
        del keep, arrays
        if status != 0:
            raise self._fail(status)
        return self._assessment(s.out, request_id)

    def assess_batch(
        self,
        *layers: Any,
        outputs: Any = None,
        request_ids: Optional[Sequence[Optional[str]]] = None,
    ) -> AssessmentBatch:
        """Assesses n inputs in order on the calling thread (``lw_monitor_assess_batch``; either mode).

        Args:
            *layers: one array per monitored layer, in layer order, each of shape ``(n, *input_shape)`` or
                ``(n, input_count)``. float32 (or float16 for every layer) C-contiguous arrays are read in place.
            outputs: the classifier's outputs, shape ``(n, output_count)``, when configured.
            request_ids: None, or n ids (entries may be None).

        Returns:
            An :class:`AssessmentBatch` of numpy columns. The library writes n ``lw_assessment`` structs into one
            buffer, which is read with a numpy structured dtype (no per-row Python loop).

        Raises:
            ShapeError: the wrong number of layers, or arrays of the wrong shape or of different row counts.
            NonFiniteError: a row holding NaN or infinity. Every row is validated first: one bad row refuses the
                whole batch and nothing is assessed (the message names the rows).
            MonitorClosedError: the monitor was closed.
        """
        h = self._live()
        arrays, n, half = self._arrays(layers, batch=True)
        if n == 0:
            raw = np.zeros(0, dtype=ASSESSMENT_DTYPE)
            return self._batch_from(raw, None)
        inputs = _capi.lw_inputs()
        lib.lw_inputs_init(ctypes.byref(inputs))
        L = self._layer_count
        ptrs = (ctypes.c_void_p * L)(*[a.ctypes.data for a in arrays])
        lengths = (ctypes.c_size_t * L)(*[a.size for a in arrays])
        inputs.dtype = _capi.LW_DTYPE_FLOAT16 if half else _capi.LW_DTYPE_FLOAT32
        inputs.layer_count = L
        inputs.layers = ptrs
        inputs.lengths = lengths
        keep = self._outputs(outputs, n, inputs)
        ids = None
        id_list: Optional[Tuple[Optional[str], ...]] = None
        if request_ids is not None:
            id_list = tuple(None if r is None else str(r) for r in request_ids)
            if len(id_list) != n:
                raise ShapeError(f"{len(id_list)} request ids for {n} inputs")
            ids = (ctypes.c_char_p * n)(*[self._request_id(r) for r in id_list])
        buf = (_capi.lw_assessment * n)()
        raw = np.frombuffer(buf, dtype=ASSESSMENT_DTYPE)
        raw["struct_size"] = _SIZEOF_ASSESSMENT
        status = lib.lw_monitor_assess_batch(h, ctypes.byref(inputs), n, ids, buf)
        del keep
        if status != 0:
            extra = ""
            if status == _capi.LW_ERR_NON_FINITE:
                bad = sorted(
                    set().union(*[np.flatnonzero(~np.isfinite(a.reshape(n, -1)).all(axis=1)).tolist() for a in arrays])
                )
                if bad:
                    extra = f" (rows with NaN or infinity: {bad[:20]}{' ...' if len(bad) > 20 else ''})"
            raise self._fail(status, extra)
        return self._batch_from(raw, id_list)

    def _batch_from(self, raw: np.ndarray, ids: Optional[Tuple[Optional[str], ...]]) -> AssessmentBatch:
        L = self._layer_count
        layers = raw["layers"][:, :L]
        return AssessmentBatch(
            index=raw["index"].copy(),
            flags=raw["flags"].copy(),
            fused_p_value=raw["fused_p_value"].copy(),
            entropy=raw["entropy"].copy(),
            entropy_p_value=raw["entropy_p_value"].copy(),
            shift_log_evidence=raw["shift_log_evidence"].copy(),
            predicted_label=raw["predicted_label"].copy(),
            prediction=raw["prediction"].copy(),
            predictive_spread=raw["predictive_spread"].copy(),
            spread_p_value=raw["spread_p_value"].copy(),
            interval_low=raw["interval_low"].copy(),
            interval_high=raw["interval_high"].copy(),
            host_prediction=raw["host_prediction"].copy(),
            disagreement_distance=raw["disagreement"].copy(),
            disagreement_p_value=raw["disagreement_p_value"].copy(),
            output_predicted=raw["output_predicted"].copy(),
            output_confidence=raw["output_confidence"].copy(),
            output_entropy=raw["output_entropy"].copy(),
            output_energy=raw["output_energy"].copy(),
            layer_surprise=np.ascontiguousarray(layers["surprise"]),
            layer_p_value=np.ascontiguousarray(layers["p_value"]),
            layer_names=self._names,
            request_ids=ids,
            raw=raw,
        )

    def submit(self, *layers: Any, request_id: Optional[str] = None) -> bool:
        """Background mode: validates one input, copies it into the queue and returns at once.

        Returns:
            True when queued; False when the full queue dropped it (``overflow="drop"``; counted in
            ``stats()["dropped"]``).

        Raises:
            QueueFullError: the queue is full and ``overflow="reject"``.
            WrongStateError: the monitor is inline (use :meth:`assess`).
            ShapeError, NonFiniteError, DTypeError: as :meth:`assess`.
        """
        h = self._live()
        s = self._scratch()
        arrays = self._point_at(layers, s)  # kept alive until the call returns
        s.inputs.outputs = None
        s.inputs.outputs_length = 0
        status = lib.lw_monitor_submit(h, s.inputs_ref, self._request_id(request_id), s.accepted_ref)
        if status != 0:
            raise self._fail(status)
        return bool(s.accepted.value)

    def flush(self, timeout: Optional[float] = 10.0) -> None:
        """Waits until every input submitted so far is assessed and every alert raised so far is delivered.

        The GIL is released while waiting, so alert callbacks run meanwhile.

        Args:
            timeout: seconds to wait at most; None waits (practically) forever.

        Raises:
            FlushTimeoutError: the timeout passed first (a ``TimeoutError``); nothing is lost.
            WrongStateError: called from this monitor's alert callback (it would deadlock).
        """
        h = self._live()
        if self._callback_state.inside():
            raise WrongStateError("flush was called from the monitor's own alert callback, where it would deadlock")
        ms = 0xFFFFFFFF if timeout is None else max(0, min(0xFFFFFFFF, int(round(timeout * 1000))))
        status = lib.lw_monitor_flush(h, ms)
        if status == _capi.LW_ERR_WRONG_STATE:
            raise FlushTimeoutError(_capi.last_error())
        if status != 0:
            raise self._fail(status)

    def replace_models(self, models: Sequence[ModelSpec]) -> None:
        """Swaps the models of every layer at once while other threads keep assessing (``lw_monitor_replace_models``):
        a retrained model, a new calibration.

        Every input is assessed by the old models or the new ones, never a mix, and none is lost or assessed twice.
        The window and shift detectors restart on the new calibration; an open alarm episode gets a ``resolved``
        alert. The layers keep their names.

        Args:
            models: one :class:`Model` (or model file path) per layer, in layer order, each taking the layer's
                activation shape.

        Raises:
            ConfigurationError: another number of models, a model of another activation size, or one without
                calibration scores; the old models stay.
        """
        if isinstance(models, (Model, str, os.PathLike)):
            models = [models]
        loaded = [m if isinstance(m, Model) else load(m) for m in models]
        if len(loaded) != self._layer_count:
            raise ConfigurationError(f"{len(loaded)} models for a monitor of {self._layer_count} layers")
        for i, m in enumerate(loaded):
            if m.input_count != self._counts[i]:
                raise ConfigurationError(
                    f"the model for layer {self._names[i]!r} takes {m.input_count} values "
                    f"(shape {shape_str(m.input_shape)}); the layer's activations have {self._counts[i]}"
                )
        handles = (ctypes.c_void_p * len(loaded))(*[m._live_handle().value for m in loaded])
        status = lib.lw_monitor_replace_models(self._live(), handles, len(loaded))
        if status != 0:
            raise self._fail(status)

    def stats(self) -> Dict[str, int]:
        """The monitor's counters.

        Returns:
            A dict with ``layer_count``, ``assessed`` (inline and background), ``refused`` (invalid inputs),
            ``dropped`` (by a full queue), ``queued`` (waiting now), ``alerts`` (delivered to the callback),
            ``replacements`` (times :meth:`replace_models` swapped the models), and ``callback_errors``
            (exceptions raised by ``on_alert`` or the logger, caught and logged).
        """
        h = self._live()
        st = _capi.lw_monitor_stats()
        st.struct_size = ctypes.sizeof(st)
        status = lib.lw_monitor_get_stats(h, ctypes.byref(st))
        if status != 0:
            raise self._fail(status)
        return {
            "layer_count": int(st.layer_count),
            "assessed": int(st.assessed),
            "refused": int(st.refused),
            "dropped": int(st.dropped),
            "queued": int(st.queued),
            "alerts": int(st.alerts),
            "replacements": int(st.replacements),
            "callback_errors": self._callback_state.errors,
        }

    @property
    def callback_errors(self) -> int:
        """Exceptions raised by ``on_alert`` or the logger (caught, logged, counted)."""
        return self._callback_state.errors

    # ---- lifetime ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stops accepting inputs, assesses what is queued, delivers the remaining alerts, flushes the sinks and
        the recorder, and frees the monitor. Idempotent. The GIL is released meanwhile, so callbacks still run.

        Raises:
            WrongStateError: called from this monitor's own alert callback.
        """
        if self._handle is None:
            return
        if self._callback_state.inside():
            raise WrongStateError("close was called from the monitor's own alert callback, where it would deadlock")
        with self._close_lock:
            h, self._handle = self._handle, None
            if h is None:
                return
            status = lib.lw_monitor_close(h)
        _open_monitors.discard(self)
        if status != 0:
            raise error_for_status(status, _capi.last_error())

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_handle", None) is not None:
                if self._callback_state.inside():
                    # Dropped inside its own callback: the library still needs the callback; keep it alive.
                    _leaked_callbacks.append((self._c_callback, self._callback_state))
                    return
                self.close()
        except Exception:
            if getattr(self, "_c_callback", None) is not None:
                _leaked_callbacks.append((self._c_callback, self._callback_state))
