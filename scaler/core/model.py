"""Plain data flowing through the scaler: observations in, decisions out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from scaler.core.record import record


class Reason(StrEnum):
    """Why a decision has the replica count it has (exported as a label; keep values stable)."""

    REACTIVE = "reactive"
    """Current demand sets the count (the forecast asks for no more)."""
    FORECAST = "forecast"
    """The forecast's upper quantile over the lead window sets the count."""
    STABILIZATION = "stabilization"
    """A higher need within the scale-down window holds the count up."""
    MIN = "min"
    MAX = "max"
    IDLE = "idle"
    """No demand now and none forecast within the lead time: zero (when minReplicas is 0)."""
    HOLD = "hold"
    """Data is missing: the last valid decision is held until staleAfter."""
    NO_DATA = "no_data"
    """Data has been missing longer than staleAfter: the decision is invalid."""


@dataclass(frozen=True)
class Observation:
    """What the metrics source saw for one model at one refresh."""

    model: str
    at: float
    """Unix seconds of the samples."""
    demand: float | None
    """Demand in the model's demand unit (concurrent requests by default); None = unknown."""
    replicas: int | None = None
    """Replicas currently serving (vLLM engines reporting), when known."""
    signals: Mapping[str, float] = field(default_factory=dict)
    """Other signals by name (queue, kv_cache, ttft_p95_seconds, ...), for export and logs."""
    sampled_at: float | None = None
    """Unix seconds the demand was sampled at (the oldest scrape behind it), when the source
    knows; the decision's validity counts from here, not from when the refresh ran. None: ``at``."""


@dataclass(frozen=True)
class ColdStart:
    """How long a new replica takes to serve, split into stages (seconds, p90)."""

    pod_startup_seconds: float
    """Pod created -> Ready, excluding any wait for a new node."""
    node_provisioning_seconds: float = 0.0
    """Node created -> Ready in the model's pool (added when no spare GPU is there)."""
    samples: int = 0
    learned: bool = False
    """False while the config's initial value is used."""


@record
class Decision:
    """The scaler's answer for one model at one time. Immutable; served from a snapshot."""

    model: str
    at: float
    replicas: int
    """Desired replicas (after standby, bounds and scale-down stabilization)."""
    reason: Reason
    valid: bool
    """False: no usable data for longer than staleAfter; GetMetrics must fail, not answer."""
    active: bool
    """Demand now or forecast within the lead time (or minReplicas > 0): IsActive."""
    need: int = 0
    """Replicas needed before standby and bounds (stabilized): overrides re-apply bounds to it."""
    need_reason: Reason = Reason.IDLE
    """What set ``need`` (reactive, forecast, stabilization or idle), before bounds."""
    standby: int = 0
    reactive_replicas: int = 0
    forecast_replicas: int | None = None
    demand: float | None = None
    forecast_peak: float | None = None
    """Upper-quantile forecast peak over [now, now + lead], demand units."""
    lead_seconds: float = 0.0
    prewarm_replicas: int = 0
    """Extra replicas the forecast wants within lead + node provisioning, beyond ``replicas``:
    GPU nodes to pre-warm (balloons) so those replicas find a node when they are ordered."""
    slo_target: float | None = None
    """The model's ``slo.onTime`` target, when an SLO is set (the margin is then self-tuned)."""
    on_time: float | None = None
    """Measured on-time share the tuner last saw (None: no SLO, or no usable measurement yet)."""
    margin: float | None = None
    """Safety margin in use: the multiplier on the forecast's demand tail the decision scales to
    (1 = the forecast's own p50 path); None when no SLO is set (the manual ``quantile`` applies)."""
    base: float | None = None
    """Expected demand the margin applies to: max(demand now, forecast peak over the lead)."""
    slo_aim: float | None = None
    """On-time share the tuner's replay chose the margin for: ``slo.onTime`` + half the error
    budget in a calm week, + 0.95 of it while the week's budget is spent (``scaler.core.slo``);
    None: not tuned yet."""
    expires_at: float = 0.0
    """After this (Unix seconds) the decision is stale: GetMetrics fails UNAVAILABLE."""
    sampled_at: float | None = None
    """Unix seconds the demand behind this decision was sampled at (``expires_at`` is this plus
    ``staleAfter``); None: ``at``."""
    message: str = ""
