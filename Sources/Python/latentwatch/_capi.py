"""ctypes declarations of the LatentWatch C interface (``latentwatch.h``, ABI version 1).

Every struct mirrors the header field by field, in the same order and with the same C types, so that
``ctypes.sizeof`` equals the C compiler's ``sizeof`` (Tests/PythonTests checks this against gcc). Every function
gets ``argtypes`` and ``restype`` so that ctypes converts and checks arguments.

The library is loaded from, in order:

1. the file named by the environment variable ``LATENTWATCH_LIBRARY``, when it is set;
2. ``latentwatch/_lib/liblatentwatch.so`` inside this package (put there by ``setup.py``'s build step).

Otherwise importing this module raises ``ImportError`` saying how to get the library.

The library is loaded with :class:`ctypes.CDLL`, so every foreign call releases the GIL for its duration: other
Python threads run while a call scores, fits or waits (``lw_monitor_flush``), and the library's own thread can
re-acquire the GIL to run a Python alert callback without deadlocking.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Optional

__all__ = [
    "ABI_VERSION",
    "LIBRARY_PATH",
    "lib",
    "lw_model_info",
    "lw_scores",
    "lw_score_columns",
    "lw_fit_config",
    "lw_activations",
    "lw_alert",
    "lw_alert_callback",
    "lw_monitor_config",
    "lw_inputs",
    "lw_layer_assessment",
    "lw_assessment",
    "lw_monitor_stats",
    "lw_statistics_info",
]

#: The ABI version these declarations describe (``LW_ABI_VERSION`` in the header).
ABI_VERSION = 5

# ---- status codes -------------------------------------------------------------------------------------------------

LW_OK = 0
LW_ERR_INVALID_ARGUMENT = 1
LW_ERR_INVALID_HANDLE = 2
LW_ERR_IO = 3
LW_ERR_MALFORMED_FILE = 4
LW_ERR_UNSUPPORTED = 5
LW_ERR_SHAPE_MISMATCH = 6
LW_ERR_NON_FINITE = 7
LW_ERR_QUEUE_FULL = 8
LW_ERR_SHUT_DOWN = 9
LW_ERR_INVALID_CONFIGURATION = 10
LW_ERR_FIT_FAILED = 11
LW_ERR_BUFFER_TOO_SMALL = 12
LW_ERR_WRONG_STATE = 13
LW_ERR_INTERNAL = 99

# ---- enumerations -------------------------------------------------------------------------------------------------

LW_DTYPE_FLOAT32 = 1
LW_DTYPE_FLOAT16 = 2

LW_MAX_RANK = 8
LW_MAX_LAYERS = 16

LW_POOL_FLATTEN = 0
LW_POOL_GLOBAL_AVERAGE = 1
LW_POOL_MEAN_TOKENS = 2

LW_STATISTICS_SHARD = 0
LW_STATISTICS_MIXTURE_ROUND = 1
LW_STATISTICS_MIXTURE_STEP = 2

LW_ALERT_INPUT = 1
LW_ALERT_ALEATORIC = 2
LW_ALERT_WINDOW = 3
LW_ALERT_SHIFT = 4
LW_ALERT_RESOLVED = 5
LW_ALERT_DISAGREEMENT = 6

LW_SHIFT_OFF = 0
LW_SHIFT_ANYTIME = 1
LW_SHIFT_CHANGE_DETECTION = 2

LW_FUSION_BONFERRONI = 0
LW_FUSION_CAUCHY = 1
LW_FUSION_AUTOMATIC = 2
LW_FUSION_CALIBRATED = 3
LW_NEIGHBOURS_AUTOMATIC = 0
LW_NEIGHBOURS_OFF = 1
LW_NEIGHBOURS_REQUIRED = 2
LW_JOINT_CAUCHY = 0
LW_JOINT_FISHER = 1
LW_BETTING_MIXTURE = 0
LW_BETTING_POWER = 1
LW_BETTING_LINEAR = 2
LW_SHIFT_REFERENCE_CALIBRATION_AND_STREAM = 0
LW_SHIFT_REFERENCE_CALIBRATION_SET = 1

LW_MODE_INLINE = 0
LW_MODE_BACKGROUND = 1

LW_OVERFLOW_DROP_NEWEST = 0
LW_OVERFLOW_REJECT = 1

LW_OUTPUTS_NONE = 0
LW_OUTPUTS_LOGITS = 1
LW_OUTPUTS_PROBABILITIES = 2
LW_OUTPUTS_PREDICTION = 3

LW_LOG_OFF = 0
LW_LOG_ERROR = 1
LW_LOG_WARNING = 2
LW_LOG_INFO = 3
LW_LOG_DEBUG = 4

LW_FLAG_OUT_OF_DISTRIBUTION = 1
LW_FLAG_AMBIGUOUS = 2
LW_FLAG_WINDOW_ALARM = 4
LW_FLAG_SHIFT_ALARM = 8
LW_FLAG_DISAGREEMENT = 16

# ---- structs (same field order and C types as latentwatch.h) --------------------------------------------------------


class lw_model_info(Structure):
    """``struct lw_model_info``: what a model describes."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("input_rank", c_uint32),
        ("input_shape", c_int64 * LW_MAX_RANK),
        ("input_count", c_uint64),
        ("latent_dimension", c_uint64),
        ("component_count", c_uint64),
        ("calibration_count", c_uint64),
        ("fit_samples", c_uint64),
        ("fingerprint", c_uint32),
        ("has_fingerprint", c_uint32),
        ("precision", c_int32),
        ("has_class_labels", c_uint32),
        ("layer", c_char_p),
        ("family", c_char_p),
        ("fit_notes", c_char_p),
        ("posterior_temperature", c_double),
        ("joint_count", c_uint64),
        ("target_bins", c_uint64),
        ("interval_count", c_uint64),
        ("disagreement_count", c_uint64),
        ("neighbour_count", c_uint64),
    ]


class lw_scores(Structure):
    """``struct lw_scores``: the scores of one activation."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_int32),
        ("surprise", c_double),
        ("surprise_p_value", c_double),
        ("entropy", c_double),
        ("entropy_p_value", c_double),
        ("log_density", c_double),
        ("max_posterior", c_double),
        ("mahalanobis", c_double),
        ("relative_mahalanobis", c_double),
        ("predicted_component", c_int64),
        ("predicted_label", c_int64),
        ("prediction", c_double),
        ("predictive_spread", c_double),
        ("spread_p_value", c_double),
        ("neighbour_distance", c_double),
        ("epistemic_p_value", c_double),
    ]


class lw_score_columns(Structure):
    """``struct lw_score_columns``: batch scores written column by column (NULL columns are skipped)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_int32),
        ("surprise", POINTER(c_double)),
        ("surprise_p_value", POINTER(c_double)),
        ("entropy", POINTER(c_double)),
        ("entropy_p_value", POINTER(c_double)),
        ("log_density", POINTER(c_double)),
        ("max_posterior", POINTER(c_double)),
        ("mahalanobis", POINTER(c_double)),
        ("relative_mahalanobis", POINTER(c_double)),
        ("predicted_label", POINTER(c_int64)),
        ("status", POINTER(c_int32)),
        ("prediction", POINTER(c_double)),
        ("predictive_spread", POINTER(c_double)),
        ("spread_p_value", POINTER(c_double)),
        ("neighbour_distance", POINTER(c_double)),
        ("epistemic_p_value", POINTER(c_double)),
    ]


class lw_fit_config(Structure):
    """``struct lw_fit_config``: how ``lw_fit`` fits a model."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("pooling", c_int32),
        ("family", c_char_p),
        ("layer_name", c_char_p),
        ("l2_normalize", c_int32),
        ("precision", c_int32),
        ("pca_components", c_uint32),
        ("pca_variance_fraction", c_double),
        ("calibration_fraction", c_double),
        ("split_seed", c_uint64),
        ("mixture_components", c_uint32),
        ("fit_background", c_uint32),
        ("mixture_seed", c_uint64),
        ("calibrate_posterior", c_int32),
        ("target_bins", c_uint32),
        ("neighbour_rows", c_uint64),
        ("neighbour_cells", c_uint32),
        ("neighbour_probes", c_uint32),
        ("neighbour_index", c_int32),
    ]


class lw_activations(Structure):
    """``struct lw_activations``: rows of activations in memory for ``lw_fit``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("rank", c_uint32),
        ("shape", c_int64 * LW_MAX_RANK),
        ("values", POINTER(c_float)),
        ("length", c_size_t),
        ("count", c_size_t),
        ("labels", POINTER(c_int64)),
        ("targets", POINTER(c_double)),
    ]


class lw_alert(Structure):
    """``struct lw_alert``: one alert as the callback receives it (pointers valid during the callback only)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("kind", c_int32),
        ("kind_name", c_char_p),
        ("index", c_int64),
        ("request_id", c_char_p),
        ("p_value", c_double),
        ("episode", c_int32),
        ("reserved", c_int32),
        ("detail", c_char_p),
        ("time", c_double),
    ]


#: ``typedef void (*lw_alert_callback)(const lw_alert *alert, void *context)``.
lw_alert_callback = CFUNCTYPE(None, POINTER(lw_alert), c_void_p)


class lw_monitor_config(Structure):
    """``struct lw_monitor_config``: layers, alert policy, scoring mode and sinks of a monitor."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("layer_count", c_uint32),
        ("models", POINTER(c_void_p)),
        ("layer_names", POINTER(c_char_p)),
        ("primary_layer", c_int32),
        ("input_alpha", c_double),
        ("aleatoric_alpha", c_double),
        ("window_length", c_uint32),
        ("window_cooldown", c_uint32),
        ("window_level", c_double),
        ("shift", c_int32),
        ("fusion", c_int32),
        ("shift_delta", c_double),
        ("shift_mean_run_length", c_double),
        ("mode", c_int32),
        ("overflow", c_int32),
        ("queue_capacity", c_uint32),
        ("batch_size", c_uint32),
        ("outputs", c_int32),
        ("output_count", c_uint32),
        ("on_alert", lw_alert_callback),
        ("on_alert_context", c_void_p),
        ("alerts_path", c_char_p),
        ("log_level", c_int32),
        ("sink_buffer_capacity", c_uint32),
        ("record_path", c_char_p),
        ("record_rate", c_double),
        ("shift_betting", c_int32),
        ("calibration_correction", c_int32),
        ("shift_jump_rate", c_double),
        ("shift_reference", c_int32),
        ("reserved", c_int32),
        ("interval_level", c_double),
        ("disagreement_alpha", c_double),
    ]


class lw_inputs(Structure):
    """``struct lw_inputs``: one buffer per monitored layer (and optionally the classifier's outputs)."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("dtype", c_int32),
        ("layer_count", c_uint32),
        ("reserved", c_uint32),
        ("layers", POINTER(c_void_p)),
        ("lengths", POINTER(c_size_t)),
        ("outputs", POINTER(c_float)),
        ("outputs_length", c_size_t),
    ]


class lw_layer_assessment(Structure):
    """``struct lw_layer_assessment``: one layer's surprise and its p-value."""

    _fields_ = [
        ("surprise", c_double),
        ("p_value", c_double),
    ]


class lw_assessment(Structure):
    """``struct lw_assessment``: what the monitor concluded about one input."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("index", c_int64),
        ("fused_p_value", c_double),
        ("entropy", c_double),
        ("entropy_p_value", c_double),
        ("shift_log_evidence", c_double),
        ("predicted_label", c_int64),
        ("output_predicted", c_int64),
        ("output_confidence", c_double),
        ("output_entropy", c_double),
        ("output_energy", c_double),
        ("layer_count", c_uint32),
        ("reserved", c_uint32),
        ("layers", lw_layer_assessment * LW_MAX_LAYERS),
        ("prediction", c_double),
        ("predictive_spread", c_double),
        ("spread_p_value", c_double),
        ("interval_low", c_double),
        ("interval_high", c_double),
        ("host_prediction", c_double),
        ("disagreement", c_double),
        ("disagreement_p_value", c_double),
    ]


class lw_monitor_stats(Structure):
    """``struct lw_monitor_stats``: a monitor's counters."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("layer_count", c_uint32),
        ("assessed", c_uint64),
        ("refused", c_uint64),
        ("dropped", c_uint64),
        ("queued", c_uint64),
        ("alerts", c_uint64),
        ("replacements", c_uint64),
    ]


class lw_statistics_info(Structure):
    """``struct lw_statistics_info``: what statistics, a mixture round or an E-step hold."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("input_rank", c_uint32),
        ("input_shape", c_int64 * LW_MAX_RANK),
        ("samples", c_uint64),
        ("range_count", c_uint64),
        ("first_row", c_int64),
        ("end_row", c_int64),
        ("layer", c_char_p),
        ("family", c_char_p),
        ("kind", c_int32),
        ("round", c_int32),
        ("converged", c_int32),
        ("finished", c_int32),
        ("log_likelihood", c_double),
        ("fingerprint", c_char_p),
    ]


#: Every struct of the header, by its C name (the struct-size test iterates over these).
STRUCTS = {
    "lw_model_info": lw_model_info,
    "lw_scores": lw_scores,
    "lw_score_columns": lw_score_columns,
    "lw_fit_config": lw_fit_config,
    "lw_activations": lw_activations,
    "lw_alert": lw_alert,
    "lw_monitor_config": lw_monitor_config,
    "lw_inputs": lw_inputs,
    "lw_layer_assessment": lw_layer_assessment,
    "lw_assessment": lw_assessment,
    "lw_monitor_stats": lw_monitor_stats,
    "lw_statistics_info": lw_statistics_info,
}

# ---- loading -------------------------------------------------------------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))
#: Where ``setup.py`` puts the library inside the package.
BUNDLED_LIBRARY = os.path.join(_HERE, "_lib", "liblatentwatch.so")

_REMEDY = (
    "Install the package with its library (`pip install ./Sources/Python` from the LatentWatch repository builds "
    "or copies it; set LATENTWATCH_LIBRARY=/path/to/libLatentWatchC.so during the install to use a library you "
    "built), or point the environment variable LATENTWATCH_LIBRARY at a built liblatentwatch.so "
    "(`swift build -c release --product LatentWatchC` writes .build/release/libLatentWatchC.so)."
)


def _find_library() -> str:
    """The path of the library to load: $LATENTWATCH_LIBRARY, else the bundled one; ImportError otherwise."""
    env = os.environ.get("LATENTWATCH_LIBRARY")
    if env:
        if os.path.isfile(env):
            return env
        raise ImportError(f"LATENTWATCH_LIBRARY is {env!r}, which is not a file. {_REMEDY}")
    if os.path.isfile(BUNDLED_LIBRARY):
        return BUNDLED_LIBRARY
    raise ImportError(
        f"the LatentWatch library is not bundled at {BUNDLED_LIBRARY} and LATENTWATCH_LIBRARY is not set. {_REMEDY}"
    )


def _load(path: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(
            f"cannot load the LatentWatch library {path}: {e}. It needs glibc 2.35 or later, libstdc++ of GCC 12 "
            f"or later, libopenblas, liblapacke, libzstd and zlib (Debian: apt-get install libopenblas0 libzstd1 zlib1g). {_REMEDY}"
        ) from e


def _declare(lib: ctypes.CDLL) -> None:
    """Sets argtypes and restype of every function of the header."""
    P = POINTER
    handle_out = P(c_void_p)
    table = {
        "lw_abi_version": (c_uint32, []),
        "lw_version": (c_char_p, []),
        "lw_status_name": (c_char_p, [c_int]),
        "lw_last_error": (c_char_p, []),
        "lw_last_status": (c_int, []),
        "lw_model_load": (c_int, [c_char_p, handle_out]),
        "lw_model_load_bytes": (c_int, [c_void_p, c_size_t, handle_out]),
        "lw_model_free": (c_int, [c_void_p]),
        "lw_model_get_info": (c_int, [c_void_p, P(lw_model_info)]),
        "lw_model_class_labels": (c_int, [c_void_p, P(c_int64), c_size_t, P(c_size_t)]),
        "lw_model_score": (c_int, [c_void_p, c_void_p, c_size_t, P(lw_scores)]),
        "lw_model_score_batch": (c_int, [c_void_p, c_void_p, c_size_t, c_size_t, P(lw_score_columns)]),
        "lw_model_prediction_interval": (c_int, [c_void_p, c_double, c_double, c_double, P(c_double), P(c_double)]),
        "lw_fit_config_init": (None, [P(lw_fit_config)]),
        "lw_fit_config_init_sized": (None, [P(lw_fit_config), c_size_t]),
        "lw_activations_init": (None, [P(lw_activations)]),
        "lw_fit": (c_int, [P(lw_activations), P(lw_activations), P(lw_fit_config), handle_out]),
        "lw_calibrate_jointly": (
            c_int,
            [POINTER(c_void_p), POINTER(P(lw_activations)), c_size_t, P(lw_fit_config), c_int32, POINTER(c_void_p)],
        ),
        "lw_calibrate_disagreement": (
            c_int, [c_void_p, P(lw_activations), POINTER(c_double), c_size_t, POINTER(c_void_p)]
        ),
        "lw_model_write": (c_int, [c_void_p, c_char_p, c_int32, c_int32]),
        "lw_model_encode": (c_int, [c_void_p, c_int32, c_int32, c_void_p, c_size_t, P(c_size_t)]),
        "lw_monitor_config_init": (None, [P(lw_monitor_config)]),
        "lw_monitor_config_init_sized": (None, [P(lw_monitor_config), c_size_t]),
        "lw_monitor_create": (c_int, [P(lw_monitor_config), handle_out]),
        "lw_inputs_init": (None, [P(lw_inputs)]),
        "lw_monitor_assess": (c_int, [c_void_p, P(lw_inputs), c_char_p, P(lw_assessment)]),
        "lw_monitor_assess_batch": (c_int, [c_void_p, P(lw_inputs), c_size_t, P(c_char_p), P(lw_assessment)]),
        "lw_monitor_submit": (c_int, [c_void_p, P(lw_inputs), c_char_p, P(c_int32)]),
        "lw_monitor_flush": (c_int, [c_void_p, c_uint32]),
        "lw_monitor_get_stats": (c_int, [c_void_p, P(lw_monitor_stats)]),
        "lw_monitor_close": (c_int, [c_void_p]),
        "lw_monitor_replace_models": (c_int, [c_void_p, P(c_void_p), c_uint32]),
        "lw_statistics_gather": (c_int, [P(lw_activations), P(lw_fit_config), c_int64, handle_out]),
        "lw_statistics_gather_targets": (
            c_int, [P(lw_activations), P(c_double), c_size_t, P(lw_fit_config), c_int64, handle_out]
        ),
        "lw_statistics_merge": (c_int, [c_void_p, c_void_p]),
        "lw_statistics_load": (c_int, [c_char_p, handle_out]),
        "lw_statistics_load_bytes": (c_int, [c_void_p, c_size_t, handle_out]),
        "lw_statistics_write": (c_int, [c_void_p, c_char_p]),
        "lw_statistics_encode": (c_int, [c_void_p, c_void_p, c_size_t, P(c_size_t)]),
        "lw_statistics_get_info": (c_int, [c_void_p, P(lw_statistics_info)]),
        "lw_statistics_fit": (c_int, [c_void_p, P(lw_activations), handle_out]),
        "lw_statistics_free": (c_int, [c_void_p]),
        "lw_mixture_start": (c_int, [c_void_p, handle_out]),
        "lw_mixture_expectation": (c_int, [c_void_p, P(lw_activations), c_int64, handle_out]),
        "lw_mixture_advance": (c_int, [c_void_p, c_void_p, handle_out]),
    }
    for name, (restype, argtypes) in table.items():
        try:
            f = getattr(lib, name)
        except AttributeError as e:
            raise ImportError(f"the LatentWatch library at {lib._name} has no function {name}: it is not "
                              f"liblatentwatch.so, or is too old for this package. {_REMEDY}") from e
        f.restype = restype
        f.argtypes = argtypes


LIBRARY_PATH: str = _find_library()
lib: ctypes.CDLL = _load(LIBRARY_PATH)
_declare(lib)

_library_abi = lib.lw_abi_version()
if _library_abi < ABI_VERSION:
    raise ImportError(
        f"the LatentWatch library at {LIBRARY_PATH} has ABI version {_library_abi}; this package needs "
        f"{ABI_VERSION} or later. {_REMEDY}"
    )


def library_version() -> str:
    """The loaded library's version string (``lw_version()``)."""
    return lib.lw_version().decode("utf-8")


def last_error() -> str:
    """``lw_last_error()`` of this thread, decoded."""
    raw: Optional[bytes] = lib.lw_last_error()
    return raw.decode("utf-8", "replace") if raw else ""


def status_name(status: int) -> str:
    """``lw_status_name(status)``, decoded."""
    return lib.lw_status_name(status).decode("ascii")
