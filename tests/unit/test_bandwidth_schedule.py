"""Bandwidth limits: rates as written, weekly schedules, the token bucket."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from triplicate.bandwidth import Schedule, Throttle, limit_at, parse_rate
from triplicate.destinations.base import SourceFile
from triplicate.source import SourceReader


@pytest.mark.parametrize("text,rate", [
    ("200Mbit/s", 25e6), ("200Mbps", 25e6), ("200 Mb/s", 25e6), ("25MB/s", 25e6), ("25MiB/s", 25 * 1024**2),
    ("1.5Gbit/s", 187.5e6), ("1kB/s", 1000), (4096, 4096), ("unlimited", None),
])
def test_rates(text: object, rate: float | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0MB/s", "-1", "10 parsecs"])
def test_bad_rates_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="200Mbit/s"):
        parse_rate(text)


WORKDAY = [
    {"days": "mon-fri", "from": "09:00", "to": "19:00", "limit": "200Mbit/s"},
    {"days": "fri", "from": "22:00", "to": "06:00", "limit": "8MB/s"},
    {"limit": "unlimited"},
]


@pytest.mark.parametrize("when,rate", [
    ("2026-11-23 09:00", 25e6),  # Monday, window opens
    ("2026-11-23 18:59", 25e6),
    ("2026-11-23 19:00", None),  # closes
    ("2026-11-28 12:00", None),  # Saturday
    ("2026-11-27 23:30", 8e6),  # Friday night window...
    ("2026-11-28 05:59", 8e6),  # ...runs into Saturday morning
    ("2026-11-29 05:59", None),  # but not into Sunday's
])
def test_schedule(when: str, rate: float | None) -> None:
    rules = TypeAdapter(Schedule).validate_python(WORKDAY)
    assert limit_at(rules, datetime.fromisoformat(when)) == rate


def test_schedule_problems() -> None:
    adapter = TypeAdapter(Schedule)
    assert adapter.validate_python("10MB/s")[0].limit == 10e6
    assert limit_at(adapter.validate_python([])) is None
    for bad, words in [([{"days": "weekdays", "limit": "1MB/s"}], "mon-fri"),
                       ([{"from": "25:00", "to": "01:00", "limit": "1MB/s"}], "HH:MM"),
                       ([{"from": "09:00", "limit": "1MB/s"}], "both from and to")]:
        with pytest.raises(ValidationError, match=words):
            adapter.validate_python(bad)


def test_throttle_holds_the_rate_across_threads() -> None:
    throttle = Throttle(4_000_000)
    started = time.monotonic()

    def take() -> None:
        for _ in range(10):
            throttle.consume(100_000)

    threads = [threading.Thread(target=take) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    print(f"3 MB through a 4 MB/s throttle in {seconds:.2f} s")
    assert 0.6 <= seconds <= 1.2  # 3 MB at 4 MB/s = 0.75 s


def test_a_new_rate_applies_to_a_waiting_reader() -> None:
    throttle = Throttle(100_000)
    threading.Timer(0.3, throttle.set_rate, args=(None,)).start()
    started = time.monotonic()
    throttle.consume(10_000_000)  # 100 s at the old rate
    assert time.monotonic() - started < 1.0


def test_source_reader_waits_on_the_limiter(tmp_path: Path) -> None:
    path = tmp_path / "clip.mov"
    path.write_bytes(os.urandom(2_000_000))
    st = path.stat()
    src = SourceFile(path, "A/clip.mov", st.st_size, st.st_mtime_ns, limiter=Throttle(4_000_000))
    started = time.monotonic()
    with SourceReader(src, block_size=256 * 1024) as reader:
        while reader.read_block():
            pass
    assert 0.3 <= time.monotonic() - started <= 1.0  # 2 MB at 4 MB/s (1 s burst allowed to be borrowed)
