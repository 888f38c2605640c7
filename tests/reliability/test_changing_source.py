"""Changing source: a file appended to, or rewritten in place (same size, its
mtime put back, as `rsync --inplace -t` can leave it), while nearline, S3 and
SFTP are all in the middle of reading it, is never marked verified in its old
version; the new version is sent."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import cloud
from tests.reliability.figures import FIGURES
from tests.reliability.procs import DaemonProcess, all_verified, journal_states, wait_until

pytestmark = pytest.mark.servers

MiB = 1024 * 1024
CLIP = "F001/CLIPS/F001C001.mov"
SLOW = 'bandwidth = "4MB/s"'  # every destination reads the 12 MiB clip for ~3 s


def sftp_temp_size(remote: Path) -> int:
    return max((p.stat().st_size for p in remote.rglob(".F001C001.mov.triplicate-*")), default=0)


def versions(journal: Path) -> list[tuple[str | None, int, list[str]]]:
    """(xxh64, current, verified destinations) of every version of the clip."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT f.id, f.xxh64, f.current, GROUP_CONCAT(CASE WHEN c.state = 'verified' THEN c.destination END) "
            "FROM files f JOIN copies c ON c.file_id = f.id WHERE f.relpath = ? GROUP BY f.id ORDER BY f.id", (CLIP,)
        ).fetchall()
    finally:
        db.close()
    return [(xxh64, current, sorted(verified.split(",")) if verified else []) for _, xxh64, current, verified in rows]


def change(path: Path, how: str, rng: random.Random) -> None:
    if how == "append":
        with open(path, "ab") as fh:
            fh.write(rng.randbytes(MiB))
        return
    st = path.stat()
    with open(path, "r+b") as fh:  # the start, which every reader has already passed
        fh.write(rng.randbytes(256 * 1024))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("how", ["append", "rewrite"])
def test_file_changed_while_every_destination_reads_it(how: str, tmp_path: Path, seaweed: Any, sshd: Any,
                                                       monkeypatch: Any) -> None:
    rng = random.Random(how)
    old = rng.randbytes(12 * MiB)
    offsite = cloud.Offsite.fresh(seaweed, sshd)
    for name, value in offsite.env().items():
        monkeypatch.setenv(name, value)
    dests = cloud.destinations(offsite, s3_options=SLOW, sftp_options=SLOW, nearline_options=SLOW)
    setup = cloud.cloud_setup(tmp_path, dests)
    cloud.write_sources(setup, {CLIP: old, "F001/META/take.xml": b"<take/>"})
    journal = setup.root / "state/journal.db"
    clip = setup.watch / CLIP

    daemon = DaemonProcess(setup)
    try:
        wait_until(lambda: set(journal_states(journal).get(CLIP, {}).values()) == {"transferring"}
                   and sftp_temp_size(offsite.remote) >= MiB, 30, "all three destinations reading the clip", daemon)
        change(clip, how, rng)
        new = clip.read_bytes()
        wait_until(lambda: all_verified(journal, 2, 3) and versions(journal)[-1][0] == cloud.xxh(new), 60,
                   "the new version verified everywhere", daemon)
    finally:
        output = daemon.stop()

    history = versions(journal)
    old_verified = [dests for xxh64, _, dests in history if xxh64 == cloud.xxh(old) and dests]
    changed_events = output.count('"source_changed"')
    held = {"nearline": cloud.tree(setup.destinations["nearline"]), "s3": offsite.s3_objects(),
            "sftp": cloud.tree(offsite.remote)}
    wrong = {name: found.get(CLIP) != new for name, found in held.items()}
    FIGURES.scenario(f"changing-source-{how}", f"changed mid-read at 3 destinations: {changed_events} reads refused "
                     f"(source_changed), {len(history)} versions in the journal, old version verified at "
                     f"{old_verified or 'none'}, new version held by {[n for n, w in wrong.items() if not w]}",
                     faults=1, lost=sum(wrong.values()))

    assert old_verified == [], "the old version was marked verified"
    assert '"copy_verified"' not in _lines_with(output, cloud.xxh(old)), "a copy of the old version was logged verified"
    assert not any(wrong.values()), wrong
    assert history[-1][1] == 1 and history[-1][2] == ["nearline", "s3", "sftp"]
    assert offsite.s3_metadata(CLIP)["xxh64"] == cloud.xxh(new)


def _lines_with(output: str, text: str) -> str:
    return "\n".join(line for line in output.splitlines() if text in line)
