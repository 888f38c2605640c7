"""SFTP: how copies are checked (xxhsum on the server, or read back) and how
stale temp files are found without listing a folder per file."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from triplicate.destinations.base import NoResume, SourceFile
from triplicate.destinations.sftp import SftpDestination
from triplicate.destinations.sftp_verify import RemoteHashes
from triplicate.errors import PermanentError, TransientError, VerificationFailed
from triplicate.hashing import xxh64_bytes

from tests.conformance.cases.sftp import config, fresh_folder

pytestmark = pytest.mark.servers

MiB = 1024 * 1024


def source(tmp_path: Path, key: str, data: bytes) -> SourceFile:
    path = tmp_path / key.replace("/", "_")
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(path, key, st.st_size, st.st_mtime_ns)


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def methods(logs: list[dict[str, Any]]) -> list[str]:
    return [e["method"] for e in logs if e["event"] == "sftp_verification"]


async def _no_read_back(self: RemoteHashes, path: str, size: int) -> tuple[str, int]:
    raise AssertionError(f"{path} was read back")


async def _no_remote_hash(self: RemoteHashes, command: str, path: str) -> tuple[str, int]:
    raise AssertionError(f"{path} was hashed on the server")


async def test_auto_hashes_big_copies_on_the_server(sshd, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = fresh_folder(sshd)
    data = os.urandom(3 * MiB + 5)
    with capture_logs() as logs:
        dest = SftpDestination(config(sshd, str(folder), remote_hash_min_size=MiB))
        await dest.open()
    monkeypatch.setattr(RemoteHashes, "read_back", _no_read_back)
    try:
        receipt = await dest.put(source(tmp_path, "A001/big.mov", data), NoResume())
        await dest.verify("A001/big.mov", xxh64_bytes(data), len(data))
        stored = folder / "A001" / "big.mov"
        with open(stored, "r+b") as fh:  # a bit flip after the fact
            fh.seek(len(data) // 2)
            fh.write(bytes([data[len(data) // 2] ^ 1]))
        with pytest.raises(VerificationFailed, match="big.mov"):
            await dest.verify("A001/big.mov", xxh64_bytes(data), len(data))
    finally:
        await dest.close()
    assert methods(logs) == ["remote-hash"]
    assert receipt.xxh64 == xxh64_bytes(data) and temps(folder) == []


async def test_small_copies_are_read_back_even_with_a_remote_hash(sshd, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = fresh_folder(sshd)
    data = os.urandom(MiB - 1)
    dest = SftpDestination(config(sshd, str(folder), verify="remote-hash", remote_hash_min_size=MiB))
    await dest.open()
    monkeypatch.setattr(RemoteHashes, "by_command", _no_remote_hash)
    try:
        receipt = await dest.put(source(tmp_path, "A001/small.mov", data), NoResume())
    finally:
        await dest.close()
    assert receipt.xxh64 == xxh64_bytes(data) and (folder / "A001" / "small.mov").read_bytes() == data


async def test_a_bad_copy_is_caught_by_the_remote_hash_and_removed(sshd, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = fresh_folder(sshd)
    data = os.urandom(2 * MiB)
    dest = SftpDestination(config(sshd, str(folder), verify="remote-hash", remote_hash_min_size=0))
    await dest.open()
    monkeypatch.setattr(RemoteHashes, "read_back", _no_read_back)
    real_send = SftpDestination._send

    async def send_then_damage(self: SftpDestination, reader: Any, remote: Any, offset: int, progress: Any) -> None:
        await real_send(self, reader, remote, offset, progress)
        await remote.write(b"\0" * 16, MiB)  # the server stores other bytes than were read

    monkeypatch.setattr(SftpDestination, "_send", send_then_damage)
    try:
        with pytest.raises(VerificationFailed, match="removed"):
            await dest.put(source(tmp_path, "A001/bad.mov", data), NoResume())
    finally:
        await dest.close()
    assert not (folder / "A001" / "bad.mov").exists() and temps(folder) == []


async def test_a_server_without_commands_gets_read_back(sshd_sftp_only, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = fresh_folder(sshd_sftp_only)
    data = os.urandom(MiB + 3)
    with capture_logs() as logs:
        dest = SftpDestination(config(sshd_sftp_only, str(folder), remote_hash_min_size=0))
        try:
            await asyncio.wait_for(dest.open(), 60)
            receipt = await dest.put(source(tmp_path, "A001/clip.mov", data), NoResume())
        finally:
            await dest.close()
    assert methods(logs) == ["read-back"]
    assert receipt.xxh64 == xxh64_bytes(data) and temps(folder) == []


async def test_remote_hash_required_but_missing_says_how_to_fix(sshd_sftp_only) -> None:  # type: ignore[no-untyped-def]
    folder = fresh_folder(sshd_sftp_only)
    dest = SftpDestination(config(sshd_sftp_only, str(folder), verify="remote-hash"))
    try:
        with pytest.raises(PermanentError) as caught:
            await asyncio.wait_for(dest.open(), 60)
    finally:
        await dest.close()
    message = str(caught.value)
    assert "apt-get install xxhash" in message and 'verify = "auto"' in message and len(message.splitlines()) == 1
    assert temps(folder) == [], "the probe file is removed"


async def test_a_folder_is_listed_once_and_this_runs_temps_are_removed_by_name(sshd, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = fresh_folder(sshd)
    (folder / "A001").mkdir()
    left = folder / "A001" / ".f3.mov.triplicate-1-1.tmp"  # a killed process's
    left.write_bytes(b"old")
    listed: list[object] = []
    import asyncssh

    real_listdir = asyncssh.SFTPClient.listdir

    async def listdir(self: Any, path: Any = ".") -> Any:
        listed.append(path)
        return await real_listdir(self, path)

    monkeypatch.setattr(asyncssh.SFTPClient, "listdir", listdir)
    dest = SftpDestination(config(sshd, str(folder), verify="read-back"))
    started = asyncio.Event()
    try:
        for i in range(5):
            await dest.put(source(tmp_path, f"A001/f{i}.mov", os.urandom(1000)), NoResume())
        assert not left.exists() and listed == [str(folder / "A001").encode()]

        # An attempt cancelled mid-transfer keeps its temp for a resume...
        big = source(tmp_path, "A001/big.mov", os.urandom(4 * MiB))

        def progress(n: int) -> None:
            started.set()

        put = asyncio.ensure_future(dest.put(big, NoResume(), progress))
        await asyncio.wait_for(started.wait(), 30)
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        assert [n for n in temps(folder) if n.startswith(".big.mov")], "the cancelled attempt left its temp"
        # ...which the next put of that name (with no resume state) removes, without listing again.
        await dest.put(big, NoResume())
    finally:
        await dest.close()
    assert temps(folder) == [] and len(listed) == 1


async def test_puts_into_a_listed_folder_look_up_nothing(sshd, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # a frame sequence: each stat is a round trip per file (the folder made
    # sure of, the final name looked for), which the folder's one listing answers
    folder = fresh_folder(sshd)
    import asyncssh

    looked: list[object] = []
    real_stat = asyncssh.SFTPClient.stat

    async def stat(self: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        looked.append(path)
        return await real_stat(self, path, *args, **kwargs)

    monkeypatch.setattr(asyncssh.SFTPClient, "stat", stat)
    dest = SftpDestination(config(sshd, str(folder), verify="read-back"))
    try:
        await dest.put(source(tmp_path, "A001/f0.dpx", os.urandom(1000)), NoResume())
        looked.clear()
        for i in range(1, 6):
            data = os.urandom(1000)
            # the hash known (another destination has the file): an identical copy would be looked for
            src = dataclasses.replace(source(tmp_path, f"A001/f{i}.dpx", data), xxh64=xxh64_bytes(data))
            await dest.put(src, NoResume())
        assert looked == []
        # a name already there is still looked at, and kept when identical
        data = (folder / "A001" / "f3.dpx").read_bytes()
        again = dataclasses.replace(source(tmp_path, "A001/f3.dpx", data), xxh64=xxh64_bytes(data))
        assert (await dest.put(again, NoResume())).skipped and len(looked) == 1
    finally:
        await dest.close()


async def test_a_folder_removed_behind_a_running_destination_is_made_again(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = fresh_folder(sshd)
    dest = SftpDestination(config(sshd, str(folder), verify="read-back"))
    try:
        await dest.put(source(tmp_path, "A001/f0.dpx", b"first"), NoResume())
        shutil.rmtree(folder / "A001")
        for attempt in range(2):  # the first may fail (the folder was known), the scheduler's retry may not
            try:
                await dest.put(source(tmp_path, "A001/f1.dpx", b"second"), NoResume())
                break
            except TransientError:
                assert attempt == 0
    finally:
        await dest.close()
    assert (folder / "A001" / "f1.dpx").read_bytes() == b"second"


async def test_a_read_back_asks_for_the_expected_bytes_and_one_more(sshd, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import asyncssh

    reads: list[tuple[int, int]] = []
    real_read = asyncssh.sftp.SFTPClientHandler.read

    async def read(self: Any, handle: bytes, offset: int, length: int) -> Any:
        reads.append((offset, length))
        return await real_read(self, handle, offset, length)

    monkeypatch.setattr(asyncssh.sftp.SFTPClientHandler, "read", read)
    folder = fresh_folder(sshd)
    dest = SftpDestination(config(sshd, str(folder), verify="read-back"))
    data = os.urandom(100_000)
    try:
        await dest.put(source(tmp_path, "A001/f.dpx", data), NoResume())
        # one request for the bytes (a chunk-sized read was 32 requests) and one for the end
        assert reads == [(0, 100_000), (100_000, 1)]
        grown, shrunk = data + b"tail", data[:-10]
        for changed in (grown, shrunk):
            (folder / "A001" / "f.dpx").write_bytes(changed)
            with pytest.raises(VerificationFailed, match=f"\\({len(changed)} bytes\\)"):
                await dest.verify("A001/f.dpx", xxh64_bytes(data), len(data))
        (folder / "A001" / "f.dpx").write_bytes(data)
        await dest.verify("A001/f.dpx", xxh64_bytes(data), len(data))
    finally:
        await dest.close()


async def test_aes_gcm_is_preferred_and_nothing_is_compressed(sshd) -> None:  # type: ignore[no-untyped-def]
    dest = SftpDestination(config(sshd, str(fresh_folder(sshd)), verify="read-back"))
    await dest.open()
    try:
        conn = (await dest._pool.get()).conn
        ciphers = (conn.get_extra_info("send_cipher"), conn.get_extra_info("recv_cipher"))
        compression = (conn.get_extra_info("send_compression"), conn.get_extra_info("recv_compression"))
    finally:
        await dest.close()
    assert ciphers == ("aes128-gcm@openssh.com", "aes128-gcm@openssh.com")
    assert compression == ("none", "none")


@pytest.mark.parametrize("verify", ["auto", "remote-hash"])
async def test_a_hash_command_that_breaks_after_open(verify: str, sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = fresh_folder(sshd)
    data = os.urandom(MiB)
    with capture_logs() as logs:
        dest = SftpDestination(config(sshd, str(folder), verify=verify, remote_hash_min_size=0))
        await dest.open()
        dest._hashes.command = "false"  # as if xxhsum were uninstalled since: runs, prints nothing, exits 1
        try:
            if verify == "auto":
                receipt = await dest.put(source(tmp_path, "A001/clip.mov", data), NoResume())
            else:
                with pytest.raises(TransientError, match="printed no hash"):
                    await dest.put(source(tmp_path, "A001/clip.mov", data), NoResume())
        finally:
            await dest.close()
    failed = [e for e in logs if e["event"] == "sftp_remote_hash_failed"]
    if verify == "auto":
        assert receipt.xxh64 == xxh64_bytes(data) and (folder / "A001" / "clip.mov").read_bytes() == data
        assert len(failed) == 1 and dest._hashes.command is None
    else:
        assert failed == [] and not (folder / "A001" / "clip.mov").exists()


async def test_the_cutoff_between_hash_and_read_back_is_measured(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Unset remote_hash_min_size: the probe times a command, the first
    read-back times the link, and the cut-off is their product."""
    folder = fresh_folder(sshd)
    dest = SftpDestination(config(sshd, str(folder)))
    with capture_logs() as logs:
        await dest.open()
        try:
            assert dest._hashes.costs.command_seconds is not None and dest._hashes.costs.command_seconds > 0
            first = os.urandom(MiB)  # under the unmeasured cut-off: read back, which times the link
            receipts = [await dest.put(source(tmp_path, "A001/first.mov", first), NoResume())]
            cutoff = dest._hashes.costs.cutoff()
            assert cutoff == int(dest._hashes.costs.command_seconds * dest._hashes.costs.read_rate)
            above = os.urandom(cutoff + 1)
            below = os.urandom(max(1, cutoff // 4))
            receipts.append(await dest.put(source(tmp_path, "A001/above.mov", above), NoResume()))
            receipts.append(await dest.put(source(tmp_path, "A001/below.mov", below), NoResume()))
        finally:
            await dest.close()
    assert methods(logs) == ["remote-hash"]
    assert [r.evidence["verified_by"] for r in receipts] == ["read-back", "remote-hash", "read-back"]
    for name, data in (("first", first), ("above", above), ("below", below)):
        assert (folder / "A001" / f"{name}.mov").read_bytes() == data
