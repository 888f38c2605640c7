"""How long to wait before the next attempt of a copy."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import RetrySettings


@dataclass(frozen=True)
class Backoff:
    first: float
    cap: float
    permanent: float

    @classmethod
    def from_settings(cls, settings: RetrySettings, once: bool = False) -> "Backoff":
        if once:  # a one-shot run retries quickly, then leaves the rest for later
            return cls(min(settings.first_delay, 1.0), min(settings.max_delay, 4.0), min(settings.permanent_delay, 4.0))
        return cls(settings.first_delay, settings.max_delay, settings.permanent_delay)

    def delay(self, attempts: int) -> float:
        """Exponential with +-20% jitter (so a recovered server is not hit by
        every waiting copy at the same instant), capped."""
        # the exponent is bounded: after a long outage 2**attempts overflows a float
        base = min(self.cap, self.first * 2 ** min(max(0, attempts - 1), 64))
        return base * random.uniform(0.8, 1.2)
