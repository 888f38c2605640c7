"""The real daemon under systemd's notify protocol: a socket bound by the test
stands in for systemd (NOTIFY_SOCKET, WATCHDOG_USEC)."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.harness import make_setup, write_file

OLD = time.time() - 3600


class FakeSystemd:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[list[str]] = []

    def until(self, wanted: str, timeout: float = 20) -> list[str]:
        """Read datagrams until one holds `wanted`; returns that one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode().split("\n")
            except TimeoutError:
                break
            self.messages.append(message)
            if wanted in message or any(m.startswith(wanted) for m in message):
                return message
        raise AssertionError(f"no {wanted} within {timeout} s; got {self.messages}")


def test_ready_watchdog_status_reload_and_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = make_setup(tmp_path)
    write_file(setup.watch / "S001/clip.mov", b"s" * 10_000, mtime=OLD)
    systemd = FakeSystemd(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # WatchdogSec=0.4s: a ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = setup.start()
    try:
        ready = systemd.until("READY=1")
        assert f"MAINPID={daemon.pid}" in ready
        assert (tmp_path / "state/journal.db").exists()
        status = next(m for m in ready if m.startswith("STATUS="))
        assert "nearline" in status and "offsite" in status, status

        started = time.monotonic()
        for _ in range(5):
            systemd.until("WATCHDOG=1", timeout=2)
        per_ping = (time.monotonic() - started) / 5
        print(f"watchdog pings every {per_ping:.2f} s (WatchdogSec 0.4 s)")
        assert per_ping < 0.4

        daemon.send_signal(signal.SIGHUP)
        systemd.until("RELOADING=1")
        systemd.until("READY=1")

        daemon.send_signal(signal.SIGTERM)
        systemd.until("STOPPING=1")
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.communicate(timeout=10)
        systemd.sock.close()
    statuses = [m for msg in systemd.messages for m in msg if m.startswith("STATUS=")]
    assert statuses and all("backlog" in s or "reloading" in s or "stopping" in s for s in statuses)


def test_without_systemd_nothing_breaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    setup = make_setup(tmp_path)
    write_file(setup.watch / "S002/clip.mov", b"s" * 100, mtime=OLD)
    done = setup.run_once()
    assert done.returncode == 0
    assert "sd_notify_failed" in done.stderr and "Traceback" not in done.stderr
    assert os.path.exists(setup.destinations["nearline"] / "S002/clip.mov")
