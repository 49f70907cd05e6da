"""Exceptions of the latentwatch package.

Every failure of the C library becomes a :class:`LatentWatchError` whose ``status`` is the library's status code,
``status_name`` its name (``"LW_ERR_SHAPE_MISMATCH"``) and whose message is ``lw_last_error()``: what went wrong,
with which input, and how to remedy it. Each status has a subclass that also derives from the matching built-in
exception, so ``except ValueError`` catches a wrong shape or a NaN and ``except OSError`` a file that cannot be
read. Checks the package makes in Python before calling the library raise the same classes.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
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
    "error_for_status",
]

_STATUS_NAMES = {
    0: "LW_OK",
    1: "LW_ERR_INVALID_ARGUMENT",
    2: "LW_ERR_INVALID_HANDLE",
    3: "LW_ERR_IO",
    4: "LW_ERR_MALFORMED_FILE",
    5: "LW_ERR_UNSUPPORTED",
    6: "LW_ERR_SHAPE_MISMATCH",
    7: "LW_ERR_NON_FINITE",
    8: "LW_ERR_QUEUE_FULL",
    9: "LW_ERR_SHUT_DOWN",
    10: "LW_ERR_INVALID_CONFIGURATION",
    11: "LW_ERR_FIT_FAILED",
    12: "LW_ERR_BUFFER_TOO_SMALL",
    13: "LW_ERR_WRONG_STATE",
    99: "LW_ERR_INTERNAL",
}


class LatentWatchError(Exception):
    """A call into LatentWatch failed.

    Attributes:
        status: the C library's status code (``LW_ERR_*``, for example 6 for a shape mismatch).
        status_name: the code's name, for example ``"LW_ERR_SHAPE_MISMATCH"``.
        message: what went wrong and how to remedy it (the library's ``lw_last_error()`` text, or the
            package's own message for checks made in Python).
    """

    #: The status code this class stands for (subclasses set it).
    default_status: int = 99

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        self.status: int = self.default_status if status is None else int(status)
        self.status_name: str = _STATUS_NAMES.get(self.status, "LW_ERR_UNKNOWN")
        self.message: str = message
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} [{self.status_name}]"

    def __reduce__(self):  # keeps pickling (for multiprocessing) working with the extra argument
        return (type(self), (self.message, self.status))


class InvalidArgumentError(LatentWatchError, ValueError):
    """A null pointer, a zero or mismatched length, an unknown enum value (``LW_ERR_INVALID_ARGUMENT``)."""

    default_status = 1


class InvalidHandleError(LatentWatchError, RuntimeError):
    """A model or monitor handle that was freed or never came from the library (``LW_ERR_INVALID_HANDLE``)."""

    default_status = 2


class LatentWatchIOError(LatentWatchError, OSError):
    """A file could not be opened, read or written (``LW_ERR_IO``)."""

    default_status = 3


class ModelFileError(LatentWatchError, ValueError):
    """Bytes that are not a valid model file: truncated, damaged, implausible (``LW_ERR_MALFORMED_FILE``)."""

    default_status = 4


class UnsupportedModelError(ModelFileError):
    """A model file of a newer format, or needing a feature this library lacks (``LW_ERR_UNSUPPORTED``)."""

    default_status = 5


class ShapeError(LatentWatchError, ValueError):
    """An activation or output of the wrong shape or length, or the wrong number of layers
    (``LW_ERR_SHAPE_MISMATCH``)."""

    default_status = 6


class NonFiniteError(LatentWatchError, ValueError):
    """An activation or output holding NaN or infinity (``LW_ERR_NON_FINITE``)."""

    default_status = 7


class QueueFullError(LatentWatchError, RuntimeError):
    """The background queue is full and the overflow policy is ``"reject"`` (``LW_ERR_QUEUE_FULL``)."""

    default_status = 8


class MonitorClosedError(LatentWatchError, RuntimeError):
    """The monitor has been closed (``LW_ERR_SHUT_DOWN``)."""

    default_status = 9


class ConfigurationError(LatentWatchError, ValueError):
    """A configuration the library cannot use: unknown family, alpha outside (0, 1), no layers
    (``LW_ERR_INVALID_CONFIGURATION``)."""

    default_status = 10


class FitError(LatentWatchError, RuntimeError):
    """Fitting failed: too little data, a class with too few rows, a covariance that cannot be factorised
    (``LW_ERR_FIT_FAILED``)."""

    default_status = 11


class BufferTooSmallError(LatentWatchError, RuntimeError):
    """An output buffer was too small (``LW_ERR_BUFFER_TOO_SMALL``); the package sizes its buffers, so this is a bug."""

    default_status = 12


class WrongStateError(LatentWatchError, RuntimeError):
    """The call needs a monitor in another mode (``submit`` on an inline monitor), or was made from an alert
    callback where it would deadlock (``LW_ERR_WRONG_STATE``)."""

    default_status = 13


class FlushTimeoutError(WrongStateError, TimeoutError):
    """``Monitor.flush`` timed out before everything was assessed and delivered; nothing was lost."""

    default_status = 13


class InternalError(LatentWatchError, RuntimeError):
    """An internal error of the library (``LW_ERR_INTERNAL``); please report it with its message."""

    default_status = 99


class DTypeError(LatentWatchError, TypeError):
    """An array whose dtype cannot be converted to float32 without losing meaning (complex, object, strings).

    Raised by the package before calling the library; ``status`` is ``LW_ERR_INVALID_ARGUMENT``.
    """

    default_status = 1


_BY_STATUS: Dict[int, Type[LatentWatchError]] = {
    1: InvalidArgumentError,
    2: InvalidHandleError,
    3: LatentWatchIOError,
    4: ModelFileError,
    5: UnsupportedModelError,
    6: ShapeError,
    7: NonFiniteError,
    8: QueueFullError,
    9: MonitorClosedError,
    10: ConfigurationError,
    11: FitError,
    12: BufferTooSmallError,
    13: WrongStateError,
    99: InternalError,
}


def error_for_status(status: int, message: str) -> LatentWatchError:
    """The exception for a status code and message (``LatentWatchError`` itself for codes this version lacks)."""
    cls = _BY_STATUS.get(status, LatentWatchError)
    return cls(message or f"call failed with status {status}", status)
