"""Bandwidth limits per destination, on a weekly schedule, applied live.

    bandwidth = "200Mbit/s"                      # always
    bandwidth = [                                # or rules; the first that matches wins
      { days = "mon-fri", from = "09:00", to = "19:00", limit = "200Mbit/s" },
      { limit = "unlimited" },                   # a rule without days/from/to always matches
    ]

Times are the daemon's local time; a window whose `to` is before its `from`
runs over midnight (and belongs to the day it starts on). No matching rule
means unlimited.

The limit is enforced where every destination type reads its source:
`SourceReader.read_block` takes tokens from the destination's `Throttle` (one
per destination, shared by its workers) before it hands a block on. Reads run
in worker threads, so waiting there never blocks the event loop; the wait is
sliced so a new rate (the schedule moving on, a reload) applies within a
fraction of a second.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RATE = re.compile(r"(\d+(?:\.\d+)?)([kKMGT]?)(i?)(bit|bps|b|B)?")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_rate(value: object) -> float | None:
    """Bytes per second from "200Mbit/s" (or "200Mbps", "200Mb/s": bits), "25MB/s"
    or "25MiB/s" (bytes), "unlimited", or a number of bytes per second; None = unlimited."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("unlimited", "none", "")):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    text = str(value).replace(" ", "").removesuffix("/s") if isinstance(value, str) else ""
    m = _RATE.fullmatch(text)
    if m is not None and float(m.group(1)) > 0:
        base = 1024 if m.group(3) else 1000
        scale = base ** " KMGT".index(m.group(2).upper() or " ")
        bits = m.group(4) in ("bit", "bps", "b")
        return float(m.group(1)) * scale / (8 if bits else 1)
    raise ValueError(
        f"{value!r} is not a bandwidth; write e.g. \"200Mbit/s\" (bits), \"25MB/s\" (bytes) or \"unlimited\""
    )


def _days(value: object) -> list[int]:
    """"mon-fri", "sat,sun", ["mon", "wed"] -> weekday numbers (Monday = 0)."""
    parts = value if isinstance(value, list) else str(value).split(",")
    found: list[int] = []
    for part in parts:
        first, _, last = str(part).strip().lower().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{value!r}: days are mon, tue, wed, thu, fri, sat, sun, as \"mon-fri\" or \"sat,sun\"")
        a, b = DAYS.index(first), DAYS.index(last or first)
        found += [d % 7 for d in range(a, b + 1 if b >= a else b + 8)]
    return sorted(set(found))


def _minutes(value: object) -> int:
    m = _CLOCK.match(str(value).strip())
    if m is None:
        raise ValueError(f"{value!r} is not a time of day; write \"HH:MM\", e.g. \"09:00\"")
    return int(m.group(1)) * 60 + int(m.group(2))


Rate = Annotated[float | None, BeforeValidator(parse_rate)]


class BandwidthRule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    days: Annotated[list[int], BeforeValidator(_days)] = Field(default_factory=lambda: list(range(7)))
    start: Annotated[int, BeforeValidator(_minutes)] | None = Field(default=None, alias="from")
    end: Annotated[int, BeforeValidator(_minutes)] | None = Field(default=None, alias="to")
    limit: Rate = Field(description='Bytes per second: "200Mbit/s", "25MB/s" or "unlimited".')

    @model_validator(mode="after")
    def _both_ends(self) -> "BandwidthRule":
        if (self.start is None) != (self.end is None):
            raise ValueError("a bandwidth rule needs both from and to, or neither")
        return self

    def matches(self, when: datetime) -> bool:
        minute = when.hour * 60 + when.minute
        weekday = when.weekday()
        if self.start is None or self.end is None:
            return weekday in self.days
        if self.start <= self.end:
            return weekday in self.days and self.start <= minute < self.end
        # over midnight: the evening of a listed day, or the morning after one
        return (weekday in self.days and minute >= self.start) or ((weekday - 1) % 7 in self.days and minute < self.end)


def _rules(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [{"limit": value}]
    return value if isinstance(value, list) else [value]


Schedule = Annotated[list[BandwidthRule], BeforeValidator(_rules)]


def limit_at(rules: list[BandwidthRule], when: datetime | None = None) -> float | None:
    when = datetime.now() if when is None else when
    return next((r.limit for r in rules if r.matches(when)), None)


class Throttle:
    """A token bucket shared by the threads reading for one destination."""

    SLICE = 0.2  # longest single wait, so a new rate takes effect quickly

    def __init__(self, rate: float | None = None) -> None:
        self._lock = threading.Lock()
        self.rate = rate
        self._tokens = 0.0
        self._stamp = time.monotonic()

    def set_rate(self, rate: float | None) -> None:
        with self._lock:
            if rate != self.rate:
                self._refill()
                self.rate = rate
                self._tokens = min(self._tokens, rate or 0.0)

    def _refill(self) -> None:
        now = time.monotonic()
        if self.rate:
            self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)  # burst: 1 s
        self._stamp = now

    def consume(self, n: int) -> None:
        """Take `n` bytes' worth, waiting as long as the rate asks (blocking: call from a thread)."""
        with self._lock:
            self._refill()
            if not self.rate:
                return
            self._tokens -= n  # may go into debt: the wait below pays it off
        while True:
            with self._lock:
                self._refill()
                if not self.rate or self._tokens >= 0:
                    return
                wait = min(self.SLICE, -self._tokens / self.rate)
            time.sleep(wait)
