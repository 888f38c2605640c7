"""Retry policy: across attempts the wait doubles up to its cap and stays
there, forever; an error that needs a person is retried only on the slow
schedule, or at once after `triplicate retry` — also in a running daemon."""

from __future__ import annotations

import time
from pathlib import Path

from triplicate.config import RetrySettings
from triplicate.retry import Backoff

from tests.harness import make_setup, write_file
from tests.reliability.figures import FIGURES
from tests.reliability.procs import DaemonProcess, journal_states, wait_until

OLD = 1_700_000_000.0


def test_backoff_doubles_to_its_cap_and_stays_there() -> None:
    backoff = Backoff.from_settings(RetrySettings())  # the defaults: 5 s doubling to 15 min
    delays = [backoff.delay(attempt) for attempt in range(1, 10_001)]
    assert 4.0 <= delays[0] <= 6.0
    assert all(0.8 * 900 <= d <= 1.2 * 900 for d in delays[9:]), "capped, with jitter, from the 10th attempt on"
    assert min(delays[1000:]) > 0, "never gives up"


def test_permanent_error_waits_for_the_slow_schedule_or_retry(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, extra_daemon="")
    setup.config.write_text(setup.config.read_text().replace("permanent_delay = 1", "permanent_delay = 600"))
    for i in range(3):
        write_file(setup.watch / f"R001/clip{i}.mov", b"x" * 1000, mtime=OLD)
    journal = setup.root / "state/journal.db"
    locked = setup.destinations["offsite"]
    locked.chmod(0o555)
    daemon = DaemonProcess(setup, prefix=["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"])
    try:
        daemon.wait_event("copy_failed_will_retry")
        attempts_then = len(daemon.events("copy_failed_will_retry"))
        locked.chmod(0o755)  # the operator fixes the mount
        held_back = time.monotonic()
        slept = not _happens(lambda: _offsite_verified(journal), 3.0)
        retried = setup.cli("retry", "--destination", "offsite")
        wait_until(lambda: _offsite_verified(journal), 15, "the copies after `triplicate retry`", daemon)
        after_retry = time.monotonic() - held_back
        attempts = [e for e in daemon.events("copy_failed_will_retry")]
    finally:
        daemon.stop()
    FIGURES.scenario("retry-policy", f"permanent error: {attempts_then} attempt(s), "
                     f"next in {attempts[0]['retry_in_s']} s "
                     f"(slow schedule); fixed, still waiting 3 s later: {slept}; `triplicate retry` -> verified "
                     f"{after_retry - 3:.1f} s later")

    assert attempts[0]["kind"] == "permanent" and attempts[0]["retry_in_s"] >= 500
    assert slept, "a permanent error is not retried before its slow schedule"
    assert retried.returncode == 0 and "queued to retry now" in retried.stdout


def _offsite_verified(journal: Path) -> bool:
    states = journal_states(journal)
    return len(states) == 3 and all(d.get("offsite") == "verified" for d in states.values())


def _happens(predicate, within: float) -> bool:
    """Whether `predicate` turns true within `within` seconds (a negative check
    has to wait its whole window)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
