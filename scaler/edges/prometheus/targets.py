"""Partial data: a model whose scrape targets dropped out reads as unknown, never as less demand.

Demand is a sum over a model's scrape targets (pods). When one of two targets stops reporting
(its scrape fails, Prometheus cannot reach it, its /metrics hangs), the sum halves while the
pod still serves its share: read as demand, that is a scale-down made of missing data.

The rule: per model, the count of targets reporting (the ``replicas`` signal) is compared with
the highest count seen within the last ``ACCEPT_FRACTION x staleAfter`` (1 min at the default
2m). Fewer now than that recent maximum -> the model's data is *partial*: its demand is unknown
this refresh (the decision holds, it never goes lower), counted as a source problem and logged
once when it starts and once when it ends.

A genuine scale-in (a Deployment scaled down on purpose, by KEDA after our own lower answer or
by hand) also lowers the count. It is accepted once the lower count has lasted the window: the
old maximum then falls out of it. The window is shorter than ``staleAfter`` so a held decision
never runs out (turning GetMetrics UNAVAILABLE) because of a scale-in. A target that stays
lost longer than the window is accepted the same way: the hold is bounded, by design.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger("scaler.edges.prometheus.source")

ACCEPT_FRACTION = 0.5
"""A lower target count is accepted after it has lasted this share of the model's staleAfter."""


@dataclass
class _Targets:
    peaks: deque[tuple[float, int]] = field(default_factory=deque)
    """(time, count) with strictly decreasing counts: the head is the maximum in the window."""
    partial: bool = False


class TargetWatch:
    """Remembers each model's recent target counts; says when the count now is partial."""

    def __init__(self) -> None:
        self._models: dict[str, _Targets] = {}

    @property
    def partial_models(self) -> int:
        """Models whose data is partial at the last refresh."""
        return sum(1 for t in self._models.values() if t.partial)

    def check(self, model: str, reporting: int | None, *, now: float, window: float) -> bool:
        """True when fewer targets report ``model`` now than the most seen within ``window``.

        ``reporting`` None (the count itself is unknown) says nothing either way: no hold on it,
        and it leaves the remembered counts as they are.
        """
        seen = self._models.setdefault(model, _Targets())
        if reporting is None:
            return seen.partial
        peaks = seen.peaks
        while peaks and peaks[0][0] <= now - window:
            peaks.popleft()
        expected = peaks[0][1] if peaks else reporting
        # A max-queue: a count at least as high as older ones replaces them (they can no longer
        # be the window's maximum), so the deque stays short whatever the refresh rate.
        while peaks and peaks[-1][1] <= reporting:
            peaks.pop()
        peaks.append((now, reporting))
        partial = reporting < expected
        if partial and not seen.partial:
            log.warning("prometheus: model %s: %d of %d scrape targets report; its demand is "
                        "unknown and the decision holds (a lower count is accepted after %.0fs)",
                        model, reporting, expected, window)
        elif seen.partial and not partial:
            log.info("prometheus: model %s: %d scrape targets report; its demand is read again",
                     model, reporting)
        seen.partial = partial
        return partial

    def keep(self, models: Iterable[str]) -> None:
        """Forget models no longer configured."""
        wanted = set(models)
        for name in [n for n in self._models if n not in wanted]:
            del self._models[name]
