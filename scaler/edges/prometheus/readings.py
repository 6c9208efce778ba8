"""Prometheus answers into observations: one model's signals, its SLO histogram reading."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from scaler.core.config import ModelSettings
from scaler.core.model import Observation
from scaler.edges.prometheus import promql
from scaler.edges.prometheus.checks import validate_queries

log = logging.getLogger("scaler.edges.prometheus.source")


def observation(
    model: ModelSettings, values: dict[str, float], now: float, *, max_age: float
) -> tuple[Observation, str | None]:
    """The model's observation, and why its demand was refused (None: it was not).

    ``sampled_at`` is when the data was scraped (the ``sampled_at`` signal; ``now``, the query's
    time, when that is unknown). Older than ``max_age``: Prometheus still answers with it (its
    lookback is 5 minutes), but it is old news, so the demand is unknown ("stale").
    """
    demand = values.pop(model.policy.demand, None)
    replicas = values.pop("replicas", None)
    scraped = values.pop(promql.SAMPLED_SIGNAL, None)
    sampled = now if scraped is None else min(now, scraped)
    reason = None
    if demand is not None and now - sampled > max_age:
        demand, reason = None, "stale"
    return Observation(
        model=model.name, at=now, demand=demand, sampled_at=sampled,
        replicas=None if replicas is None else round(replicas), signals=values,
    ), reason


def slo_reading(
    histograms: Sequence[Mapping[float, float]], max_queue_time: float
) -> tuple[dict[str, float], str | None]:
    """The SLO signals from a model's histograms (one expected), or why they are refused.

    Empty without a reason when the data is just missing (no ``+Inf``, or no bucket as low as
    ``maxQueueTime``); ``slo_requests`` alone when nothing finished in the window (no share, and
    certainly not a share of 0).
    """
    if len(histograms) > 1:
        return {}, "ambiguous"
    picked = promql.on_time(histograms[0], max_queue_time)
    if picked is None:
        return {}, None
    within, total = picked
    reason = promql.hygiene(within) or promql.hygiene(total)
    if reason:
        return {}, reason
    if total == 0:
        return {"slo_requests": 0.0}, None
    if within > total * (1 + promql.BOUND_TOLERANCE):
        return {}, "out_of_range"
    return {"slo_on_time_ratio": min(1.0, within / total), "slo_requests": total}, None


def bad_override(signal: str, model: ModelSettings) -> bool:
    template = model.queries.get(signal)
    if template is None or not validate_queries({signal: template}):
        return False
    log.warning("prometheus: invalid %s query for model %s ignored", signal, model.name)
    return True
