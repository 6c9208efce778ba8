"""Cold start, learned per model from its pods' lives. Pure functions of timelines and ``now``.

A pod's startup is split into two stages that scale differently:

    created ──(node wait)──> node Ready ──(pod startup)──> Ready
              only when the pod waited for a node created after it

* **node wait** depends on the node pool (cloud API, image of the node, GPU driver): it vanishes when
  the pool has a spare GPU, so it is learned per pool, from Nodes (created -> Ready), and added to
  the lead time only when the pool is full.
* **pod startup** is the model's own: scheduling, image pull, weights load, warm-up.

E.g. a pod created at t=0 whose node was created at t=5 and Ready at t=185, scheduled at t=190 and
Ready at t=610: node wait 185 s, pod startup 610 - 185 = 425 s. The same pod on an existing node:
node wait 0, pod startup 610 s.

Each stage's estimate is a decayed, robust p90 of recent samples: recent startups weigh more (half
life ``DEFAULT_HALF_LIFE_SECONDS``; images and weights get cached, models change), one stuck pod
cannot set the lead time (a rare sample 10x above the median is dropped), and until
``minSamples`` startups are seen the config's ``initial`` value is used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scaler.core.config import ColdStartSettings
from scaler.core.model import ColdStart

QUANTILE = 0.9
"""The lead time covers 9 startups in 10: a p50 would make every other scale-up late."""
DEFAULT_HALF_LIFE_SECONDS = 3 * 86400.0
"""A startup three days old weighs half a fresh one (a few scale-ups a day is typical)."""
MAX_SAMPLES = 64
"""Samples kept per model and per pool: with the half life, older ones weigh < 1% anyway."""
MAX_SAMPLE_SECONDS = 6 * 3600.0
"""Longer "startups" are not cold starts (quota exhausted, broken image): never learned."""
OUTLIER_RATIO = 10.0
"""A sample is far out when above 10 x the (weighted) median: a cached/uncached image pull (60 s /
400 s) is not, a pod stuck for two hours among 5-minute starts is."""
OUTLIER_MAX_SHARE = 0.25
"""Far-out samples are dropped only while they are a minority (< 25% of the weight): slow starts
that recur are the model's tail, and the p90 must cover them."""
OUTLIER_MIN_SAMPLES = 4
"""With fewer samples nothing is dropped (one of three is no minority)."""


@dataclass(frozen=True)
class PodTimeline:
    """One pod's life, Unix seconds; None where the pod has not got there (or it is unknown)."""

    uid: str
    created: float
    scheduled: float | None = None
    """PodScheduled condition turned True."""
    node_created: float | None = None
    """Creation of the node the pod was scheduled to; None when the node is unknown (deleted)."""
    node_ready: float | None = None
    """When that node turned Ready (None: unknown or not yet)."""
    containers_ready: float | None = None
    ready: float | None = None
    """Ready condition turned True (first time; restarts are not startups)."""

    @property
    def node_wait_seconds(self) -> float | None:
        """Time spent waiting for a node created after the pod; 0 on an existing node.

        None when it cannot be told (not scheduled yet, or the node is gone). Bounded by the
        scheduling wait: a node Ready after the pod was scheduled did not hold it up longer.
        """
        if self.scheduled is None or self.node_created is None:
            return None
        queued = max(0.0, self.scheduled - self.created)
        if self.node_created <= self.created:
            return 0.0
        node_ready = self.node_ready if self.node_ready is not None else self.scheduled
        return min(queued, max(0.0, node_ready - self.created))

    @property
    def startup_seconds(self) -> float | None:
        """Created -> Ready without the node wait; None until Ready.

        With the node unknown, the whole scheduling wait is left out (it may have been a node
        wait): created -> scheduled is small when a node is there, so little is lost.
        """
        if self.ready is None or self.ready < self.created:
            return None
        wait = self.node_wait_seconds
        if wait is None:
            start = self.scheduled if self.scheduled is not None else self.created
            return max(0.0, self.ready - max(start, self.created))
        return self.ready - self.created - wait


@dataclass(frozen=True)
class NodeTimeline:
    """One node's provisioning, Unix seconds."""

    name: str
    created: float
    ready: float | None = None
    """First Ready=True transition seen (None: not Ready yet)."""

    @property
    def provisioning_seconds(self) -> float | None:
        if self.ready is None or self.ready < self.created:
            return None
        return self.ready - self.created


@dataclass(frozen=True)
class StartupSample:
    """A finished startup reduced to what the estimate needs (what is persisted across restarts)."""

    uid: str
    at: float
    """When the pod turned Ready (Unix seconds): the sample's age for the decay."""
    startup_seconds: float
    node_wait_seconds: float = 0.0


@dataclass(frozen=True)
class DurationSample:
    """A finished node provisioning (or any single-stage duration)."""

    key: str
    at: float
    seconds: float


def startup_sample(pod: PodTimeline) -> StartupSample | None:
    """The pod's finished startup, or None (not Ready, or implausible)."""
    startup = pod.startup_seconds
    if startup is None or pod.ready is None:
        return None
    wait = pod.node_wait_seconds or 0.0
    if startup + wait > MAX_SAMPLE_SECONDS:
        return None
    return StartupSample(uid=pod.uid, at=pod.ready, startup_seconds=startup, node_wait_seconds=wait)


def node_sample(node: NodeTimeline) -> DurationSample | None:
    seconds = node.provisioning_seconds
    if seconds is None or node.ready is None or seconds > MAX_SAMPLE_SECONDS:
        return None
    return DurationSample(key=node.name, at=node.ready, seconds=seconds)


def weighted_quantile(values: Sequence[float], weights: Sequence[float], q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` of the total (inverted CDF).

    No interpolation: a sample of negligible weight (a month-old slow start) has negligible
    influence, which interpolating toward it would not give. E.g. three equal weights: q=0.9
    is the largest value (with three samples the p90 cannot be below the slowest one seen);
    ten equal weights 1..10: q=0.9 is 9.
    """
    if not values or len(values) != len(weights):
        raise ValueError("values and weights must be non-empty and of equal length")
    pairs = sorted((v, w) for v, w in zip(values, weights, strict=True) if w > 0)
    if not pairs:
        raise ValueError("weights must not all be zero")
    target = q * math.fsum(w for _, w in pairs) * (1 - 1e-12)  # float noise must not skip a value
    cumulative = 0.0
    for value, weight in pairs:
        cumulative += weight
        if cumulative >= target:
            return value
    return pairs[-1][0]


def decay_weights(ages_seconds: Iterable[float], half_life_seconds: float) -> list[float]:
    """0.5 ** (age / half life); samples from the future count as fresh."""
    return [0.5 ** (max(0.0, age) / half_life_seconds) for age in ages_seconds]


def drop_far_out(values: Sequence[float], weights: Sequence[float]) -> tuple[list[float], list[float]]:
    """Values and weights without far-out high values, when those are a minority.

    E.g. 300, 310, 320, 330 and one 7200 (a pod stuck on a quota): median 320, fence 3200, the
    7200 is 20% of the weight -> dropped, p90 330. With two such pods of six (33%) both stay.
    Quartiles would not do here: with five samples the outlier itself moves q75 past 2000.
    """
    if len(values) < OUTLIER_MIN_SAMPLES:
        return list(values), list(weights)
    fence = weighted_quantile(values, weights, 0.5) * OUTLIER_RATIO
    far = math.fsum(w for v, w in zip(values, weights, strict=True) if v > fence)
    if far >= OUTLIER_MAX_SHARE * math.fsum(weights):
        return list(values), list(weights)
    kept = [(v, w) for v, w in zip(values, weights, strict=True) if v <= fence]
    return [v for v, _ in kept], [w for _, w in kept]


def robust_p90(
    samples: Sequence[tuple[float, float]], *, now: float, half_life_seconds: float
) -> float | None:
    """Decayed robust p90 of (at, seconds) samples; None without samples."""
    if not samples:
        return None
    values = [s for _, s in samples]
    weights = decay_weights((now - at for at, _ in samples), half_life_seconds)
    if not any(w > 0 for w in weights):
        # Every sample decayed to nothing (months old): they still beat a guess, equally weighted.
        weights = [1.0] * len(values)
    values, weights = drop_far_out(values, weights)
    return weighted_quantile(values, weights, QUANTILE)


def recent(samples: Iterable[StartupSample], limit: int = MAX_SAMPLES) -> list[StartupSample]:
    """The ``limit`` most recent samples, one per pod uid (newest wins), oldest first."""
    by_uid = {s.uid: s for s in sorted(samples, key=lambda s: s.at)}
    return sorted(by_uid.values(), key=lambda s: s.at)[-limit:]


def recent_durations(samples: Iterable[DurationSample], limit: int = MAX_SAMPLES) -> list[DurationSample]:
    by_key = {s.key: s for s in sorted(samples, key=lambda s: s.at)}
    return sorted(by_key.values(), key=lambda s: s.at)[-limit:]


def configured_cold_start(settings: ColdStartSettings) -> ColdStart:
    """The config's values, before (or without) anything learned."""
    return ColdStart(pod_startup_seconds=settings.initial,
                     node_provisioning_seconds=settings.nodeProvisioning, samples=0, learned=False)


def estimate_cold_start(
    pods: Iterable[PodTimeline | StartupSample],
    settings: ColdStartSettings,
    *,
    now: float,
    nodes: Iterable[NodeTimeline | DurationSample] = (),
    half_life_seconds: float = DEFAULT_HALF_LIFE_SECONDS,
) -> ColdStart:
    """One model's cold start: pod startup p90 and its pool's node provisioning p90 (seconds).

    Until ``settings.minSamples`` startups are known, ``settings.initial`` is the pod startup
    (``learned=False``). Node provisioning comes from the pool's Nodes; without enough of them,
    from this model's own node waits; without those, ``settings.nodeProvisioning``.
    """
    startups = recent(_startup_samples(pods))
    node_samples = recent_durations(_node_samples(nodes))
    learned = len(startups) >= settings.minSamples
    pod_p90 = (
        robust_p90([(s.at, s.startup_seconds) for s in startups], now=now,
                   half_life_seconds=half_life_seconds)
        if learned else None
    )
    waits = [(s.at, s.node_wait_seconds) for s in startups if s.node_wait_seconds > 0]
    node_p90: float | None = None
    if len(node_samples) >= settings.minSamples:
        node_p90 = robust_p90([(s.at, s.seconds) for s in node_samples], now=now,
                              half_life_seconds=half_life_seconds)
    elif len(waits) >= settings.minSamples:
        node_p90 = robust_p90(waits, now=now, half_life_seconds=half_life_seconds)
    return ColdStart(
        pod_startup_seconds=pod_p90 if pod_p90 is not None else settings.initial,
        node_provisioning_seconds=node_p90 if node_p90 is not None else settings.nodeProvisioning,
        samples=len(startups),
        learned=learned,
    )


def lead_seconds(
    cold_start: ColdStart, *, pool_has_spare: bool | None, decision_delay_seconds: float
) -> float:
    """Lead time of a scale-up decision: pod startup + node wait (when no spare GPU) + delay.

    ``pool_has_spare`` None (unknown, or no pool) counts the node wait: being early costs a
    replica-minute, being late costs the SLO. E.g. startup 425 s, node 185 s, KEDA polling 30 s:
    640 s with a full pool, 455 s when a balloon holds a GPU for the new replica.
    """
    node = 0.0 if pool_has_spare else cold_start.node_provisioning_seconds
    return cold_start.pod_startup_seconds + node + decision_delay_seconds


def _startup_samples(items: Iterable[PodTimeline | StartupSample]) -> list[StartupSample]:
    out: list[StartupSample] = []
    for item in items:
        sample = item if isinstance(item, StartupSample) else startup_sample(item)
        if sample is not None:
            out.append(sample)
    return out


def _node_samples(items: Iterable[NodeTimeline | DurationSample]) -> list[DurationSample]:
    out: list[DurationSample] = []
    for item in items:
        sample = item if isinstance(item, DurationSample) else node_sample(item)
        if sample is not None:
            out.append(sample)
    return out
