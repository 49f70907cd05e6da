"""Result types shared by the in-process monitor and the sidecar client (standard library only).

:class:`Assessment` is what both :meth:`latentwatch.Monitor.assess` and
:meth:`latentwatch.sidecar.Client.observe` return, so host code moves between monitoring in process and
monitoring through ``latentwatch serve`` by changing the line that creates the monitor.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, List, Mapping, NamedTuple, Optional, Tuple

__all__ = ["Flags", "LayerAssessment", "Assessment", "Alert", "ALERT_KINDS"]


class Flags(enum.IntFlag):
    """What the monitor concluded about an input (``LW_FLAG_*``); combine and test with ``&`` and ``in``."""

    #: The fused p-value is at most ``input_alpha``: the input looks unlike the data the model was fitted on.
    OUT_OF_DISTRIBUTION = 1
    #: The entropy p-value is at most ``aleatoric_alpha``: the input is unusually ambiguous between classes.
    AMBIGUOUS = 2
    #: A window episode is open: too many small p-values among the recent inputs.
    WINDOW_ALARM = 4
    #: A shift episode is open: the shift detector's evidence passed its threshold.
    SHIFT_ALARM = 8
    #: The classifier's outputs predict another class than the density's p(y | z); for a regression model, the
    #: host's prediction lies far from the density's (its disagreement p-value is at most ``disagreement_alpha``).
    DISAGREEMENT = 16


#: Alert kinds by their ``LW_ALERT_*`` code.
ALERT_KINDS = {1: "input", 2: "aleatoric", 3: "window", 4: "shift", 5: "resolved", 6: "disagreement"}


def _optional(x: float) -> Optional[float]:
    """None for NaN, else the float."""
    return None if x != x else float(x)


class LayerAssessment(NamedTuple):
    """One monitored layer's part of an assessment."""

    #: The layer's name (the monitor's layer name, or the model's).
    name: str
    #: -log p(z) at this layer (NaN when the input was refused).
    surprise: float
    #: The surprise's conformal p-value (NaN when the input was refused).
    p_value: float


@dataclass(frozen=True)
class Assessment:
    """What the monitor concluded about one input.

    Returned by :meth:`latentwatch.Monitor.assess` (in process) and by
    :meth:`latentwatch.sidecar.Client.observe` (``latentwatch serve``), with the same fields.

    Attributes:
        index: the input's index in the monitor's stream (0, 1, 2, ...).
        request_id: the host's id of the input, or None.
        flags: a :class:`Flags` combination.
        fused_p_value: the layers' p-values fused (Bonferroni or Cauchy); small means surprising.
        entropy: entropy of p(y | z) at the primary layer, in nats (aleatoric uncertainty).
        entropy_p_value: its p-value, or None when the model has no calibration.
        predicted_label: the class predicted from p(y | z), or None for mixture models.
        shift_log_evidence: the shift detector's log evidence after this input, or None when it is off.
        layers: per layer, in layer order, ``LayerAssessment(name, surprise, p_value)``.
        output_predicted: the class the classifier's outputs predict, or None when no outputs were given.
        output_confidence: max softmax probability of the outputs, or None.
        output_entropy: entropy of the outputs' softmax, or None.
        output_energy: -logsumexp(logits), or None (no outputs, or outputs given as probabilities).
        status: 0, or (sidecar only) the code the server refused this row with (NaN or infinite values); the
            in-process monitor raises instead of returning refused rows.
        prediction: a regression model's prediction of its target at the primary layer, or None for
            classifiers and mixtures (from the sidecar: servers of protocol 1.1 or later).
        predictive_spread: its predictive standard deviation (the regression model's aleatoric score), or None.
        spread_p_value: the spread's p-value (``ambiguous`` comes from it for regression models), or None.
        prediction_interval: ``(low, high)``, the conformal prediction interval of a regression model at the
            monitor's ``interval_level`` (the sidecar's ``--interval-level``; an unbounded end is infinite), or
            None: classifiers, models without an interval calibration, no level.
            :meth:`latentwatch.Model.prediction_interval` gives it at any level.
        host_prediction: the host's own prediction, when the monitor takes them (``outputs="prediction"``; from
            the sidecar: servers of protocol 1.2 given ``predictions``), or None.
        disagreement_distance: ``|host_prediction - prediction|``, or None.
        disagreement_p_value: its conformal p-value (``disagreement`` comes from it for regression models), or
            None when the model's disagreement is not calibrated (:meth:`latentwatch.Model.calibrate_disagreement`).
    """

    index: int
    request_id: Optional[str]
    flags: Flags
    fused_p_value: float
    entropy: float
    entropy_p_value: Optional[float]
    predicted_label: Optional[int]
    shift_log_evidence: Optional[float]
    layers: Tuple[LayerAssessment, ...]
    output_predicted: Optional[int] = None
    output_confidence: Optional[float] = None
    output_entropy: Optional[float] = None
    output_energy: Optional[float] = None
    status: int = 0
    prediction: Optional[float] = None
    predictive_spread: Optional[float] = None
    spread_p_value: Optional[float] = None
    prediction_interval: Optional[Tuple[float, float]] = None
    host_prediction: Optional[float] = None
    disagreement_distance: Optional[float] = None
    disagreement_p_value: Optional[float] = None

    @property
    def out_of_distribution(self) -> bool:
        """True when the fused p-value is at most the monitor's ``input_alpha``."""
        return bool(self.flags & Flags.OUT_OF_DISTRIBUTION)

    @property
    def ambiguous(self) -> bool:
        """True when the aleatoric p-value (of the entropy; of the predictive spread for regression models) is at
        most the monitor's ``aleatoric_alpha``."""
        return bool(self.flags & Flags.AMBIGUOUS)

    @property
    def window_alarm(self) -> bool:
        """True while a window episode is open."""
        return bool(self.flags & Flags.WINDOW_ALARM)

    @property
    def shift_alarm(self) -> bool:
        """True while a shift episode is open."""
        return bool(self.flags & Flags.SHIFT_ALARM)

    @property
    def disagreement(self) -> bool:
        """True when the classifier's outputs predict another class than p(y | z), or a regression host's
        disagreement p-value is at most the monitor's ``disagreement_alpha``."""
        return bool(self.flags & Flags.DISAGREEMENT)

    @property
    def valid(self) -> bool:
        """True unless the row was refused (``status`` nonzero; sidecar only)."""
        return self.status == 0

    @property
    def surprise(self) -> List[float]:
        """Per-layer surprise, in layer order."""
        return [layer.surprise for layer in self.layers]

    @property
    def p_values(self) -> List[float]:
        """Per-layer p-values, in layer order."""
        return [layer.p_value for layer in self.layers]

    @property
    def flag_names(self) -> List[str]:
        """The set flags as lower-case names, for example ``["out_of_distribution", "shift_alarm"]``."""
        return [f.name.lower() for f in Flags if self.flags & f]  # type: ignore[union-attr]

    @property
    def predicted(self) -> int:
        """``predicted_label`` with -1 for None (the sidecar client's older field name)."""
        return -1 if self.predicted_label is None else self.predicted_label


@dataclass(frozen=True)
class Alert:
    """One alert raised by a monitor.

    Attributes:
        kind: ``"input"``, ``"aleatoric"``, ``"window"``, ``"shift"``, ``"resolved"`` or ``"disagreement"``.
        index: the index (in the monitor's stream) of the input that raised it.
        request_id: the host's id of that input, or None.
        p_value: the p-value behind the alert, or None when there is none.
        episode: for ``"resolved"``, the kind of the episode it closes (``"window"`` or ``"shift"``); else None.
        detail: a human-readable explanation.
        time: when it was raised, in seconds since the Unix epoch.
    """

    kind: str
    index: int
    request_id: Optional[str]
    p_value: Optional[float]
    episode: Optional[str]
    detail: str
    time: float

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> "Alert":
        """An alert from one line of an alerts file (``alerts_path``, ``latentwatch replay --alerts``), parsed."""
        p = record.get("p_value")
        episode = record.get("episode")
        return cls(
            kind=str(record["kind"]),
            index=int(record["index"]),
            request_id=record.get("request_id"),
            p_value=None if p is None or (isinstance(p, float) and math.isnan(p)) else float(p),
            episode=None if episode in (None, "") else str(episode),
            detail=str(record.get("detail", "")),
            time=float(record.get("time", 0.0)),
        )
