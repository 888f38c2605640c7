"""systemd's notify protocol (sd_notify), written out: a datagram per message
to the unix socket named by $NOTIFY_SOCKET.

With `Type=notify` the unit is "started" when the daemon sends READY=1 (journal
open, watchers running); `WatchdogSec=` expects WATCHDOG=1 at least that often
($WATCHDOG_USEC), sent here from a task on the event loop, so a hung loop stops
the pings and systemd restarts the daemon; STATUS= is the line `systemctl
status` shows (the backlog); STOPPING=1 starts a stop. Outside systemd (no
$NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Callable

import structlog

log = structlog.get_logger("triplicate.service")


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._warned = False
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(cls) -> "SystemdNotifier":
        address = os.environ.get("NOTIFY_SOCKET") or None
        return cls(address, _watchdog_usec())

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Send "KEY=value" lines in one datagram; False if it could not be sent."""
        if self._sock is None or self.address is None:
            return False
        target = self.address
        if target.startswith("@"):  # abstract namespace
            target = "\0" + target[1:]
        try:
            self._sock.sendto("\n".join(assignments).encode(), target)
        except OSError as exc:
            if not self._warned:  # once: a missing socket would say so every few seconds
                log.warning("sd_notify_failed", socket=self.address, error=exc.strerror or str(exc))
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def reloading(self) -> None:
        self.notify("RELOADING=1", "STATUS=reloading the configuration")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping: finishing or parking copies in progress")

    @property
    def watchdog_interval(self) -> float | None:
        """Half the watchdog timeout, as sd_watchdog_enabled(3) recommends."""
        if not self.enabled or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    async def run(self, status_text: Callable[[], str], status_every: float = 10.0) -> None:
        """Watchdog pings and STATUS updates until cancelled."""
        interval = self.watchdog_interval
        tick = min(status_every, interval) if interval else status_every
        since_status = status_every
        while True:
            if interval:
                self.notify("WATCHDOG=1")
            if since_status >= status_every:
                self.status(status_text())
                since_status = 0.0
            await asyncio.sleep(tick)
            since_status += tick

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec() -> int | None:
    """$WATCHDOG_USEC when it is meant for this process ($WATCHDOG_PID unset or ours)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) or None
