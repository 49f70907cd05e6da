"""ONNX Runtime integration: expose intermediate tensors as outputs and monitor them on every run.

``onnx`` and ``onnxruntime`` are imported when a function here is called, so this module imports without them.

    import latentwatch, latentwatch.onnx
    monitor = latentwatch.Monitor([h1_model, h2_model], on_alert=print)
    session = latentwatch.onnx.MonitoredSession("mlp.onnx", monitor, layers=["h1", "h2"])
    probs, = session.run(None, {"x": batch})      # exactly the model's outputs
    print(session.last_assessments.out_of_distribution)

:func:`expose_outputs` adds intermediate tensors of a graph as extra graph outputs (their types and shapes from
ONNX shape inference). :class:`MonitoredSession` runs the model with those extra outputs, hands the chosen
tensors to the monitor, one row per sample of the batch, and returns only the outputs that were asked for.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

__all__ = ["expose_outputs", "MonitoredSession", "reduce_array"]

_log = logging.getLogger("latentwatch")

ArrayReducer = Union[str, Callable[[np.ndarray], np.ndarray]]
_REDUCTIONS = ("flatten", "mean", "cls", "max")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise ImportError("latentwatch.onnx needs the onnx package: pip install onnx onnxruntime") from e
    return onnx


def _load_model(model: Any) -> Any:
    """A ModelProto (a copy, never the caller's object) from a path, bytes or a ModelProto."""
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model)
        return m
    if isinstance(model, (bytes, bytearray, memoryview)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    raise TypeError(f"model is a {type(model).__name__}; give a path, bytes or an onnx.ModelProto")


def expose_outputs(model: Any, tensor_names: Sequence[str]) -> Any:
    """A copy of an ONNX model whose graph also outputs the named intermediate tensors.

    Args:
        model: a path of an ``.onnx`` file, its bytes, or an ``onnx.ModelProto`` (not modified).
        tensor_names: names of tensors in the graph (node outputs, graph inputs or initializers). Names that are
            already graph outputs are left as they are.

    Returns:
        The ``onnx.ModelProto`` with the extra outputs appended after the original ones, each typed by ONNX
        shape inference (element type float when inference cannot tell).

    Raises:
        ImportError: onnx is not installed.
        ValueError: a name that no node, input or initializer of the main graph produces.
    """
    onnx = _onnx()
    from onnx import helper, shape_inference

    m = _load_model(model)
    graph = m.graph
    try:
        inferred = shape_inference.infer_shapes(m).graph
    except Exception as e:  # models shape inference cannot handle: fall back to untyped outputs
        _log.warning("latentwatch.onnx: shape inference failed (%s); exposed outputs get element type float", e)
        inferred = graph
    typed = {}
    for vi in list(inferred.input) + list(inferred.value_info) + list(inferred.output):
        typed.setdefault(vi.name, vi)
    produced = {o for node in graph.node for o in node.output} | {i.name for i in graph.input}
    initializers = {init.name: init for init in graph.initializer}
    outputs = {o.name for o in graph.output}
    for name in tensor_names:
        if name in outputs:
            continue
        if name not in produced and name not in initializers:
            raise ValueError(
                f"the graph has no tensor named {name!r}; node outputs include "
                f"{sorted(o for node in graph.node for o in node.output)[:20]}"
            )
        if name in typed:
            vi = onnx.ValueInfoProto()
            vi.CopyFrom(typed[name])
        elif name in initializers:
            init = initializers[name]
            vi = helper.make_tensor_value_info(name, init.data_type, list(init.dims))
        else:
            vi = helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        graph.output.append(vi)
        outputs.add(name)
    return m


def reduce_array(a: np.ndarray, reduce: ArrayReducer) -> np.ndarray:
    """One row per sample from a batch-first array.

    ``"flatten"``: (B, -1). ``"mean"``: (B, D) as is; (B, T, D) mean over tokens; (B, C, H, W, ...) mean over the
    spatial axes. ``"max"``: the same axes, max. ``"cls"``: (B, T, D) -> the first token. A callable gets the
    array and returns (B, ...).
    """
    if callable(reduce):
        return np.asarray(reduce(a))
    if a.ndim <= 1:
        return a.reshape(1, -1)
    if reduce == "flatten" or a.ndim == 2:
        return a.reshape(a.shape[0], -1)
    if reduce == "cls":
        if a.ndim != 3:
            raise ValueError(f"reduce='cls' takes (batch, tokens, features) tensors; got shape {a.shape}")
        return a[:, 0, :]
    axes = (1,) if a.ndim == 3 else tuple(range(2, a.ndim))
    if reduce == "mean":
        return a.mean(axis=axes, dtype=np.float32)
    if reduce == "max":
        return a.max(axis=axes)
    raise ValueError(f"reduce is {reduce!r}; use one of {', '.join(map(repr, _REDUCTIONS))} or a callable")


class MonitoredSession:
    """An ``onnxruntime.InferenceSession`` whose runs are monitored.

    Every :meth:`run` fetches the requested outputs and the monitored intermediate tensors in one
    onnxruntime call, reduces each monitored tensor to one row per sample, and hands the rows to the monitor:
    ``assess_batch`` for an inline :class:`latentwatch.Monitor` (the result is kept in
    :attr:`last_assessments`), ``submit`` per sample for a background one, or ``observe`` for a
    :class:`latentwatch.sidecar.Client` (a list of assessments). It returns exactly the outputs asked for,
    unchanged.

    Args:
        model: a path of an ``.onnx`` file, its bytes, or an ``onnx.ModelProto``.
        monitor: a :class:`latentwatch.Monitor` or :class:`latentwatch.sidecar.Client` with one layer per name
            in ``layers``, in the same order.
        layers: the names of the monitored tensors.
        reduce: ``"flatten"`` (default), ``"mean"``, ``"cls"``, ``"max"``, a callable array -> (batch, ...), or one
            of these per layer.
        providers: onnxruntime execution providers (default: ``["CPUExecutionProvider"]``).
        sess_options: an ``onnxruntime.SessionOptions``.
        outputs_name: a model output to pass to the monitor as the model's outputs (the monitor must be created
            with ``outputs="logits"`` or ``"probabilities"``, or ``"prediction"`` for a regression model's
            one-number output); None passes none.
        raise_errors: when False (default), a monitor that refuses the inputs (NaN, wrong shape) does not fail
            the run: the error is logged to ``"latentwatch"``, counted in :attr:`errors`, and
            :attr:`last_assessments` is None. When True, it is raised.

    Attributes:
        session: the underlying ``onnxruntime.InferenceSession`` (with the extra outputs).
        output_names: the model's original output names.
        last_assessments: the assessments of the last run (an :class:`latentwatch.AssessmentBatch`, a list for a
            sidecar client, None for a background monitor or after an error).
        errors: runs whose monitoring failed (with ``raise_errors=False``).
    """

    def __init__(
        self,
        model: Any,
        monitor: Any,
        layers: Sequence[str],
        reduce: Union[ArrayReducer, Sequence[ArrayReducer]] = "flatten",
        providers: Optional[Sequence[Any]] = None,
        sess_options: Any = None,
        outputs_name: Optional[str] = None,
        raise_errors: bool = False,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError("latentwatch.onnx.MonitoredSession needs onnxruntime: pip install onnxruntime") from e
        original = _load_model(model)
        self.output_names: List[str] = [o.name for o in original.graph.output]
        self.layers: List[str] = list(layers)
        layer_names = getattr(monitor, "layer_names", None)
        if layer_names is not None and len(layer_names) != len(self.layers):
            raise ValueError(
                f"{len(self.layers)} monitored tensors ({', '.join(self.layers)}) but the monitor has "
                f"{len(layer_names)} layers ({', '.join(layer_names)})"
            )
        self._reducers: List[ArrayReducer] = (
            list(reduce) if isinstance(reduce, (list, tuple)) else [reduce] * len(self.layers)
        )
        if len(self._reducers) != len(self.layers):
            raise ValueError(f"{len(self._reducers)} reductions for {len(self.layers)} layers")
        exposed = expose_outputs(original, self.layers)
        self.session = ort.InferenceSession(
            exposed.SerializeToString(),
            sess_options=sess_options,
            providers=list(providers) if providers is not None else ["CPUExecutionProvider"],
        )
        self.monitor = monitor
        self.outputs_name = outputs_name
        self.raise_errors = raise_errors
        self.last_assessments: Any = None
        self.errors = 0
        if hasattr(monitor, "observe") and hasattr(monitor, "layers"):
            self._mode = "client"
        elif getattr(monitor, "mode", None) == "background":
            self._mode = "submit"
        else:
            self._mode = "batch"

    def get_inputs(self) -> List[Any]:
        """The model's inputs (``InferenceSession.get_inputs``)."""
        return self.session.get_inputs()

    def get_outputs(self) -> List[Any]:
        """The model's original outputs (without the exposed intermediate tensors)."""
        return [o for o in self.session.get_outputs() if o.name in self.output_names]

    def run(
        self, output_names: Optional[Sequence[str]], input_feed: Dict[str, Any], run_options: Any = None
    ) -> List[Any]:
        """Runs the model like ``InferenceSession.run`` and monitors the run's intermediate tensors.

        Args:
            output_names: the outputs to return (None: all the model's original outputs).
            input_feed: inputs by name.
            run_options: an ``onnxruntime.RunOptions``.

        Returns:
            The requested outputs, exactly as onnxruntime computed them.
        """
        names = list(output_names) if output_names else list(self.output_names)
        fetch = list(names)
        extra = [n for n in self.layers if n not in fetch]
        if self.outputs_name is not None and self.outputs_name not in fetch + extra:
            extra.append(self.outputs_name)
        fetch += extra
        results = self.session.run(fetch, input_feed, run_options)
        by_name = dict(zip(fetch, results))
        try:
            rows = [reduce_array(np.asarray(by_name[n]), r) for n, r in zip(self.layers, self._reducers)]
            self._monitor(rows, by_name.get(self.outputs_name) if self.outputs_name else None)
        except Exception as e:
            self.last_assessments = None
            if self.raise_errors:
                raise
            self.errors += 1
            _log.warning("latentwatch.onnx: monitoring this run failed: %s: %s", type(e).__name__, e)
        return results[: len(names)]

    def _monitor(self, rows: List[np.ndarray], outputs: Optional[np.ndarray]) -> None:
        m = self.monitor
        if self._mode == "batch":
            self.last_assessments = m.assess_batch(*rows, outputs=outputs)
        elif self._mode == "client":
            self.last_assessments = m.observe(rows)
        else:
            for i in range(rows[0].shape[0]):
                m.submit(*[r[i] for r in rows])
            self.last_assessments = None
