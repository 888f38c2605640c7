"""Crash: SIGKILL the daemon at 10 random moments of an offload to nearline +
S3 + SFTP, restarting it each time. After every kill no destination holds a
torn file under a final name and the journal is intact; at the end every copy
reads back right, nothing is left over, and the bytes sent again are counted
by a proxy in front of each off-site server."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import cloud
from tests.reliability.faultproxy import FaultProxy, Faults
from tests.reliability.figures import FIGURES, mib
from tests.reliability.procs import (
    DaemonProcess,
    all_verified,
    integrity,
    journal_states,
    wait_until,
)

pytestmark = pytest.mark.servers

MiB = 1024 * 1024
SEED = int(os.environ.get("TRIPLICATE_RELIABILITY_SEED", "3210"))
KILLS = 10
RATE = 6_000_000  # bytes/s through each off-site proxy: the work outlasts the ten kill windows


def offload(rng: random.Random) -> dict[str, bytes]:
    """Three files of three S3 parts, one of two, small ones and an empty one."""
    content = {f"A001_CARD/CLIPS/A001C00{i}.mov": rng.randbytes(11 * MiB + 7 * i) for i in range(1, 4)}
    content["A001_CARD/CLIPS/A001C004.mov"] = rng.randbytes(6 * MiB)
    for i, size in enumerate([1, 900, 70_000, 300_000, 2 * MiB]):
        content[f"A001_CARD/META/take{i}.xml"] = rng.randbytes(size)
    content["A001_CARD/empty.bin"] = b""
    return content


def check_destinations(setup: Any, offsite: cloud.Offsite, expected: dict[str, str]) -> dict[str, dict[str, bytes]]:
    held = {
        "nearline": cloud.tree(setup.destinations["nearline"]),
        "s3": offsite.s3_objects(),
        "sftp": cloud.tree(offsite.remote),
    }
    for name, found in held.items():
        assert cloud.torn(found, expected) == [], f"{name} holds a partial or wrong file under its final name"
    return held


@dataclass
class Kills:
    moments: list[float]
    survived: int = 0
    mid_copy: int = 0  # kills that found copies in progress
    outputs: list[str] = field(default_factory=list)


def _copying_or_done(journal: Path, files: int) -> bool:
    states = journal_states(journal)
    return any(s == "transferring" for d in states.values() for s in d.values()) or all_verified(journal, files, 3)


def kill_at(moments: list[float], setup: Any, offsite: cloud.Offsite, expected: dict[str, str]) -> Kills:
    """Start, SIGKILL at each moment after copies began, and look at
    everything while the daemon is dead."""
    journal = setup.root / "state/journal.db"
    kills = Kills(moments)
    for moment in moments:
        daemon = DaemonProcess(setup)
        daemon.wait_event("daemon_started")
        # Moments count from the first copy in progress, not from the start: on a
        # loaded machine start-up alone can outlast a moment, and a kill before
        # any copy tests nothing.
        wait_until(lambda: _copying_or_done(journal, len(expected)), 60, "a copy in progress", daemon)
        time.sleep(moment)  # the kill moment itself, drawn beforehand; nothing waits on it
        if not daemon.alive():
            raise AssertionError(f"the daemon died by itself:\n{daemon.output[-3000:]}")
        kills.outputs.append(daemon.kill())
        kills.survived += 1
        assert integrity(journal) == "ok", f"journal damaged by the kill at {moment} s"
        kills.mid_copy += any(s == "transferring" for d in journal_states(journal).values() for s in d.values())
        check_destinations(setup, offsite, expected)
    return kills


def test_sigkill_at_ten_random_moments(tmp_path: Path, seaweed: Any, sshd: Any, monkeypatch: Any) -> None:
    rng = random.Random(SEED)
    content = offload(rng)
    expected = {rel: cloud.xxh(data) for rel, data in content.items()}
    total = sum(map(len, content.values()))
    offsite = cloud.Offsite.fresh(seaweed, sshd)
    for name, value in offsite.env().items():
        monkeypatch.setenv(name, value)
    s3_proxy = FaultProxy(seaweed.port, Faults(rate=RATE), seed=SEED).start()
    sftp_proxy = FaultProxy(sshd.port, Faults(rate=RATE), seed=SEED).start()
    try:
        dests = cloud.destinations(offsite, s3_endpoint=s3_proxy.url, sftp_port=sftp_proxy.port,
                                   known_hosts=cloud.known_hosts_for(sshd, sftp_proxy.port, tmp_path),
                                   nearline_options='bandwidth = "30MB/s"', part_concurrency=1)
        setup = cloud.cloud_setup(tmp_path, dests)
        cloud.write_sources(setup, content)
        moments = [round(rng.uniform(0.0, 2.0), 2) for _ in range(KILLS)]
        print(f"\nseed {SEED}: SIGKILL at {moments} s after copies began in each run")
        began = time.monotonic()
        kills = kill_at(moments, setup, offsite, expected)
        daemon = DaemonProcess(setup)
        wait_until(lambda: all_verified(setup.root / "state/journal.db", len(content), 3), 120,
                   "every copy verified after the kills", daemon)
        kills.outputs.append(daemon.stop())
        seconds = time.monotonic() - began
        s3_up, sftp_up = s3_proxy.bytes_up, sftp_proxy.bytes_up
        for proxy in (s3_proxy, sftp_proxy):
            proxy.set_faults(Faults())  # full speed for the re-read
        audit = setup.cli("verify")  # the product's own re-read, through the proxies
    finally:
        s3_proxy.close()
        sftp_proxy.close()

    held = check_destinations(setup, offsite, expected)
    lost = sum(len(cloud.missing(found, expected)) for found in held.values())
    leftovers = {name: cloud.temp_names(found) for name, found in held.items() if cloud.temp_names(found)}
    resent = max(0, s3_up + sftp_up - 2 * total)  # protocol overhead included: an upper bound
    events = [json.loads(line) for out in kills.outputs for line in out.splitlines() if line.startswith("{")]
    resumed = sum(e["event"] == "s3_upload" and e["parts_at_server"] > 0 for e in events)
    FIGURES.scenario(
        "crash", f"{kills.survived} SIGKILLs survived ({kills.mid_copy} with copies in progress) in {seconds:.1f} s, "
        f"{len(content)} files ({mib(total)}) x 3 destinations, {lost} lost; off-site sent {mib(s3_up + sftp_up)} "
        f"for {mib(2 * total)} of files: {mib(resent)} re-sent at most (S3 {mib(s3_up)}, SFTP {mib(sftp_up)}; "
        f"{resumed} S3 uploads resumed with parts kept)",
        kills=kills.survived, lost=lost, resent=resent)

    assert lost == 0, {name: cloud.missing(found, expected) for name, found in held.items()}
    assert kills.mid_copy >= KILLS * 7 // 10, "most kills must land while copies are in progress"
    assert leftovers == {}, "temporary files left behind"
    assert offsite.open_uploads() == [], "multipart uploads left open"
    for rel, digest in expected.items():
        assert offsite.s3_metadata(rel)["xxh64"] == digest
    # Each kill costs at most what was in flight: 2 copies x one 5 MiB S3 part
    # (or a whole file of at most one part), 2 copies x a 256 KiB SFTP chunk,
    # an ASC MHL file or two; 1 MiB a kill covers those and the protocols' overhead.
    assert resent <= kills.survived * (2 * 5 * MiB + MiB), f"{resent} bytes re-sent"
    assert "Traceback" not in "".join(kills.outputs)
    assert audit.returncode == 0, audit.stdout + audit.stderr
