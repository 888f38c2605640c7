"""Outage: the S3 server (and, separately, sshd) goes away in the middle of a
run and stays away while more cards arrive and the daemon is restarted (a
reboot during the outage). Nearline and the other off-site copies finish
meanwhile; status shows the backlog; once the server is back the backlog drains
by itself, with no command, and nothing is lost."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import cloud
from tests.reliability.figures import FIGURES, mib
from tests.reliability.procs import DaemonProcess, all_verified, journal_states, wait_until

pytestmark = pytest.mark.servers

MiB = 1024 * 1024
MAX_DELAY = 1.0  # [daemon.retry] max_delay of make_setup: the backoff cap


def card(rng: random.Random, name: str, big: int) -> dict[str, bytes]:
    content = {f"{name}/CLIPS/{name}C00{i}.mov": rng.randbytes(6 * MiB + i) for i in range(big)}
    content.update({f"{name}/META/take{i}.xml": rng.randbytes(5_000 * (i + 1)) for i in range(4)})
    return content


def destination_status(setup: Any, name: str) -> dict[str, Any]:
    return next(d for d in setup.status()["destinations"] if d["name"] == name)


def verified_at(journal: Path, destination: str) -> int:
    return sum(d.get(destination) == "verified" for d in journal_states(journal).values())


@pytest.mark.parametrize("down", ["s3", "sftp"])
def test_offsite_server_down_then_back(down: str, tmp_path: Path, seaweed: Any, sshd: Any, monkeypatch: Any) -> None:
    server = seaweed if down == "s3" else sshd
    up = "sftp" if down == "s3" else "s3"
    rng = random.Random(down)
    offsite = cloud.Offsite.fresh(seaweed, sshd)
    for name, value in offsite.env().items():
        monkeypatch.setenv(name, value)
    setup = cloud.cloud_setup(tmp_path, cloud.destinations(offsite))
    setup.config.write_text(setup.config.read_text().replace("[daemon.retry]", "[daemon.retry]\ndegraded_after = 3"))
    journal = setup.root / "state/journal.db"
    first, second = card(rng, "A001", 2), card(rng, "B001", 1)
    cloud.write_sources(setup, first)

    daemon = DaemonProcess(setup)
    outputs: list[str] = []
    try:
        wait_until(lambda: verified_at(journal, down) >= 1, 60, f"a first verified copy at {down}", daemon)
        stopped = time.monotonic()
        server.stop()
        cloud.write_sources(setup, second)  # a card arrives during the outage
        content = {**first, **second}
        everything_but = lambda: all(
            d.get("nearline") == "verified" and d.get(up) == "verified" for d in journal_states(journal).values()
        ) and len(journal_states(journal)) == len(content)
        wait_until(everything_but, 60, f"nearline and {up} to finish while {down} is down", daemon)
        wait_until(lambda: destination_status(setup, down)["state"] == "degraded", 30, f"{down} degraded", daemon)
        during = destination_status(setup, down)
        retries_then = len(daemon.events("copy_failed_will_retry"))
        wait_until(lambda: len(daemon.events("copy_failed_will_retry")) > retries_then + 2, 10,
                   "retries to go on during the outage", daemon)
        outputs.append(daemon.stop())  # the machine reboots during the outage
        daemon = DaemonProcess(setup)
        daemon.wait_event("destination_unavailable")
        outage = time.monotonic() - stopped
        back = time.monotonic()
        server.start()
        wait_until(lambda: all_verified(journal, len(content), 3), 90, f"the {down} backlog to drain", daemon)
        drained = time.monotonic() - back
        outputs.append(daemon.stop())
    finally:
        if not server.running:
            server.start()
        if daemon.alive():
            daemon.stop()

    held = {"nearline": cloud.tree(setup.destinations["nearline"]), "s3": offsite.s3_objects(),
            "sftp": cloud.tree(offsite.remote)}
    expected = {rel: cloud.xxh(data) for rel, data in content.items()}
    lost = sum(len(cloud.missing(found, expected)) for found in held.values())
    events = [e for out in outputs for e in _events(out)]
    delays = [e["retry_in_s"] for e in events
              if e["event"] == "copy_failed_will_retry" and e.get("destination") == down]
    FIGURES.scenario(
        f"outage-{down}", f"{down} down {outage:.1f} s (daemon restarted meanwhile), backlog then "
        f"{during['backlog_files']} files / {mib(during['backlog_bytes'])}, "
        f"oldest {during['oldest_pending_seconds']} s; {len(delays)} retries (longest wait {max(delays):.2f} s); "
        f"drained {drained:.1f} s after it came back; {lost} lost",
        faults=1, lost=lost)

    assert lost == 0
    assert during["backlog_files"] >= len(second) and during["backlog_bytes"] >= sum(map(len, second.values()))
    assert during["oldest_pending_seconds"] > 0 and during["error"]
    assert max(delays) <= MAX_DELAY * 1.2 + 0.01, "backoff goes past its cap"
    assert [e["event"] for e in events].count("destination_degraded") == 1, "one log line when it degrades"
    assert drained < 30
    assert destination_status(setup, down)["state"] == "up"
    assert destination_status(setup, down)["backlog_files"] == 0


def _events(output: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]
