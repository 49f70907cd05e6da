"""Conversion of host arrays to the buffers the C library reads, and the calls' error checking."""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from . import _capi
from ._errors import DTypeError, error_for_status

_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)


def check(status: int) -> None:
    """Raises the exception for a failed call's status with this thread's ``lw_last_error()`` message."""
    if status != 0:
        raise error_for_status(status, _capi.last_error())


def as_float_array(x: Any, what: str, allow_float16: bool = False) -> np.ndarray:
    """``x`` as a C-contiguous, aligned, native-order float32 array (or float16 when allowed).

    A float32 array that is already C-contiguous passes without a copy (as does float16 with
    ``allow_float16``). Other real dtypes (float64, float16, integers, bool) are converted, which copies; so are
    non-contiguous or byte-swapped arrays. Complex, object, string and datetime arrays raise
    :class:`DTypeError` (a ``TypeError``): they cannot be converted to float32 without losing meaning.
    """
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as e:  # ragged lists, objects numpy cannot take
            raise DTypeError(f"{what} cannot be read as a numeric array: {e}") from e
    dt = x.dtype
    if dt == _F32:
        target = _F32
    elif allow_float16 and dt == _F16:
        target = _F16
    elif dt.kind in "fiub" and dt.kind != "c":
        target = _F32
    else:
        raise DTypeError(
            f"{what} has dtype {dt}; activations must be real numbers (float32 passes without a copy; "
            f"float16, float64, integers and bool are converted to float32, which copies)"
        )
    if x.flags.c_contiguous and x.flags.aligned and x.dtype == target:
        return x
    return np.require(x, dtype=target, requirements="CA")


def shape_str(shape: Tuple[int, ...]) -> str:
    """A shape as Python writes it, ``(128,)`` or ``(n, 64, 7, 7)``."""
    return str(tuple(shape))


class OwnedHandle:
    """What owns a library handle (``_handle``, freed by the library function named ``_free``) under ``_lock``:
    :meth:`close`, the context manager, and freeing on garbage collection."""

    __slots__ = ()
    _free = ""

    def close(self) -> None:
        """Frees the library's object now (monitors built on a model keep their own reference). Idempotent."""
        with self._lock:
            h, self._handle = self._handle, None
        if h is not None:
            getattr(_capi.lib, self._free)(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass
