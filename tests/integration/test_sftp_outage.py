"""SFTP: a server that goes away and comes back costs a retry, never a copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from triplicate.destinations.base import NoResume, SourceFile
from triplicate.destinations.sftp import SftpDestination
from triplicate.errors import TransientError
from triplicate.hashing import xxh64_bytes

from tests.conformance.cases.sftp import config, fresh_folder

pytestmark = pytest.mark.servers

MiB = 1024 * 1024


def source(tmp_path: Path, name: str, data: bytes) -> SourceFile:
    path = tmp_path / name
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(path, f"A001/{name}", st.st_size, st.st_mtime_ns)


async def test_a_later_attempt_reconnects_after_sshd_restarts(sshd, tmp_path: Path) -> None:
    folder = fresh_folder(sshd)
    dest = SftpDestination(config(sshd, str(folder)))
    await dest.open()
    try:
        await dest.put(source(tmp_path, "before.mov", b"before"), NoResume())
        sshd.stop()
        try:
            with pytest.raises(TransientError):
                await dest.put(source(tmp_path, "during.mov", b"during"), NoResume())
        finally:
            sshd.start()
        receipt = await dest.put(source(tmp_path, "after.mov", b"after"), NoResume())
        assert receipt.xxh64 == xxh64_bytes(b"after")
        assert (folder / "A001" / "after.mov").read_bytes() == b"after"
        assert await dest.read_bytes("A001/before.mov") == b"before"
    finally:
        await dest.close()


async def test_a_connection_dropped_mid_transfer_is_resumed_within_the_put(
    sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = os.urandom(24 * MiB + 5)
    folder = fresh_folder(sshd)
    dest = SftpDestination(config(sshd, str(folder), chunk_size=MiB))
    sent = 0
    restarted = False

    def progress(n: int) -> None:
        nonlocal sent, restarted
        sent += n
        if sent >= 6 * MiB and not restarted:
            restarted = True
            sshd.restart()  # kills the live session (a real outage) and comes back at once

    await dest.open()
    try:
        receipt = await dest.put(source(tmp_path, "long.mov", data), NoResume(), progress)
    finally:
        if not sshd.running:
            sshd.start()
        await dest.close()
    assert restarted and receipt.xxh64 == xxh64_bytes(data) and receipt.bytes_sent == len(data)
    events = capsys.readouterr().out
    assert "sftp_connection_lost" in events and events.count("sftp_connected") == 2
    assert (folder / "A001" / "long.mov").read_bytes() == data
    assert [p.name for p in (folder / "A001").iterdir()] == ["long.mov"]
