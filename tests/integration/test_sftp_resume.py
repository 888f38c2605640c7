"""SFTP: temp files, resume after a kill, and what a put leaves behind."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest

from triplicate.destinations.base import NoResume, SourceFile
from triplicate.destinations.sftp import SftpDestination
from triplicate.errors import VerificationFailed
from triplicate.hashing import hash_file, new_digest, xxh64_bytes

from tests.conformance.cases.sftp import config, fresh_folder
from tests.conformance.crash import kill_and_resume

pytestmark = pytest.mark.servers

MiB = 1024 * 1024


class MemResume:
    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.state = state
        self.saves = 0

    def load(self) -> dict[str, Any] | None:
        return self.state

    def save(self, state: dict[str, Any]) -> None:
        self.state = dict(state)
        self.saves += 1

    def clear(self) -> None:
        self.state = None


def source(tmp_path: Path, name: str, data: bytes, mtime_ns: int | None = None) -> SourceFile:
    path = tmp_path / name
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    st = path.stat()
    return SourceFile(path, f"A001/{name}", st.st_size, st.st_mtime_ns)


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def paramiko_xxh64(sshd, path: str) -> tuple[str, int, list[str]]:  # type: ignore[no-untyped-def]
    """Hash a remote file and list its folder with another SFTP client."""
    ssh = paramiko.SSHClient()
    ssh.load_host_keys(str(sshd.known_hosts))
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(sshd.host, port=sshd.port, username=sshd.username, key_filename=str(sshd.client_key),
                look_for_keys=False, allow_agent=False, timeout=10)
    try:
        sftp = ssh.open_sftp()
        digest, total = new_digest("xxh64"), 0
        with sftp.open(path, "rb") as fh:
            fh.prefetch()
            while data := fh.read(4 * MiB):
                digest.update(data)
                total += len(data)
        return digest.hexdigest(), total, sftp.listdir(os.path.dirname(path))
    finally:
        ssh.close()


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        for _ in range(size // (8 * MiB)):
            fh.write(os.urandom(8 * MiB))
        fh.write(os.urandom(size % (8 * MiB)))


def test_kill_and_resume_300mb(sshd, tmp_path: Path) -> None:
    size, chunk = 300 * 1000 * 1000, 8 * MiB
    src = tmp_path / "A001C001.mov"
    write_random(src, size)
    folder = fresh_folder(sshd)
    destination = {
        "name": "facility-b", "type": "sftp", "host": sshd.host, "port": sshd.port, "username": sshd.username,
        "key_file": str(sshd.client_key), "known_hosts": str(sshd.known_hosts), "path": str(folder),
        "chunk_size": chunk, "connections": 1,
    }
    began = time.monotonic()
    result = kill_and_resume(tmp_path, destination, src, "A001/C001.mov", kill_after=size // 3)
    seconds = time.monotonic() - began
    print(f"\nsftp kill+resume of {size / 1e6:.0f} MB: killed after {result.progress_at_kill / 1e6:.1f} MB, "
          f"second run sent {result.second_run_sent / 1e6:.1f} MB, re-sent {result.resent} bytes, {seconds:.1f} s")
    assert result.resent <= 1 * chunk  # one connection, one chunk in flight
    expected, _ = hash_file(src)
    found, length, names = paramiko_xxh64(sshd, str(folder / "A001" / "C001.mov"))
    assert (found, length) == (expected, size) and result.xxh64 == expected
    assert names == ["C001.mov"], "a temp file was left behind"


async def test_a_bad_remote_prefix_is_caught_and_removed(sshd, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    src = source(tmp_path, "bad.mov", data)
    folder = fresh_folder(sshd)
    (folder / "A001").mkdir()
    tmp = folder / "A001" / ".bad.mov.triplicate-1-1.tmp"
    tmp.write_bytes(b"\0" * MiB)  # not what the source holds
    resume = MemResume({"tmp": str(tmp), "size": src.size, "mtime_ns": src.mtime_ns})
    dest = SftpDestination(config(sshd, str(folder), chunk_size=MiB))
    try:
        with pytest.raises(VerificationFailed, match="removed"):
            await dest.put(src, resume)
        assert temps(folder / "A001") == [] and resume.state is None
        assert not (folder / "A001" / "bad.mov").exists()
        receipt = await dest.put(src, resume)
    finally:
        await dest.close()
    assert receipt.bytes_sent == len(data) and (folder / "A001" / "bad.mov").read_bytes() == data


async def test_a_resumed_put_sends_only_the_rest(sshd, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 11)
    src = source(tmp_path, "half.mov", data)
    folder = fresh_folder(sshd)
    (folder / "A001").mkdir()
    tmp = folder / "A001" / ".half.mov.triplicate-1-1.tmp"
    tmp.write_bytes(data[: 2 * MiB + 3])
    resume = MemResume({"tmp": str(tmp), "size": src.size, "mtime_ns": src.mtime_ns})
    sent: list[int] = []
    dest = SftpDestination(config(sshd, str(folder), chunk_size=MiB))
    try:
        receipt = await dest.put(src, resume, sent.append)
    finally:
        await dest.close()
    assert receipt.bytes_sent == sum(sent) == len(data) - (2 * MiB + 3)
    assert receipt.xxh64 == xxh64_bytes(data) and resume.state is None and resume.saves == 0
    assert (folder / "A001" / "half.mov").read_bytes() == data and temps(folder / "A001") == []


async def test_stale_temps_go_and_resume_state_of_another_version_is_ignored(sshd, tmp_path: Path) -> None:
    src = source(tmp_path, "clip.mov", b"new version " * 1000)
    folder = fresh_folder(sshd)
    (folder / "A001").mkdir()
    stale = [".clip.mov.triplicate-1-1.tmp", ".clip.mov.triplicate-2-2.tmp"]
    other = ".other.mov.triplicate-3-3.tmp"  # another file's transfer: not ours to touch
    for name in [*stale, other]:
        (folder / "A001" / name).write_bytes(b"old version")
    resume = MemResume({"tmp": str(folder / "A001" / stale[0]), "size": src.size, "mtime_ns": src.mtime_ns - 1})
    dest = SftpDestination(config(sshd, str(folder)))
    try:
        receipt = await dest.put(src, resume)
    finally:
        await dest.close()
    # one chunk, the resume unit: nothing worth saving, and the other version's state is gone
    assert receipt.bytes_sent == src.size and resume.saves == 0 and resume.state is None
    assert temps(folder / "A001") == [other]
    assert (folder / "A001" / "clip.mov").read_bytes() == b"new version " * 1000


async def test_mtime_follows_the_source(sshd, tmp_path: Path) -> None:
    mtime_ns = 1_600_000_000_123_456_789
    src = source(tmp_path, "dated.mov", b"x" * 100, mtime_ns=mtime_ns)
    folder = fresh_folder(sshd)
    dest = SftpDestination(config(sshd, str(folder)))
    try:
        await dest.put(src, NoResume())
        found = await dest.stat("A001/dated.mov")
    finally:
        await dest.close()
    assert (folder / "A001" / "dated.mov").stat().st_mtime_ns // 10**9 == mtime_ns // 10**9  # SFTP v3: seconds
    assert found is not None and found.mtime_ns is not None and found.mtime_ns // 10**9 == mtime_ns // 10**9


async def test_overwrite_without_posix_rename(sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unsupported(self: object, oldpath: object, newpath: object) -> None:
        raise asyncssh.SFTPOpUnsupported("posix-rename not supported")

    monkeypatch.setattr(asyncssh.SFTPClient, "posix_rename", unsupported)
    folder = fresh_folder(sshd)
    dest = SftpDestination(config(sshd, str(folder)))
    try:
        await dest.put(source(tmp_path, "clip.mov", b"first"), NoResume())
        await dest.put(source(tmp_path, "clip.mov", b"second, longer"), NoResume())
        await dest.write_bytes("A001/ascmhl/chain.xml", b"<chain/>")
        await dest.write_bytes("A001/ascmhl/chain.xml", b"<chain>2</chain>")
    finally:
        await dest.close()
    assert (folder / "A001" / "clip.mov").read_bytes() == b"second, longer"
    assert (folder / "A001" / "ascmhl" / "chain.xml").read_bytes() == b"<chain>2</chain>"
    assert temps(folder / "A001") == [] and temps(folder / "A001" / "ascmhl") == []


async def test_connections_share_the_transfers(sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = fresh_folder(sshd)
    dest = SftpDestination(config(sshd, str(folder), connections=2, chunk_size=MiB))
    blobs = {f"c{i}.mov": os.urandom(2 * MiB + i) for i in range(4)}
    try:
        receipts = await asyncio.gather(*(dest.put(source(tmp_path, n, b), NoResume()) for n, b in blobs.items()))
    finally:
        await dest.close()
    assert [r.xxh64 for r in receipts] == [xxh64_bytes(b) for b in blobs.values()]
    for name, blob in blobs.items():
        assert (folder / "A001" / name).read_bytes() == blob
    assert capsys.readouterr().out.count("sftp_connected") == 2  # four files, two connections
