"""Figures only the running daemon knows: throughput now, copies in flight.

The runners count bytes as they go (`DestinationRunner.bytes_sent`); a sampler
on the event loop turns those counters into bytes per second over a sliding
window, so status, /metrics and the systemd STATUS line all show the same rate.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

WINDOW_SECONDS = 10.0
SAMPLE_SECONDS = 1.0


class LiveView:
    """Implements status.LiveFigures over the daemon's runners (a dict that a
    reload changes in place)."""

    def __init__(self, runners: Mapping[str, Any]) -> None:
        self.runners = runners
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def sample(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for name, runner in self.runners.items():
            samples = self._samples.setdefault(name, deque())
            samples.append((now, runner.bytes_sent))
            while len(samples) > 2 and now - samples[0][0] > WINDOW_SECONDS:
                samples.popleft()
        for gone in set(self._samples) - set(self.runners):
            del self._samples[gone]

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    def throughput(self, destination: str) -> float | None:
        """Bytes per second over the last window; None before two samples."""
        samples = self._samples.get(destination)
        if not samples or len(samples) < 2:
            return None
        (t0, b0), (t1, b1) = samples[0], samples[-1]
        return round((b1 - b0) / (t1 - t0), 1) if t1 > t0 else None

    def in_flight(self, destination: str) -> int:
        runner = self.runners.get(destination)
        return 0 if runner is None else int(runner.in_flight)

    def frozen(self) -> FixedFigures:
        """The figures as they are now, for a reader in another thread (the
        runners change under it)."""
        return FixedFigures(
            {name: self.throughput(name) for name in self.runners},
            {name: self.in_flight(name) for name in self.runners},
        )


@dataclass(frozen=True)
class FixedFigures:
    """status.LiveFigures as read at one moment."""

    rates: dict[str, float | None]
    flights: dict[str, int]

    def throughput(self, destination: str) -> float | None:
        return self.rates.get(destination)

    def in_flight(self, destination: str) -> int:
        return self.flights.get(destination, 0)
