"""Disk full at a local destination: an 8 MiB tmpfs as the nearline volume,
mostly taken by other data. The copy that does not fit fails with a clear
error and stays pending, nothing partial is left under its final name, the
other destination goes on, and the copy succeeds by itself once space is freed.

Needs root (mount); the tests run as root, and a machine where they cannot
mount fails here rather than skipping."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.harness import make_setup, write_file
from tests.reliability.figures import FIGURES
from tests.reliability.procs import DaemonProcess, all_verified, journal_states, wait_until

MiB = 1024 * 1024
OLD = 1_700_000_000.0
BIG = "G001/CLIPS/G001C002.mov"


@contextlib.contextmanager
def small_volume(path: Path, size: str = "8m") -> Iterator[Path]:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"cannot mount a tmpfs (root needed): {done.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_nearline_disk_full_then_freed(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, settle=0.2)
    content = {"G001/CLIPS/G001C001.mov": os.urandom(1 * MiB + 3), BIG: os.urandom(3 * MiB),
               "G001/META/take.xml": os.urandom(4000)}
    for rel, data in content.items():
        write_file(setup.watch / rel, data, mtime=OLD)
    journal = setup.root / "state/journal.db"
    with small_volume(setup.destinations["nearline"]) as volume:
        filler = volume / "other-project.bin"
        filler.write_bytes(os.urandom(5 * MiB))  # someone else's data: ~3 MiB left
        daemon = DaemonProcess(setup)
        try:
            wait_until(lambda: all(d.get("offsite") == "verified" for d in journal_states(journal).values())
                       and len(journal_states(journal)) == 3, 30, "offsite to finish", daemon)
            wait_until(lambda: any("disk full" in e.get("error", "") for e in daemon.events("copy_failed_will_retry")),
                       30, "the disk-full error", daemon)
            status = setup.status()
            row = next(f for f in status["files"] if f["path"] == BIG)
            nearline = next(d for d in status["destinations"] if d["name"] == "nearline")
            on_volume = sorted(p.name for p in volume.rglob("*") if p.is_file())
            freed = time.monotonic()
            filler.unlink()
            wait_until(lambda: all_verified(journal, 3, 2), 30, "the copy once space is free", daemon)
            after = time.monotonic() - freed
        finally:
            output = daemon.stop()
        copy = (volume / BIG).read_bytes()
    refusals = sum("disk full" in line for line in output.splitlines() if '"copy_failed_will_retry"' in line)
    FIGURES.scenario("disk-full", f"{refusals} attempts refused with '{row['errors']['nearline'][:60]}...'; "
                     f"held under final names meanwhile: {on_volume}; verified {after:.1f} s after space was freed",
                     faults=1, lost=int(copy != content[BIG]))

    assert row["destinations"] == {"nearline": "pending", "offsite": "verified"}
    assert "disk full" in row["errors"]["nearline"] and "free space" in row["errors"]["nearline"]
    assert nearline["backlog_files"] == 1 and nearline["backlog_bytes"] == 3 * MiB
    assert "G001C002.mov" not in on_volume, "nothing under the final name while the disk was full"
    assert not [n for n in on_volume if ".triplicate-" in n], "no temporary file left behind"
    assert copy == content[BIG]
    assert "Traceback" not in output
