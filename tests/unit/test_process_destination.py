"""A destination in a process of its own (destinations/process.py): the
calls, errors, cancellation and deaths that cross the pipe. A local folder
destination stands in for the network types here; the conformance suite runs
S3, SFTP and Azure through the same wrapper against the real servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
import xxhash
from triplicate.bandwidth import Throttle
from triplicate.destinations import registry
from triplicate.destinations.base import NoResume, SourceFile
from triplicate.destinations.local import LocalConfig
from triplicate.destinations.process import ProcessDestination
from triplicate.destinations.process_host import _ship_logs
from triplicate.destinations.process_wire import Sender, read_message
from triplicate.destinations.s3 import S3Config
from triplicate.errors import PermanentError, TransientError, VerificationFailed
from triplicate.shared_read import COUNTERS

MiB = 1024 * 1024


def _source(tmp_path: Path, size: int, name: str = "clip.mov") -> tuple[SourceFile, bytes]:
    data = os.urandom(size)
    path = tmp_path / "card" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    st = path.stat()
    return SourceFile(path, f"A001/{name}", st.st_size, st.st_mtime_ns), data


def _dest(root: Path) -> ProcessDestination:
    root.mkdir(exist_ok=True)
    return ProcessDestination(LocalConfig(type="local", name="nearline", path=root))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has not been reaped yet but is gone
        return fh.read().split(") ")[1].startswith("Z")


async def _until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_every_call_crosses_and_its_answer_comes_back(tmp_path: Path) -> None:
    dest = _dest(tmp_path / "nearline")
    src, data = _source(tmp_path, 3 * MiB + 5)
    before = COUNTERS.read_bytes
    sent: list[int] = []
    try:
        await dest.open()
        child = dest.pid
        assert child is not None and child != os.getpid()
        receipt = await dest.put(src, NoResume(), sent.append)
        assert receipt.xxh64 == xxhash.xxh64(data).hexdigest() and receipt.size == len(data)
        assert sum(sent) == len(data)  # progress arrives, summed, before the answer
        assert COUNTERS.read_bytes - before == len(data)  # the child's reads are counted here
        assert (tmp_path / "nearline" / "A001/clip.mov").read_bytes() == data
        stored = await dest.stat("A001/clip.mov")
        assert stored is not None and stored.size == len(data)
        await dest.verify("A001/clip.mov", receipt.xxh64, len(data))
        await dest.write_bytes("A001/ascmhl/x.mhl", b"<hashlist/>")
        assert await dest.read_bytes("A001/ascmhl/x.mhl") == b"<hashlist/>"
        assert await dest.read_bytes("A001/absent") is None
        await dest.delete("A001/ascmhl/x.mhl")
        assert await dest.stat("A001/ascmhl/x.mhl") is None
        assert dest.pid == child  # one child for every call
    finally:
        await dest.close()
    assert dest.pid is None and _gone(child)


async def test_named_errors_arrive_as_themselves(tmp_path: Path) -> None:
    missing = ProcessDestination(LocalConfig(type="local", name="nearline", path=tmp_path / "not-mounted"))
    try:
        with pytest.raises(PermanentError, match="not-mounted"):
            await missing.open()
    finally:
        await missing.close()
    dest = _dest(tmp_path / "nearline")
    src, data = _source(tmp_path, 1000)
    try:
        await dest.open()
        await dest.put(src, NoResume())
        with pytest.raises(VerificationFailed):
            await dest.verify("A001/clip.mov", "0" * 16, len(data))
    finally:
        await dest.close()


async def test_a_child_that_dies_fails_its_calls_and_the_next_call_starts_another(tmp_path: Path) -> None:
    dest = _dest(tmp_path / "nearline")
    src, data = _source(tmp_path, 8 * MiB)
    slow = Throttle(2 * MiB)  # bytes per second: the put is still running when the child dies
    try:
        await dest.open()
        first = dest.pid
        assert first is not None
        put = asyncio.create_task(dest.put(SourceFile(src.path, src.key, src.size, src.mtime_ns, limiter=slow), NoResume()))
        await _until(lambda: list((tmp_path / "nearline").rglob("*.tmp")), "the copy to begin")
        os.kill(first, signal.SIGKILL)
        with pytest.raises(TransientError, match="process ended"):
            await put
        receipt = await dest.put(src, NoResume())  # a new child, opened again before its first call
        assert dest.pid not in (None, first)
        assert receipt.xxh64 == xxhash.xxh64(data).hexdigest()
    finally:
        await dest.close()


async def test_a_cancelled_put_is_wound_down_in_the_child(tmp_path: Path) -> None:
    root = tmp_path / "nearline"
    dest = _dest(root)
    src, _ = _source(tmp_path, 16 * MiB)
    slow = Throttle(1 * MiB)
    try:
        await dest.open()
        put = asyncio.create_task(dest.put(SourceFile(src.path, src.key, src.size, src.mtime_ns, limiter=slow), NoResume()))
        await _until(lambda: list(root.rglob("*.tmp")), "the copy to begin")
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        assert not dest._calls  # the child answered for the cancelled call before ours returned
        assert await dest.stat("A001/clip.mov") is None  # nothing half-made is visible
        child = dest.pid
        unlimited = SourceFile(src.path, src.key, src.size, src.mtime_ns, limiter=Throttle(None))  # the rate goes with it
        receipt = await dest.put(unlimited, NoResume())  # the same child goes on with the next call
        assert dest.pid == child and receipt.size == src.size
    finally:
        await dest.close()


async def test_the_child_leaves_signals_to_the_daemon(tmp_path: Path) -> None:
    """systemd's stop sends SIGTERM to the whole cgroup, a terminal's Ctrl-C to
    the whole process group: the daemon decides how its children end."""
    dest = _dest(tmp_path / "nearline")
    try:
        await dest.open()
        child = dest.pid
        assert child is not None
        # open() has been answered: the child set its signal handling before it read its first message
        os.kill(child, signal.SIGTERM)
        os.kill(child, signal.SIGINT)
        assert await dest.stat("nothing") is None
        assert dest.pid == child
    finally:
        await dest.close()


def test_a_loop_ended_under_an_open_destination_ends_its_child(tmp_path: Path) -> None:
    """An event loop that ends with the destination still open (a failure
    before close()) cancels the task reading the child's messages; that must
    end the child, not wait for it: it waits for a stdin nobody will close."""
    dest = _dest(tmp_path / "copies")
    pids: list[int] = []
    ended = threading.Event()

    async def left_open() -> None:
        await dest.open()
        pids.append(dest.pid or 0)

    def run() -> None:
        asyncio.run(left_open())
        ended.set()

    threading.Thread(target=run, daemon=True).start()
    assert ended.wait(30), "the loop's teardown waited for the child"
    assert pids[0] > 0 and _gone(pids[0])


def test_the_child_dies_with_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "nearline").mkdir()
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from triplicate.destinations.local import LocalConfig
        from triplicate.destinations.process import ProcessDestination
        async def main():
            dest = ProcessDestination(LocalConfig(type="local", name="n", path=Path({str(tmp_path / "nearline")!r})))
            await dest.open()
            print("child", dest.pid, flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
    """)
    daemon = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = next(int(line.split()[1]) for line in daemon.stdout if line.startswith("child "))  # type: ignore[union-attr]
        daemon.kill()
        daemon.wait()
        deadline = time.monotonic() + 10
        while not _gone(child):
            assert time.monotonic() < deadline, "the child outlived the daemon"
            time.sleep(0.02)
    finally:
        daemon.kill()


def test_log_events_go_to_the_daemon_with_secrets_masked() -> None:
    saved = structlog.get_config()
    read_end, write_end = os.pipe()
    try:
        _ship_logs(Sender(write_end), "info")
        structlog.get_logger().info("sftp_connected", server="127.0.0.1:22", password="hunter2", port=22)
        structlog.get_logger().debug("below_the_level")
        structlog.get_logger().warning("s3_retry", attempt=2)
        os.close(write_end)
        messages = []
        while (message := read_message(read_end)) is not None:
            messages.append(message)
    finally:
        structlog.configure(**saved)
        os.close(read_end)
    assert [m[:2] for m in messages] == [("log", "info"), ("log", "warning")]
    assert messages[0][2] == {"event": "sftp_connected", "server": "127.0.0.1:22", "password": "***", "port": 22}


def test_network_destinations_run_apart_on_more_than_one_core(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s3 = S3Config(type="s3", name="offsite", bucket="camera-rolls")
    local = LocalConfig(type="local", name="nearline", path=tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert registry.runs_apart(s3) and not registry.runs_apart(local)
    assert isinstance(registry.create_for_daemon(s3), ProcessDestination)
    assert registry.runs_apart(local.model_copy(update={"own_process": True}))
    assert not registry.runs_apart(s3.model_copy(update={"own_process": False}))
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert not registry.runs_apart(s3)
