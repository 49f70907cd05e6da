"""PyTorch integration: monitor a model's layers with forward hooks, off the forward pass.

``torch`` is imported when :func:`attach` is called, so this module imports without PyTorch installed.

    import latentwatch, latentwatch.torch
    monitor = latentwatch.Monitor([h1_model, h2_model], on_alert=print)
    with latentwatch.torch.attach(net, monitor, layer=["fc1", "fc2"]) as att:
        for x in loader:
            logits = net(x)          # the hooks copy fc1's and fc2's outputs and return at once
    print(att.assessed, att.dropped, att.errors)

How it works: a forward hook on each monitored module copies the module's output to a float32 CPU array,
reduced to one row per sample (``reduce``), and keeps it until every monitored module has produced its output
for the current forward call (per thread). The complete set, one array per layer with one row per sample, goes
into a bounded :class:`queue.Queue`; a daemon thread takes it from there and hands it to the monitor:
``assess_batch`` for an inline :class:`latentwatch.Monitor`, ``submit`` per sample for a background one, and
``observe`` for a :class:`latentwatch.sidecar.Client`. The forward pass never waits for the monitor: when the
queue is full the set is dropped and counted (``dropped``), and the hooks never raise (failures are counted in
``errors`` and logged to the ``"latentwatch"`` logger).

torch.compile:
    Attach before compiling. Dynamo traces hooks that exist when the module is compiled; this hook does Python
    work (a copy into a queue), so it becomes a graph break at each monitored module, and the results stay
    correct. Hooks registered after compiling may not run at all. Where graph breaks matter, return the
    monitored features as extra outputs of ``forward`` and pass them to ``monitor.assess_batch`` yourself.

CUDA:
    The copy to the CPU is synchronous (``Tensor.to("cpu")``), so the arrays are complete when queued. The cost
    per forward call is that copy; reduce on the device first (``reduce="mean"`` does, before the copy) to move
    fewer bytes.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._types import Assessment

__all__ = ["attach", "Attachment", "reduce_output"]

_log = logging.getLogger("latentwatch")

Reducer = Union[str, Callable[[Any], Any]]
_REDUCTIONS = ("mean", "flatten", "cls", "max")
#: Forward calls the worker hands to the monitor in one call at most.
_GROUP = 256
#: How long the worker lets forward calls gather after the first one arrives (the latency this adds to
#: monitoring; at most _GROUP forward calls are taken per wake-up).
_COALESCE_SECONDS = 0.002


def _first_tensor(output: Any) -> Any:
    """The tensor in a module's output: the output itself, the first element of a tuple or list, or a
    ``last_hidden_state`` attribute or key (transformer outputs)."""
    if hasattr(output, "detach"):
        return output
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is not None:
        return hidden
    if isinstance(output, dict):
        if "last_hidden_state" in output:
            return output["last_hidden_state"]
        for v in output.values():
            if hasattr(v, "detach"):
                return v
    if isinstance(output, (tuple, list)):
        for v in output:
            if hasattr(v, "detach"):
                return v
    raise TypeError(f"the module's output is a {type(output).__name__}, not a tensor; pass reduce=callable")


def reduce_output(t: Any, reduce: Reducer) -> Any:
    """One row per sample from a batch-first tensor ``t`` (still a tensor, on its device).

    ``"mean"``: (B, D) as is; (B, T, D) mean over tokens; (B, C, H, W, ...) mean over the spatial axes.
    ``"max"``: the same axes, max. ``"flatten"``: (B, -1). ``"cls"``: (B, T, D) -> the first token, (B, D).
    A callable gets the tensor and returns (B, ...) (a tensor or a numpy array).
    """
    if callable(reduce):
        return reduce(t)
    if t.dim() <= 2:
        return t
    if reduce == "flatten":
        return t.reshape(t.shape[0], -1)
    if reduce == "cls":
        if t.dim() != 3:
            raise ValueError(f"reduce='cls' takes (batch, tokens, features) outputs; got shape {tuple(t.shape)}")
        return t[:, 0, :]
    dims = (1,) if t.dim() == 3 else tuple(range(2, t.dim()))
    if reduce == "mean":
        return t.mean(dim=dims)
    if reduce == "max":
        return t.amax(dim=dims)
    raise ValueError(f"reduce is {reduce!r}; use one of {', '.join(map(repr, _REDUCTIONS))} or a callable")


class Attachment:
    """Forward hooks feeding a monitor (returned by :func:`attach`); detach with :meth:`detach` or ``with``.

    Attributes:
        layer_names: the monitored modules' names, in the monitor's layer order.
        dropped: inputs dropped because the queue was full (the forward pass never waits).
        errors: failures in the hooks (a reduction that failed, an output that is not a tensor) or in the
            worker (the monitor refused an input: wrong shape, NaN); each is logged to ``"latentwatch"``.
        incomplete: forward calls in which some monitored module produced no output (nothing was queued).
        assessed: inputs handed to the monitor.
        last_assessment: the most recent :class:`~latentwatch.Assessment` (None for a background monitor).
        assessments: the last ``keep_last`` assessments, oldest first (a ``collections.deque``; empty unless
            :func:`attach` was given ``keep_last``).
    """

    def __init__(
        self,
        modules: Sequence[Any],
        names: Sequence[str],
        target: Any,
        reduce: Union[Reducer, Sequence[Reducer]],
        queue_size: int,
        request_id: Optional[Callable[[], Any]],
        on_assessment: Optional[Callable[[Assessment], Any]],
        keep_last: int = 0,
        outputs_module: Any = None,
    ) -> None:
        import torch  # noqa: F401  (checked by attach; kept for the hooks' device handling)

        self._torch = torch
        self.layer_names: List[str] = list(names)
        self._target = target
        self._reducers: List[Reducer] = (
            list(reduce) if isinstance(reduce, (list, tuple)) else [reduce] * len(modules)
        )
        if len(self._reducers) != len(modules):
            raise ValueError(f"{len(self._reducers)} reductions for {len(modules)} modules")
        # The model's outputs ride along as one more hooked module, flattened per sample, and go to the monitor as
        # its `outputs` (the last array of each forward call's set).
        self._with_outputs = outputs_module is not None
        self._hook_names = list(names) + (["outputs"] if self._with_outputs else [])
        if self._with_outputs:
            modules = list(modules) + [outputs_module]
            self._reducers.append("flatten")
        for r in self._reducers:
            if not callable(r) and r not in _REDUCTIONS:
                raise ValueError(f"reduce is {r!r}; use one of {', '.join(map(repr, _REDUCTIONS))} or a callable")
        self._request_id = request_id
        self._on_assessment = on_assessment
        # A SimpleQueue: put() takes no Python-level lock, so the forward thread never waits for the worker
        # (a queue.Queue's Condition made the hook wait tens of µs for the worker's wake-up). The bound is kept
        # by two monotonic counters (itertools.count is atomic under the GIL): put minus taken.
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._capacity = max(1, int(queue_size))
        self._put_counter = itertools.count(1)
        self._taken_counter = itertools.count(1)
        self._put = 0
        self._taken = 0
        self._local = threading.local()
        self._lock = threading.Lock()  # the rare paths only: drops and errors
        self.dropped = 0
        self.errors = 0
        self.incomplete = 0
        self.assessed = 0
        self.last_assessment: Optional[Assessment] = None
        self.assessments: "collections.deque[Assessment]" = collections.deque(maxlen=max(0, int(keep_last)))
        self._logged_errors = 0
        self._mode = self._target_mode(target)
        if self._with_outputs and self._mode not in ("batch", "assess", "client"):
            raise ValueError(
                "outputs= needs an inline latentwatch.Monitor created with outputs=, or a sidecar Client (a "
                "regression model's prediction); a background monitor's queue takes activations only"
            )
        self._handles = [m.register_forward_hook(self._make_hook(i)) for i, m in enumerate(modules)]
        self._worker = threading.Thread(target=self._drain, name="latentwatch-torch", daemon=True)
        self._worker.start()
        self._detached = False

    @staticmethod
    def _target_mode(target: Any) -> str:
        if hasattr(target, "observe") and hasattr(target, "layers"):
            return "client"
        mode = getattr(target, "mode", None)
        if mode == "background" and hasattr(target, "submit"):
            return "submit"
        if hasattr(target, "assess_batch"):
            return "batch"
        if hasattr(target, "assess"):
            return "assess"
        raise TypeError(
            f"{type(target).__name__} is not a latentwatch.Monitor or latentwatch.sidecar.Client "
            "(it has no assess_batch, submit or observe)"
        )

    # ---- the forward pass's side --------------------------------------------------------------------------------

    def _error(self, what: str, e: BaseException) -> None:
        with self._lock:
            self.errors += 1
            log = self._logged_errors < 10
            self._logged_errors += 1
        if log:
            _log.warning("latentwatch.torch: %s: %s: %s", what, type(e).__name__, e)

    def _make_hook(self, layer: int) -> Callable[..., None]:
        count = len(self._reducers)
        reducer = self._reducers[layer]
        torch = self._torch

        f32 = torch.float32

        def hook(module: Any, args: Any, output: Any) -> None:
            try:
                # detach() first: the reduction then records no autograd graph (cheaper than a no_grad context).
                t = reduce_output(_first_tensor(output).detach(), reducer)
                if not hasattr(t, "numpy"):  # a callable reduction returned a numpy array or a list
                    a = np.array(t, dtype=np.float32)
                elif t.dtype == f32 and t.device.type == "cpu":
                    a = t.numpy().copy()  # the copy: the model may overwrite its output later (in-place ops)
                else:
                    a = t.to("cpu", f32).numpy()  # another device or dtype: to() makes a new tensor
                if a.ndim == 1:  # an unbatched output: one sample
                    a = a.reshape(1, -1)
                if count == 1:  # one monitored module: every output completes a forward call
                    self._enqueue(((a,), None if self._request_id is None else self._ids(a.shape[0])))
                    return
                pending: Optional[Dict[int, np.ndarray]] = getattr(self._local, "pending", None)
                if pending is None:
                    pending = {}
                    self._local.pending = pending
                if layer in pending:  # a new forward call began before the last one produced every layer
                    with self._lock:
                        self.incomplete += 1
                    pending.clear()
                pending[layer] = a
                if len(pending) < count:
                    return
                arrays = tuple(pending[i] for i in range(count))
                pending.clear()
                rows = arrays[0].shape[0]
                ids = self._ids(rows)
                self._enqueue((arrays, ids))
            except Exception as e:  # never into the forward pass
                self._error(f"forward hook of layer '{self._hook_names[layer]}'", e)

        return hook

    def _ids(self, rows: int) -> Optional[List[Optional[str]]]:
        if self._request_id is None:
            return None
        rid = self._request_id()
        if rid is None:
            return None
        if isinstance(rid, str):
            return [rid] if rows == 1 else [f"{rid}/{i}" for i in range(rows)]
        ids = [None if r is None else str(r) for r in rid]
        if len(ids) != rows:
            raise ValueError(f"request_id returned {len(ids)} ids for a batch of {rows}")
        return ids

    def _enqueue(self, item: Any) -> None:
        if self._put - self._taken >= self._capacity:
            with self._lock:
                self.dropped += item[0][0].shape[0]
            return
        self._put = next(self._put_counter)
        self._queue.put(item)

    # ---- the worker's side --------------------------------------------------------------------------------------

    def _drain(self) -> None:
        """The worker: takes what is queued, up to ``_GROUP`` forward calls at a time, and hands each run of them
        to the monitor in one call (one ``assess_batch`` for many small forward calls keeps the worker's share of
        the GIL, and so its cost to the forward thread, small)."""
        while True:
            items = [self._queue.get()]
            if items[0] is not None and not isinstance(items[0], threading.Event):
                # Let forward calls gather before taking the GIL again: while the worker sleeps, a put wakes
                # nobody, so the forward thread neither signals a waiting thread nor waits for the GIL per call.
                time.sleep(_COALESCE_SECONDS)
            while len(items) < _GROUP:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            group: List[Any] = []
            for item in items:
                if item is None or isinstance(item, threading.Event):
                    self._deliver_group(group)
                    group = []
                    if item is None:
                        return
                    item.set()  # a flush marker: everything queued before it is delivered
                else:
                    group.append(item)
            self._deliver_group(group)

    def _deliver_group(self, group: List[Any]) -> None:
        """Hands a run of forward calls to the monitor; never raises (the worker must survive anything)."""
        if not group:
            return
        try:
            if len(group) == 1 or self._mode != "batch":  # only assess_batch validates every row before any
                for g in group:
                    self._deliver_one(g)
            else:
                try:
                    arrays = tuple(np.concatenate([g[0][k] for g in group]) for k in range(len(group[0][0])))
                except ValueError:  # rows of different widths: each forward call on its own
                    arrays = None
                if arrays is None:
                    for g in group:
                        self._deliver_one(g)
                else:
                    ids: Optional[List[Optional[str]]] = None
                    if any(g[1] is not None for g in group):
                        ids = []
                        for g in group:
                            ids.extend(g[1] if g[1] is not None else [None] * g[0][0].shape[0])
                    try:
                        self._deliver(arrays, ids)
                    except Exception:  # find the forward calls the monitor refuses; deliver the others
                        for g in group:
                            self._deliver_one(g)
        except Exception as e:  # pragma: no cover - _deliver_one catches; this is the last line of defence
            self._error("the worker failed", e)
        finally:
            for _ in group:
                self._taken = next(self._taken_counter)

    def _deliver_one(self, item: Any) -> None:
        try:
            self._deliver(*item)
        except Exception as e:
            self._error("the monitor refused a forward call's inputs", e)

    def _deliver(self, arrays: Tuple[np.ndarray, ...], ids: Optional[List[Optional[str]]]) -> None:
        rows = arrays[0].shape[0]
        target = self._target
        results: List[Assessment] = []
        outputs: Optional[np.ndarray] = None
        if self._with_outputs:
            arrays, outputs = arrays[:-1], arrays[-1]
            if outputs.shape[0] != rows and outputs.size % rows == 0:
                # A batched output of one number per sample, shape (batch,), arrives from the hook as one row.
                outputs = outputs.reshape(rows, -1)
            if outputs.shape[0] != rows:
                raise ValueError(f"the model's outputs have {outputs.shape[0]} rows for {rows} samples")
        if self._mode == "batch":
            batch = target.assess_batch(*arrays, outputs=outputs, request_ids=ids)
            self.assessed += rows
            # Assessment objects are built only when someone reads them: all rows for on_assessment or keep_last,
            # else the last.
            wanted = self._on_assessment is not None or self.assessments.maxlen
            results = list(batch) if wanted else [batch[rows - 1]]
        elif self._mode == "client":
            results = target.observe(list(arrays), request_ids=ids,
                                     predictions=None if outputs is None else outputs.reshape(-1))
            self.assessed += rows
        elif self._mode == "submit":
            for i in range(rows):
                target.submit(*[a[i] for a in arrays], request_id=None if ids is None else ids[i])
                self.assessed += 1
        else:
            for i in range(rows):
                results.append(target.assess(
                    *[a[i] for a in arrays], outputs=None if outputs is None else outputs[i],
                    request_id=None if ids is None else ids[i]))
                self.assessed += 1
        if results:
            self.last_assessment = results[-1]
            if self.assessments.maxlen:
                self.assessments.extend(results)
        if self._on_assessment is not None:
            for r in results:
                try:
                    self._on_assessment(r)
                except Exception as e:
                    self._error("on_assessment raised", e)

    # ---- control -------------------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Forward calls waiting in the queue or being handed to the monitor now."""
        return max(0, self._put - self._taken)

    def flush(self, timeout: Optional[float] = 10.0) -> bool:
        """Waits until every forward call queued so far has been handed to the monitor. Returns False on timeout.

        (For a background monitor, call ``monitor.flush()`` afterwards to wait for its own queue.)
        """
        if not self._worker.is_alive():
            return self.queued == 0
        marker = threading.Event()
        self._queue.put(marker)
        return marker.wait(timeout)

    def detach(self, timeout: Optional[float] = 10.0) -> None:
        """Removes the hooks, hands what is queued to the monitor, and stops the worker. Idempotent."""
        if self._detached:
            return
        self._detached = True
        for h in self._handles:
            h.remove()
        self.flush(timeout)
        self._queue.put(None)
        self._worker.join(timeout)

    def __enter__(self) -> "Attachment":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    def __repr__(self) -> str:
        return (
            f"<latentwatch.torch.Attachment layers={self.layer_names} assessed={self.assessed} "
            f"dropped={self.dropped} errors={self.errors}{' detached' if self._detached else ''}>"
        )


def attach(
    module_or_modules: Any,
    monitor_or_client: Any,
    *,
    layer: Union[None, str, Sequence[str]] = None,
    reduce: Union[Reducer, Sequence[Reducer]] = "mean",
    queue_size: int = 1024,
    request_id: Optional[Callable[[], Any]] = None,
    on_assessment: Optional[Callable[[Assessment], Any]] = None,
    keep_last: int = 0,
    outputs: Any = None,
) -> Attachment:
    """Monitors modules' outputs with forward hooks; returns the :class:`Attachment` (detach it when done).

    The hook copies each output's rows and queues them; a worker thread hands them to the monitor. The worker
    lets forward calls gather for 2 ms after the first arrives, then takes them all (at most 256) in one call:
    assessments (and alerts) lag the forward pass by about that much, and the forward thread is not slowed by a
    wake-up per call. :meth:`Attachment.flush` waits for everything queued.

    Args:
        module_or_modules: a ``torch.nn.Module`` or a sequence of them. With ``layer=None`` these are the
            monitored modules, one per monitor layer in order. With ``layer``, the one module is the root in
            which the named submodules are looked up.
        monitor_or_client: a :class:`latentwatch.Monitor` (inline: ``assess_batch`` on the worker thread;
            background: ``submit`` per sample) or a :class:`latentwatch.sidecar.Client` (``observe``). Its layer
            count must equal the number of monitored modules.
        layer: a submodule name or a list of names as in ``named_modules()`` (``"encoder.layer.11"``), in the
            monitor's layer order.
        reduce: how a module's output becomes one row per sample: ``"mean"`` (tokens or spatial axes),
            ``"flatten"``, ``"cls"`` (first token), ``"max"``, or a callable tensor -> (batch, ...); or one of
            these per layer. The row must match the layer model's input shape.
        queue_size: forward calls that may wait for the worker; beyond it they are dropped and counted.
        request_id: a callable run in the hook on the forward thread, returning None, one id (rows of a batch
            get ``"id/0"``, ``"id/1"``, ...), or one id per sample.
        on_assessment: called on the worker thread with each input's :class:`~latentwatch.Assessment`
            (not for a background monitor, whose assessments are not returned).
        keep_last: keep the last this many assessments in :attr:`Attachment.assessments`.
        outputs: the module whose output is the model's output (the root module itself, or, with ``layer``, a
            submodule name, ``""`` for the root): each forward call's output, one row per sample, goes to the monitor as ``outputs``
            (an inline :class:`latentwatch.Monitor` created with ``outputs="logits"``, ``"probabilities"`` or,
            for a regression model, ``"prediction"``, whose disagreement with the latent density's prediction it
            then reports and alerts on; or, a regression model's one number per sample, a
            :class:`latentwatch.sidecar.Client` of a protocol 1.2 server).

    Raises:
        ImportError: PyTorch is not installed.
        ValueError: the module count differs from the monitor's layer count, or an unknown reduction.
        AttributeError: a ``layer`` name that the root module does not have.
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError("latentwatch.torch.attach needs PyTorch: pip install torch") from e
    if layer is not None:
        if isinstance(module_or_modules, (list, tuple)):
            raise ValueError("with layer=, pass the one root module whose submodules are named")
        root = module_or_modules
        names = [layer] if isinstance(layer, str) else list(layer)
        modules = [root.get_submodule(n) for n in names]
    else:
        modules = list(module_or_modules) if isinstance(module_or_modules, (list, tuple)) else [module_or_modules]
        names = [type(m).__name__ + (f"[{i}]" if len(modules) > 1 else "") for i, m in enumerate(modules)]
    for m in modules:
        if not isinstance(m, torch.nn.Module):
            raise TypeError(f"{type(m).__name__} is not a torch.nn.Module")
    target_layers = getattr(monitor_or_client, "layer_names", None)
    if target_layers is not None and len(target_layers) != len(modules):
        raise ValueError(
            f"{len(modules)} monitored modules ({', '.join(names)}) but the monitor has {len(target_layers)} layers "
            f"({', '.join(target_layers)}): pass one module per monitored layer, in layer order"
        )
    if target_layers is not None and layer is None:
        names = list(target_layers)
    outputs_module = None
    if outputs is not None:
        if isinstance(outputs, str):
            if layer is None:
                raise ValueError("outputs= names a submodule only with layer= (pass the module itself otherwise)")
            outputs_module = root.get_submodule(outputs) if outputs else root
        elif isinstance(outputs, torch.nn.Module):
            outputs_module = outputs
        else:
            raise TypeError(f"outputs is a {type(outputs).__name__}; pass a torch.nn.Module or a submodule name")
    return Attachment(modules, names, monitor_or_client, reduce, queue_size, request_id, on_assessment, keep_last,
                      outputs_module)
