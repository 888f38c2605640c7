"""Network faults: a proxy between the daemon and each off-site server resets
connections, stalls them, flips bits on the wire and cuts the bandwidth; every
file still arrives, verified, and reads back right."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import cloud
from tests.reliability.faultproxy import FaultProxy, Faults
from tests.reliability.figures import FIGURES, mib
from tests.reliability.procs import DaemonProcess, all_verified, wait_until

pytestmark = pytest.mark.servers

MiB = 1024 * 1024
SEED = int(os.environ.get("TRIPLICATE_RELIABILITY_SEED", "3210"))
RATE = 6_000_000  # bytes/s: the cut bandwidth, per server


def test_resets_stalls_flips_and_a_thin_pipe(tmp_path: Path, seaweed: Any, sshd: Any, monkeypatch: Any) -> None:
    rng = random.Random(SEED)
    content = {f"C001/CLIPS/C001C00{i}.mov": rng.randbytes(8 * MiB + i) for i in range(2)}
    content.update({f"C001/META/take{i}.xml": rng.randbytes(40_000 * (i + 1)) for i in range(3)})
    expected = {rel: cloud.xxh(data) for rel, data in content.items()}
    offsite = cloud.Offsite.fresh(seaweed, sshd)
    for name, value in offsite.env().items():
        monkeypatch.setenv(name, value)
    def faults(http_bodies: bool) -> Faults:
        return Faults(reset=0.4, stall=0.3, flip=0.3, offsets=(64 * 1024, 4 * MiB), stall_seconds=(0.5, 2.0),
                      rate=RATE, max_faults=8, http_bodies=http_bodies)

    s3_proxy = FaultProxy(seaweed.port, faults(http_bodies=True), seed=SEED).start()
    sftp_proxy = FaultProxy(sshd.port, faults(http_bodies=False), seed=SEED + 1).start()
    try:
        dests = cloud.destinations(offsite, s3_endpoint=s3_proxy.url, sftp_port=sftp_proxy.port,
                                   known_hosts=cloud.known_hosts_for(sshd, sftp_proxy.port, tmp_path))
        setup = cloud.cloud_setup(tmp_path, dests)
        cloud.write_sources(setup, content)
        journal = setup.root / "state/journal.db"
        began = time.monotonic()
        daemon = DaemonProcess(setup)
        try:
            wait_until(lambda: all_verified(journal, len(content), 3), 150, "every copy verified", daemon)
        finally:
            output = daemon.stop()
        seconds = time.monotonic() - began
    finally:
        s3_proxy.close()
        sftp_proxy.close()

    held = {"nearline": cloud.tree(setup.destinations["nearline"]), "s3": offsite.s3_objects(),
            "sftp": cloud.tree(offsite.remote)}
    lost = sum(len(cloud.missing(found, expected)) for found in held.values())
    kinds = {k: s3_proxy.counts().get(k, 0) + sftp_proxy.counts().get(k, 0) for k in ("reset", "stall", "flip")}
    faults = sum(kinds.values())
    retries = sum('"copy_failed_will_retry"' in line or "_request_retry" in line or "connection_lost" in line
                  for line in output.splitlines())
    total = sum(map(len, content.values()))
    FIGURES.scenario(
        "network", f"{faults} faults ({kinds['reset']} resets, {kinds['stall']} stalls, {kinds['flip']} flipped bits) "
        f"over {s3_proxy.connections + sftp_proxy.connections} connections at {RATE / 1e6:.0f} MB/s; "
        f"{len(content)} files ({mib(total)}) x 3 verified in {seconds:.1f} s after {retries} retries; {lost} lost",
        faults=faults, lost=lost)

    assert lost == 0
    for name, found in held.items():
        assert cloud.torn(found, expected) == [], name
        assert cloud.temp_names(found) == [], f"temporary files left at {name}"
    assert min(kinds.values()) >= 1, f"every kind of fault injected: {s3_proxy.injected} {sftp_proxy.injected}"
    assert offsite.open_uploads() == []
    assert "Traceback" not in output, output[output.find("Traceback") - 300:][:4000]
