"""Sharded fitting: mergeable statistics of a shard of activations (``lw_statistics``), and mixtures fitted in EM
rounds across shards."""

import ctypes
import os
import threading
from typing import Any, Dict, Iterable, Optional, Tuple, Union

from . import _capi
from ._capi import lib
from ._arrays import OwnedHandle, check
from ._errors import ConfigurationError, InvalidHandleError
import numpy as np

from ._model import Model, _activations_struct, _fit_config, _set_neighbours, _targets_array

__all__ = ["Statistics", "gather_statistics", "merge_statistics"]

PathLike = Union[str, os.PathLike]

_KINDS = {
    _capi.LW_STATISTICS_SHARD: "statistics",
    _capi.LW_STATISTICS_MIXTURE_ROUND: "mixture-round",
    _capi.LW_STATISTICS_MIXTURE_STEP: "mixture-step",
}


class Statistics(OwnedHandle):
    """A statistics file's content (``.lws``): the mergeable sufficient statistics of a shard (``kind ==
    "statistics"``), or, for a mixture fitted across shards, a round of EM (``"mixture-round"``) or one round's
    E-step over a shard (``"mixture-step"``).

    Gather statistics where each shard lives (:func:`gather_statistics`, or ``latentwatch fit --statistics-only``),
    combine them (:meth:`merge`, :func:`merge_statistics`) and fit the model once (:meth:`fit`): the model equals
    :func:`latentwatch.fit` on all the rows with the same calibration, up to rounding. A mixture (``gmm-full``,
    ``gmm-diag``) runs EM in rounds: :meth:`start_mixture` on the merged statistics gives round 0; each round every
    shard computes :meth:`expectation` against it, and :meth:`advance` on the merged steps gives the next round,
    until :attr:`finished`; then :meth:`fit`. Every kind pickles as its file's bytes, so it travels between
    processes (Dask, multiprocessing) as a result.

    Example::

        parts = [lw.gather_statistics(x, y, first_index=i0, layer_name="h1") for x, y, i0 in shards]
        model = lw.merge_statistics(parts).fit(calibration, calibration_labels)

        parts = [lw.gather_statistics(x, family="gmm-full", first_index=i0) for x, i0 in shards]
        em = lw.merge_statistics(parts).start_mixture()
        while not em.finished:
            em = em.advance(em.expectation(x, first_index=i0) for x, i0 in shards)
        model = em.fit(calibration)
    """

    __slots__ = ("_handle", "_lock", "__weakref__")
    _free = "lw_statistics_free"

    def __init__(self, _handle: ctypes.c_void_p) -> None:
        if not isinstance(_handle, ctypes.c_void_p) or not _handle.value:
            raise TypeError("Statistics are created by gather_statistics, Statistics.load or Statistics.from_bytes")
        self._handle: Optional[ctypes.c_void_p] = _handle
        self._lock = threading.Lock()

    # ---- creation -----------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: PathLike) -> "Statistics":
        """Reads a statistics file (``.lws``).

        Raises:
            LatentWatchIOError: the file cannot be read.
            ModelFileError: not a valid statistics file (truncated, damaged, a model file).
        """
        handle = ctypes.c_void_p()
        check(lib.lw_statistics_load(os.fsencode(path), ctypes.byref(handle)))
        return cls(handle)

    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray, memoryview]) -> "Statistics":
        """Statistics from a statistics file's bytes (as :meth:`to_bytes` returns them)."""
        if not isinstance(data, bytes):
            data = bytes(data)
        handle = ctypes.c_void_p()
        check(lib.lw_statistics_load_bytes(data, len(data), ctypes.byref(handle)))
        return cls(handle)

    def __reduce__(self) -> Tuple[Any, Tuple[bytes]]:
        return (Statistics.from_bytes, (self.to_bytes(),))

    # ---- what they hold ------------------------------------------------------------------------------------------

    def _info(self) -> Dict[str, Any]:
        """What the handle holds (``lw_statistics_get_info``), copied while the lock is held, so that a
        :meth:`close` on another thread cannot free the strings before they are read."""
        info = _capi.lw_statistics_info()
        info.struct_size = ctypes.sizeof(info)
        with self._lock:
            check(lib.lw_statistics_get_info(self._live_handle(), ctypes.byref(info)))
            fields = {name: getattr(info, name) for name, _ in info._fields_}
            fields["input_shape"] = tuple(int(info.input_shape[k]) for k in range(info.input_rank))
            return fields

    @property
    def samples(self) -> int:
        """Rows gathered (all shards merged so far)."""
        return int(self._info()["samples"])

    @property
    def rows(self) -> Tuple[int, int]:
        """``(first, end)``: the first row index held and one past the last."""
        i = self._info()
        return int(i["first_row"]), int(i["end_row"])

    @property
    def contiguous(self) -> bool:
        """True when the rows held form one range (no shard missing in between)."""
        return int(self._info()["range_count"]) <= 1

    @property
    def layer(self) -> str:
        """The layer name the model will carry."""
        return self._info()["layer"].decode("utf-8")

    @property
    def family(self) -> str:
        """``"gda"``, ``"tied"``, ``"gmm-full"`` or ``"gmm-diag"`` (``""`` for an E-step)."""
        return self._info()["family"].decode("utf-8")

    @property
    def kind(self) -> str:
        """``"statistics"`` (a shard's, or several merged), ``"mixture-round"`` or ``"mixture-step"``."""
        return _KINDS.get(int(self._info()["kind"]), "unknown")

    @property
    def round(self) -> int:
        """A round's EM iterations done (0: the k-means++ start); an E-step's round; 0 for statistics."""
        return int(self._info()["round"])

    @property
    def converged(self) -> bool:
        """A round whose last iteration changed the mean log-likelihood by less than the tolerance."""
        return bool(self._info()["converged"])

    @property
    def finished(self) -> bool:
        """A round that is converged or at the iteration limit: :meth:`fit` builds its model."""
        return bool(self._info()["finished"])

    @property
    def log_likelihood(self) -> float:
        """A round's mean log-likelihood at its last E-step (NaN at round 0); an E-step's sum over its rows; NaN
        for statistics."""
        return float(self._info()["log_likelihood"])

    @property
    def fingerprint(self) -> str:
        """The round's parameters (8 hex digits) for rounds and E-steps; ``""`` for statistics."""
        return self._info()["fingerprint"].decode("ascii")

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """The shape of one row."""
        return self._info()["input_shape"]

    def __repr__(self) -> str:
        if self._handle is None:
            return "<latentwatch.Statistics closed>"
        first, end = self.rows
        what = {"mixture-round": f" round {self.round}", "mixture-step": f" E-step of round {self.round}"}
        return (f"<latentwatch.Statistics {self.layer} {self.family}{what.get(self.kind, '')}: {self.samples} rows "
                f"in [{first}, {end})>")

    # ---- operations ----------------------------------------------------------------------------------------------

    def merge(self, other: "Statistics") -> "Statistics":
        """Merges ``other`` into these statistics (in place; ``other`` is unchanged) and returns ``self``: two
        shards' statistics, or two E-steps of one round.

        Raises:
            FitError: ``other`` was gathered for another shape, layer or fit configuration (E-steps: another
                round), or holds rows these hold already (a shard merged twice); these statistics are then unchanged.
            InvalidArgumentError: a round, or two different kinds.
        """
        if not isinstance(other, Statistics):
            raise TypeError(f"merge takes Statistics, not {type(other).__name__}")
        check(lib.lw_statistics_merge(self._live_handle(), other._live_handle()))
        return self

    def start_mixture(self) -> "Statistics":
        """Round 0 of EM from merged ``gmm-full`` or ``gmm-diag`` statistics: the PCA projection and the k-means++
        start on their reservoir sample (``lw_mixture_start``).

        Raises:
            ConfigurationError: statistics of another family.
            InvalidArgumentError: not a shard's statistics.
        """
        handle = ctypes.c_void_p()
        check(lib.lw_mixture_start(self._live_handle(), ctypes.byref(handle)))
        return Statistics(handle)

    def expectation(self, activations: Any, first_index: int = 0) -> "Statistics":
        """One shard's E-step against this round (``lw_mixture_expectation``): ``activations`` are the shard's
        rows, ``first_index`` the index of its first row in the whole data set.

        Raises:
            ConfigurationError: the round is finished.
            InvalidArgumentError: not a round.
            ShapeError: rows of another shape.
            FitError: rows holding NaN or infinity.
        """
        rows, keep = _activations_struct(activations, None, "activations")
        handle = ctypes.c_void_p()
        check(lib.lw_mixture_expectation(self._live_handle(), ctypes.byref(rows), int(first_index),
                                         ctypes.byref(handle)))
        del keep
        return Statistics(handle)

    def advance(self, steps: Union["Statistics", Iterable["Statistics"]]) -> "Statistics":
        """The next round (``lw_mixture_advance``): the M-step on ``steps``, every shard's E-step against this round
        (one merged :class:`Statistics`, or an iterable of them, merged here without changing them).

        Raises:
            FitError: steps of another round, or not covering exactly the fit's rows (a shard missing or twice).
        """
        if isinstance(steps, (str, bytes, bytearray, memoryview, os.PathLike)):
            raise TypeError("advance takes the E-steps as Statistics (one merged, or an iterable of them)")
        merged = steps if isinstance(steps, Statistics) else merge_statistics(steps)
        handle = ctypes.c_void_p()
        check(lib.lw_mixture_advance(self._live_handle(), merged._live_handle(), ctypes.byref(handle)))
        return Statistics(handle)

    def fit(self, calibration: Any, calibration_labels: Optional[Any] = None,
            calibration_targets: Optional[Any] = None) -> Model:
        """Fits the model with the options the statistics were gathered with (or from a finished mixture round),
        calibrated on ``calibration`` rows (required; with ``calibration_labels`` the class posterior is
        calibrated too; for a regression model's statistics, ``calibration_targets`` calibrate the predictive
        distribution and the prediction interval).

        Raises:
            ShapeError: calibration rows of another shape.
            FitError: too little data, a covariance that cannot be factorised, an unfinished round.
        """
        if calibration is None:
            raise ConfigurationError("fit needs calibration rows: the statistics hold none")
        cal, keep = _activations_struct(
            calibration, calibration_labels, "calibration activations", targets=calibration_targets
        )
        handle = ctypes.c_void_p()
        check(lib.lw_statistics_fit(self._live_handle(), ctypes.byref(cal), ctypes.byref(handle)))
        del keep
        return Model(handle)

    def to_bytes(self) -> bytes:
        """The statistics file's bytes (``lw_statistics_encode``)."""
        h = self._live_handle()
        length = ctypes.c_size_t(0)
        status = lib.lw_statistics_encode(h, None, 0, ctypes.byref(length))
        if status != _capi.LW_ERR_BUFFER_TOO_SMALL:
            check(status)
        # Another thread may merge in between and make the bytes longer: ask again with the new length.
        for _ in range(8):
            buf = ctypes.create_string_buffer(length.value)
            status = lib.lw_statistics_encode(h, buf, length.value, ctypes.byref(length))
            if status != _capi.LW_ERR_BUFFER_TOO_SMALL:
                check(status)
                return buf.raw[: length.value]
        check(status)
        return b""

    def save(self, path: PathLike) -> None:
        """Writes the statistics file atomically (``.lws``, what ``latentwatch merge`` reads)."""
        check(lib.lw_statistics_write(self._live_handle(), os.fsencode(path)))

    # ---- lifetime ----------------------------------------------------------------------------------------------

    def _live_handle(self) -> ctypes.c_void_p:
        h = self._handle
        if h is None:
            raise InvalidHandleError("the statistics are closed")
        return h



def gather_statistics(
    activations: Any,
    labels: Any = None,
    *,
    first_index: int = 0,
    family: str = "gda",
    layer_name: str = "layer",
    pooling: str = "flatten",
    l2_normalize: bool = True,
    precision: str = "float32",
    pca_components: Optional[int] = None,
    pca_variance_fraction: Optional[float] = None,
    split_seed: int = 0,
    mixture_components: int = 8,
    mixture_seed: int = 0,
    fit_background: bool = True,
    calibrate_posterior: bool = True,
    targets: Any = None,
    binning: Any = None,
    target_bins: int = 10,
    neighbours: Union[int, str, None] = None,
) -> Statistics:
    """Gathers the mergeable statistics of one shard of activations (``lw_statistics_gather``, and
    ``lw_statistics_gather_targets`` for regression families).

    Args:
        activations: the shard's rows, shape ``(n, *row_shape)``.
        labels: their ``n`` integer class labels (``gda`` and ``tied``; mixtures use none).
        targets: a regression model's ``n`` real-valued targets (families ``"regression"`` and
            ``"regression-tied"``, the default family when targets are given).
        binning: with ``targets``, the whole data set's fitting targets (every shard's): the ``target_bins`` bins
            are cut at their quantiles, so every shard bins alike.
        first_index: the index of the shard's first row in the whole data set, so that the validation split that
            chooses the shrinkage, and a mixture's reservoir sample, are the ones of a single pass.
        family: ``"gda"``, ``"tied"``, ``"regression"``, ``"regression-tied"``, or ``"gmm-full"`` and
            ``"gmm-diag"``, whose merged statistics start EM in
            rounds (:meth:`Statistics.start_mixture`).
        neighbours: as :func:`latentwatch.fit`'s: the statistics keep the sample of fitting rows a neighbour index
            is built from (a sharded mixture's EM rounds do not carry it on, so its model has none).
        The other options are :func:`latentwatch.fit`'s, and must be the same for every shard.

    Raises:
        ConfigurationError: a bad option, or gda or tied without labels.
        ShapeError: activations that are not rows, or labels of another length.
    """
    regression = targets is not None or str(family).startswith("regression")
    if regression and family == "gda":
        family = "regression"
    config, keep_strings = _fit_config(
        family=family,
        layer_name=layer_name,
        pooling=pooling,
        l2_normalize=l2_normalize,
        precision=precision,
        pca_components=pca_components,
        pca_variance_fraction=pca_variance_fraction,
        calibration_fraction=0.0,
        split_seed=split_seed,
        mixture_components=mixture_components,
        mixture_seed=mixture_seed,
        fit_background=fit_background,
        calibrate_posterior=calibrate_posterior,
    )
    _set_neighbours(config, neighbours, None, None)
    handle = ctypes.c_void_p()
    if regression and labels is not None:
        raise ConfigurationError("a regression family takes targets, not class labels")
    if not regression and binning is not None:
        raise ConfigurationError("binning goes with the targets of a regression family")
    if regression:
        if targets is None or binning is None:
            raise ConfigurationError(
                "gather_statistics of a regression family needs the rows' targets and the whole data set's "
                "targets as binning"
            )
        if not 1 <= int(target_bins) <= 1000:
            raise ConfigurationError(f"target_bins is {target_bins!r}; it must be 1 to 1000")
        config.target_bins = int(target_bins)
        b = np.asarray(binning)
        if b.ndim != 1:
            raise ConfigurationError(f"binning has shape {b.shape}; give one target per row of the whole data set")
        all_targets = _targets_array(b, b.shape[0], "binning targets")
        rows, keep = _activations_struct(activations, None, "activations", targets=targets)
        check(lib.lw_statistics_gather_targets(
            ctypes.byref(rows), all_targets.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), all_targets.shape[0],
            ctypes.byref(config), int(first_index), ctypes.byref(handle)))
    else:
        if labels is None and not family.startswith("gmm"):
            raise ConfigurationError("gather_statistics needs the rows' class labels (gda and tied)")
        rows, keep = _activations_struct(activations, labels, "activations")
        check(lib.lw_statistics_gather(
            ctypes.byref(rows), ctypes.byref(config), int(first_index), ctypes.byref(handle)))
    del keep, keep_strings
    return Statistics(handle)


def merge_statistics(parts: Iterable[Union[Statistics, PathLike, bytes]]) -> Statistics:
    """New statistics holding all of ``parts`` merged (Statistics, ``.lws`` paths or file bytes; none changed).

    Raises:
        ConfigurationError: no parts.
        FitError: parts gathered for another configuration, or holding a row in common.
    """
    merged: Optional[Statistics] = None
    for p in parts:
        if isinstance(p, Statistics):
            s = p
        elif isinstance(p, (bytes, bytearray, memoryview)):
            s = Statistics.from_bytes(p)
        else:
            s = Statistics.load(p)
        if merged is None:
            merged = Statistics.from_bytes(s.to_bytes())  # a copy: the parts stay as they are
        else:
            merged.merge(s)
    if merged is None:
        raise ConfigurationError("merge_statistics needs at least one part")
    return merged
