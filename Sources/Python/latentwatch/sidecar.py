"""Client of the LatentWatch sidecar (``latentwatch serve``), standard library only.

The protocol is Docs/WireProtocol.md. numpy arrays are accepted when numpy is installed, but not needed: plain
sequences of floats work too. The client returns the same :class:`~latentwatch.Assessment` as the in-process
:class:`latentwatch.Monitor`, and has the monitor's ``assess``/``submit``/``flush``/``close`` methods, so host code
moves between monitoring in process and through the sidecar by changing the line that creates the monitor::

    from latentwatch.sidecar import Client
    with Client(path="latentwatch.sock") as c:       # or: latentwatch.Monitor([...]) in process
        print(c.layers)                             # [Layer(name='h1', elements=128, model_id=...), ...]
        a = c.assess(h1, h2)                        # one input: one flat sequence per layer -> Assessment
        rows = c.observe([h1_batch, h2_batch])      # several inputs -> [Assessment, ...]
        print(rows[0].fused_p_value, rows[0].flags)
        c.send([h1_batch, h2_batch])                # fire-and-forget; acknowledged later
        print(c.sync())                             # Ack(through=..., assessed=..., ...)
"""

from __future__ import annotations

import math
import socket
import struct
import sys
from array import array
from collections import namedtuple
from typing import Any, List, Optional, Sequence, Tuple

from ._types import Assessment, Flags, LayerAssessment

__all__ = [
    "Client",
    "Layer",
    "Assessment",
    "Ack",
    "ServerError",
    "ProtocolError",
    "FLAGS",
    "PROTOCOL_VERSION",
]

PROTOCOL_VERSION = (1, 2)
MAGIC = b"LWP1"
HEADER = struct.Struct("<IBBH")
T_HELLO, T_OBSERVE, T_SYNC, T_BYE = 0x01, 0x10, 0x11, 0x12
T_WELCOME, T_ASSESSMENT, T_ACK, T_ERROR = 0x81, 0x82, 0x83, 0x84
F_REPLY, F_HALF, F_PREDICTIONS = 1, 2, 4
#: Flag bits by value, as lower-case names (the names :attr:`Assessment.flag_names` returns).
FLAGS = {1: "out_of_distribution", 2: "ambiguous", 4: "window_alarm", 8: "shift_alarm", 16: "disagreement"}
ERROR_NAMES = {
    1: "handshakeRequired", 2: "unsupportedVersion", 3: "unauthorized", 4: "frameTooLarge", 5: "unknownType",
    6: "malformedFrame", 7: "shapeMismatch", 8: "layerCountMismatch", 9: "sequenceNotIncreasing",
    10: "tooManyRows", 11: "overloaded", 12: "shuttingDown", 13: "slowConsumer",
}
_ROW = struct.Struct("<BBHiQddddd")
#: A row's prediction fields (ASSESSMENT flag bit 0, protocol 1.1): prediction, spread, spread p, interval.
_PREDICTION = struct.Struct("<ddddd")
A_PREDICTION = 1
#: A row's host-prediction fields (ASSESSMENT flag bit 1, protocol 1.2): host prediction, disagreement, its p.
_HOST = struct.Struct("<ddd")
A_HOST = 2

#: One monitored layer as the server's WELCOME describes it.
Layer = namedtuple("Layer", "name elements model_id")
#: An ACK: every OBSERVE with sequence <= ``through`` was handled; counts of this connection.
Ack = namedtuple("Ack", "through assessed dropped rejected sync")


class ServerError(Exception):
    """An ERROR frame from the server.

    Attributes:
        code: the protocol's error code; ``name`` its name (for example ``"shapeMismatch"``).
        message: the server's explanation.
        sequence: the OBSERVE frame it names (0 for none).
        fatal: True when the server closes the connection after it.
    """

    def __init__(self, code: int, message: str, sequence: int, fatal: bool) -> None:
        self.code, self.message, self.sequence, self.fatal = code, message, sequence, fatal
        self.name = ERROR_NAMES.get(code, f"code{code}")
        super().__init__(f"{message} [{self.name}]")


class ProtocolError(Exception):
    """The server sent something this client does not understand, or closed the connection."""


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 0xFFFF:
        raise ValueError("string over 65535 bytes")
    return struct.pack("<H", len(b)) + b


def _float32_bytes(values: Any, expected: int) -> Tuple[bytes, int]:
    """Returns (bytes, rows) for a numpy array or a (nested) sequence of floats of width ``expected``."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(values, np.ndarray):
        a = np.ascontiguousarray(values, dtype="<f4")
        if a.ndim == 1:
            a = a.reshape(1, -1) if a.size == expected else a.reshape(-1, expected) if a.size % expected == 0 else a
        elif a.ndim > 2 and a.shape[0] > 0 and a[0].size == expected:
            a = a.reshape(a.shape[0], expected)
        if a.ndim != 2 or a.shape[1] != expected:
            raise ValueError(f"expected rows of {expected} values, got shape {values.shape}")
        return a.tobytes(), a.shape[0]
    flat = array("f")
    seq = list(values)
    if seq and isinstance(seq[0], (list, tuple, array)) or (np is not None and seq and isinstance(seq[0], np.ndarray)):
        for row in seq:
            row = list(row)
            if len(row) != expected:
                raise ValueError(f"expected rows of {expected} values, got a row of {len(row)}")
            flat.extend(float(v) for v in row)
    else:
        flat.extend(float(v) for v in seq)
    if len(flat) == 0 or len(flat) % expected != 0:
        raise ValueError(f"expected a multiple of {expected} values, got {len(flat)}")
    if sys.byteorder != "little":
        flat.byteswap()
    return flat.tobytes(), len(flat) // expected


def _optional(x: float) -> Optional[float]:
    return None if x != x else x


class Client:
    """One connection to ``latentwatch serve`` over a Unix socket (``path=``) or loopback TCP (``host=``, ``port=``).

    Args:
        path: the server's Unix socket.
        host: the server's TCP host (default 127.0.0.1), with ``port``.
        port: the server's TCP port.
        token: the bearer token, when the server has one.
        name: this client's name, shown in the server's logs.
        timeout: socket timeout in seconds (None: block).

    Raises:
        ServerError: the server refused the handshake (for example ``unauthorized``).
        OSError: the server cannot be reached.
    """

    def __init__(self, path: Optional[str] = None, host: Optional[str] = None, port: Optional[int] = None,
                 token: str = "", name: str = "python", timeout: Optional[float] = 30.0) -> None:
        if path is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = path
        elif port is not None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            address = (host or "127.0.0.1", port)
        else:
            raise ValueError("give path= (Unix socket) or port= (TCP)")
        self._sock.settimeout(timeout)
        self._sock.connect(address)
        self._next_sequence = 1
        self._sync_token = 0
        self.last_ack: Optional[Ack] = None
        self.errors: List[ServerError] = []
        hello = MAGIC + struct.pack("<HH", *PROTOCOL_VERSION) + _string(token) + _string(name)
        self._write(T_HELLO, 0, hello)
        t, _, body = self._read_frame()
        if t == T_ERROR:
            err = self._error(body)
            self.close()
            raise err
        if t != T_WELCOME:
            raise ProtocolError(f"expected WELCOME, got frame type {t:#x}")
        self.version, self.max_frame, self.max_rows, self.ack_every, self.layers = self._welcome(body)

    # -- the in-process Monitor's interface ---------------------------------------------------------------------

    @property
    def layer_names(self) -> List[str]:
        """The server's layer names, in layer order (as :attr:`latentwatch.Monitor.layer_names`)."""
        return [layer.name for layer in self.layers]

    def assess(self, *layers: Any, outputs: Any = None, request_id: Optional[str] = None) -> Assessment:
        """Assesses one input, like :meth:`latentwatch.Monitor.assess`: one array or sequence per layer.

        A refused input (NaN or infinity) comes back with ``status`` 1 rather than raising. ``outputs`` is a
        regression host's prediction of the input (one number; protocol 1.2, a server of a regression model); the
        protocol carries no classifier outputs.
        """
        predictions = None
        if outputs is not None:
            np = sys.modules.get("numpy")
            if np is not None and isinstance(outputs, (np.ndarray, np.generic)):
                values = [float(v) for v in np.asarray(outputs).reshape(-1)]
            elif isinstance(outputs, (int, float)):
                values = [float(outputs)]
            else:
                values = [float(v) for v in outputs]
            if len(values) != 1:
                raise ValueError(
                    "the sidecar protocol carries a regression host's prediction (one number per input), not a "
                    f"classifier's outputs; got {len(values)} values"
                )
            predictions = values
        rows = self.observe(list(layers), request_ids=None if request_id is None else [request_id],
                            predictions=predictions)
        if len(rows) != 1:
            raise ValueError(f"assess takes one input per layer; the arrays held {len(rows)} inputs (use observe)")
        return rows[0]

    def submit(self, *layers: Any, request_id: Optional[str] = None) -> bool:
        """Sends one input without waiting for its assessment (like a background monitor's ``submit``).

        Returns True; the server's ACKs (see :meth:`sync`) count what it assessed, dropped or rejected.
        """
        self.send(list(layers), None if request_id is None else [request_id])
        return True

    def flush(self, timeout: Optional[float] = None) -> Ack:
        """Waits until the server has handled everything sent so far (:meth:`sync`); ``timeout`` is ignored
        beyond the socket's own timeout."""
        return self.sync()

    # -- the protocol ---------------------------------------------------------------------------------------------

    def observe(self, layers: Sequence[Any], request_ids: Optional[Sequence[Optional[str]]] = None,
                predictions: Any = None) -> List[Assessment]:
        """Sends inputs (one entry per layer: a flat sequence for one input, rows, or a numpy array) and
        returns their assessments, one :class:`~latentwatch.Assessment` per input. ``predictions``: the host
        model's prediction of each input (protocol 1.2; a server of a regression model then fills
        ``host_prediction``, ``disagreement_distance`` and ``disagreement_p_value``)."""
        ids = list(request_ids or [])
        seq = self.send(layers, request_ids, reply=True, predictions=predictions)
        while True:
            t, flags, body = self._read_frame()
            if t == T_ASSESSMENT:
                s, rows = self._assessment(body, ids, flags)
                if s == seq:
                    return rows
            elif not self._side_frame(t, flags, body, seq):
                raise ProtocolError(f"unexpected frame type {t:#x}")

    def send(self, layers: Sequence[Any], request_ids: Optional[Sequence[Optional[str]]] = None,
             reply: bool = False, predictions: Any = None) -> int:
        """Sends inputs without waiting; returns the frame's sequence number."""
        if len(layers) != len(self.layers):
            raise ValueError(
                f"the server monitors {len(self.layers)} layers ({[l.name for l in self.layers]}), got {len(layers)}"
            )
        blocks, rows = [], None
        for spec, values in zip(self.layers, layers):
            data, n = _float32_bytes(values, spec.elements)
            if rows is not None and n != rows:
                raise ValueError(f"layer {spec.name} has {n} inputs, the first layer {rows}")
            rows = n
            blocks.append(struct.pack("<I", spec.elements) + data)
        assert rows is not None
        ids = list(request_ids or [])
        if ids and len(ids) != rows:
            raise ValueError(f"{len(ids)} request ids for {rows} inputs")
        host = b""
        if predictions is not None:
            if tuple(self.version) < (1, 2):
                raise ValueError(
                    f"the server speaks protocol {self.version[0]}.{self.version[1]}; host predictions need 1.2")
            host, count = _float32_bytes(predictions, 1)
            if count != rows:
                raise ValueError(f"{count} host predictions for {rows} inputs")
        seq = self._next_sequence
        self._next_sequence += 1
        body = struct.pack("<QIH", seq, rows, len(self.layers))
        body += b"".join(_string(ids[i] if i < len(ids) and ids[i] else "") for i in range(rows))
        body += b"".join(blocks) + host
        self._write(T_OBSERVE, (F_REPLY if reply else 0) | (F_PREDICTIONS if host else 0), body)
        return seq

    def sync(self) -> Ack:
        """Waits until the server has handled everything sent so far; returns that ACK."""
        self._sync_token += 1
        token = self._sync_token
        self._write(T_SYNC, 0, struct.pack("<Q", token))
        while True:
            t, flags, body = self._read_frame()
            if t == T_ACK:
                ack = self._ack(body, flags)
                self.last_ack = ack
                if ack.sync == token:
                    return ack
            elif t == T_ASSESSMENT:
                continue
            elif not self._side_frame(t, flags, body, None):
                raise ProtocolError(f"unexpected frame type {t:#x}")

    def bye(self) -> Optional[Ack]:
        """Says BYE, reads the final ACK and closes."""
        self._write(T_BYE, 0, b"")
        try:
            while True:
                t, flags, body = self._read_frame()
                if t == T_ACK:
                    self.last_ack = self._ack(body, flags)
                elif t == T_ERROR:
                    self.errors.append(self._error(body))
        except ProtocolError:
            pass
        self.close()
        return self.last_ack

    def close(self) -> None:
        """Closes the connection (without BYE; use :meth:`bye` for the final ACK)."""
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- frames -----------------------------------------------------------------------------------------

    def _write(self, t: int, flags: int, body: bytes) -> None:
        self._sock.sendall(HEADER.pack(len(body), t, flags, 0) + body)

    def _read_exactly(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            b = self._sock.recv(min(n - got, 1 << 20))
            if not b:
                raise ProtocolError("the server closed the connection")
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def _read_frame(self) -> Tuple[int, int, bytes]:
        length, t, flags, _ = HEADER.unpack(self._read_exactly(HEADER.size))
        if length > 1 << 30:
            raise ProtocolError(f"a frame of {length} bytes")
        return t, flags, self._read_exactly(length)

    def _side_frame(self, t: int, flags: int, body: bytes, seq: Optional[int]) -> bool:
        if t == T_ACK:
            self.last_ack = self._ack(body, flags)
            return True
        if t == T_ERROR:
            err = self._error(body)
            if err.fatal:
                self.close()
                raise err
            if seq is not None and err.sequence == seq:
                raise err
            self.errors.append(err)
            return True
        return False

    @staticmethod
    def _welcome(body: bytes) -> Tuple[Tuple[int, int], int, int, int, List[Layer]]:
        major, minor, max_frame, max_rows, ack_every, n = struct.unpack_from("<HHIIIH", body, 0)
        off, layers = 18, []
        for _ in range(n):
            (ln,) = struct.unpack_from("<H", body, off)
            name = body[off + 2: off + 2 + ln].decode("utf-8")
            off += 2 + ln
            elements, model_id = struct.unpack_from("<II", body, off)
            off += 8
            layers.append(Layer(name, elements, model_id))
        return (major, minor), max_frame, max_rows, ack_every, layers

    def _assessment(self, body: bytes, request_ids: Sequence[Optional[str]] = (),
                    flags: int = 0) -> Tuple[int, List[Assessment]]:
        if flags & ~(A_PREDICTION | A_HOST) or (flags & A_HOST and not flags & A_PREDICTION):
            raise ProtocolError(f"ASSESSMENT with undefined flags {flags:#x}")
        seq, n, nl = struct.unpack_from("<QIH", body, 0)
        row_bytes = (_ROW.size + (_PREDICTION.size if flags & A_PREDICTION else 0)
                     + (_HOST.size if flags & A_HOST else 0) + 16 * nl)
        if 14 + n * row_bytes != len(body):
            raise ProtocolError(f"ASSESSMENT declares {n} rows of {row_bytes} bytes; {len(body) - 14} follow")
        names = [layer.name for layer in self.layers]
        if len(names) != nl:
            names = [f"layer{k}" for k in range(nl)]
        off, rows = 14, []
        for r in range(n):
            status, row_flags, _, predicted, index, fused, ent, ent_p, shift, _ = _ROW.unpack_from(body, off)
            off += _ROW.size
            prediction = spread = spread_p = host = distance = distance_p = None
            interval: Optional[Tuple[float, float]] = None
            if flags & A_PREDICTION:
                y, sd, sp, low, high = _PREDICTION.unpack_from(body, off)
                off += _PREDICTION.size
                prediction, spread, spread_p = _optional(y), _optional(sd), _optional(sp)
                if low == low and high == high:
                    interval = (low, high)
                if flags & A_HOST:
                    h, d, dp = _HOST.unpack_from(body, off)
                    off += _HOST.size
                    host, distance, distance_p = _optional(h), _optional(d), _optional(dp)
            per = struct.unpack_from(f"<{2 * nl}d", body, off)
            off += 16 * nl
            rid = request_ids[r] if r < len(request_ids) and request_ids[r] else None
            rows.append(Assessment(
                index=index,
                request_id=rid,
                flags=Flags(row_flags),
                fused_p_value=fused,
                entropy=ent,
                entropy_p_value=_optional(ent_p),
                predicted_label=None if predicted == -1 else predicted,
                shift_log_evidence=_optional(shift),
                layers=tuple(LayerAssessment(names[k], per[2 * k], per[2 * k + 1]) for k in range(nl)),
                status=status,
                prediction=prediction,
                predictive_spread=spread,
                spread_p_value=spread_p,
                prediction_interval=interval,
                host_prediction=host,
                disagreement_distance=distance,
                disagreement_p_value=distance_p,
            ))
        return seq, rows

    @staticmethod
    def _ack(body: bytes, flags: int) -> Ack:
        through, assessed, dropped, rejected, token = struct.unpack("<QQQQQ", body)
        return Ack(through, assessed, dropped, rejected, token if flags & 1 else None)

    @staticmethod
    def _error(body: bytes) -> ServerError:
        code, fatal, _, seq, ln = struct.unpack_from("<HBBQH", body, 0)
        return ServerError(code, body[14:14 + ln].decode("utf-8", "replace"), seq, bool(fatal))


def is_nan(x: float) -> bool:
    """True for a float NaN."""
    return isinstance(x, float) and math.isnan(x)
