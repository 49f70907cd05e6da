"""Compatibility module: the sidecar client now lives in the latentwatch package as ``latentwatch.sidecar``.

New code should use ``from latentwatch.sidecar import Client`` (``pip install ./Sources/Python``). This module
re-exports that client under its old name. When the package cannot be imported (numpy or its native library
missing), it loads the package's ``sidecar.py`` and ``_types.py`` alone, so the client keeps working with the
standard library only, as before:

    from latentwatch_client import Client
    with Client(path="latentwatch.sock") as c:
        rows = c.observe([h1, h2])           # one input: one flat sequence per layer
        print(rows[0].fused_p_value, rows[0].flags)
"""

from __future__ import annotations

import importlib
import os
import sys
import types

_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Python", "latentwatch")


def _standalone():
    """``sidecar.py`` of the package source tree, imported without the package's ``__init__`` (no numpy, no
    native library): its relative imports resolve inside a private package that has the same folder."""
    name = "_latentwatch_sidecar_only"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [_PACKAGE_DIR]  # type: ignore[attr-defined]
        sys.modules[name] = pkg
    return importlib.import_module(name + ".sidecar")


try:  # an installed package
    from latentwatch import sidecar as _sidecar
except ImportError:
    try:  # the package in this repository (needs numpy and its library, like any import of latentwatch)
        if os.path.dirname(_PACKAGE_DIR) not in sys.path:
            sys.path.insert(0, os.path.dirname(_PACKAGE_DIR))
        from latentwatch import sidecar as _sidecar
    except ImportError:  # standard library only
        _sidecar = _standalone()

Client = _sidecar.Client
Layer = _sidecar.Layer
Assessment = _sidecar.Assessment
Ack = _sidecar.Ack
ServerError = _sidecar.ServerError
ProtocolError = _sidecar.ProtocolError
FLAGS = _sidecar.FLAGS
PROTOCOL_VERSION = _sidecar.PROTOCOL_VERSION
MAGIC = _sidecar.MAGIC
HEADER = _sidecar.HEADER
T_HELLO, T_OBSERVE, T_SYNC, T_BYE = _sidecar.T_HELLO, _sidecar.T_OBSERVE, _sidecar.T_SYNC, _sidecar.T_BYE
T_WELCOME, T_ASSESSMENT, T_ACK, T_ERROR = (
    _sidecar.T_WELCOME, _sidecar.T_ASSESSMENT, _sidecar.T_ACK, _sidecar.T_ERROR,
)
F_REPLY, F_HALF = _sidecar.F_REPLY, _sidecar.F_HALF
ERROR_NAMES = _sidecar.ERROR_NAMES
is_nan = _sidecar.is_nan

__all__ = ["Client", "Layer", "Assessment", "Ack", "ServerError", "ProtocolError", "FLAGS", "PROTOCOL_VERSION"]
