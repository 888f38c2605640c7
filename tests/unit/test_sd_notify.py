"""sd_notify over a unix datagram socket the test binds, as systemd does."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from triplicate.service import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_messages_arrive_as_datagrams(notify_socket) -> None:
    path, sock = notify_socket
    notifier = SystemdNotifier(path)
    notifier.ready("backlog — nearline up to date")
    assert received(sock) == ["READY=1", "STATUS=backlog — nearline up to date", f"MAINPID={os.getpid()}"]
    notifier.stopping()
    assert received(sock)[0] == "STOPPING=1"
    notifier.close()


def test_abstract_socket_address() -> None:
    name = f"@triplicate-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    try:
        assert SystemdNotifier(name).notify("READY=1")
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier.from_environment()
    assert not notifier.enabled and notifier.notify("READY=1") is False


def test_watchdog_interval_is_half_the_timeout_and_only_for_this_process(monkeypatch, notify_socket) -> None:
    path, _ = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert SystemdNotifier.from_environment().watchdog_interval == 1.5
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert SystemdNotifier.from_environment().watchdog_interval is None


def test_a_blocked_event_loop_stops_the_pings(notify_socket) -> None:
    """The pings come from the event loop: while it is blocked none is sent, which
    is what lets systemd's watchdog restart a hung daemon."""
    path, sock = notify_socket
    notifier = SystemdNotifier(path, watchdog_usec=200_000)  # a ping every 0.1 s
    stamps: list[float] = []

    async def main() -> None:
        task = asyncio.create_task(notifier.run(lambda: "status", status_every=60))
        await asyncio.sleep(0.35)
        time.sleep(1.0)  # a hung loop
        await asyncio.sleep(0.35)
        task.cancel()

    asyncio.run(main())
    sock.settimeout(0.2)
    while True:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        if b"WATCHDOG=1" in data:
            stamps.append(time.monotonic())
    assert len(stamps) >= 5
    # received after the fact, so compare counts rather than arrival times: 0.7 s of
    # running loop at 0.1 s gives ~8 pings; a loop pinging from a thread would give ~17
    assert len(stamps) <= 11, f"{len(stamps)} pings: they are not tied to the event loop"
