"""Time, injected.

Only the engine and the adapters' edges read a clock; the decision core takes ``now`` as an
argument. ``FakeClock`` drives scenario tests without real sleeps, ``AcceleratedClock`` drives
the demo (replay a day of traffic in minutes).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def step(self, seconds: float) -> None:
        self._now += seconds

    def set(self, now: float) -> None:
        self._now = now


class AcceleratedClock:
    """Virtual time running ``speed`` times faster than the wall clock from ``start``.

    E.g. speed=60: one real second is one virtual minute, a day replays in 24 minutes.
    """

    def __init__(self, *, start: float, speed: float, wall: Clock | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed = {speed}, must be > 0")
        self._wall = wall or SystemClock()
        self._wall_start = self._wall.now()
        self._start = start
        self.speed = speed

    def now(self) -> float:
        return self._start + (self._wall.now() - self._wall_start) * self.speed
