"""The real daemon as a child process whose output is read as it comes, so a
test can wait for a log event, SIGKILL it at any moment and start it again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import TRIPLICATE, Setup


class DaemonProcess:
    """One `triplicate run` process; `output` keeps every line it printed."""

    def __init__(self, setup: Setup, env: dict[str, str] | None = None, prefix: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*(prefix or []), TRIPLICATE, "--config", str(setup.config), "run"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            line = line.strip()
            if line.startswith("{"):
                event = json.loads(line)
                if name is None or event.get("event") == name:
                    found.append(event)
        return found

    def wait_event(self, name: str, timeout: float = 30, count: int = 1) -> list[dict[str, Any]]:
        return wait_until(lambda: len(self.events(name)) >= count and self.events(name), timeout,
                          f"{count} x {name} in the daemon's log", self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> str:
        """SIGKILL: no handler runs, nothing is flushed or released."""
        self.proc.send_signal(signal.SIGKILL)
        return self._collect()

    def stop(self, timeout: float = 60) -> str:
        """SIGTERM and wait for the graceful stop."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self._collect(timeout)

    def _collect(self, timeout: float = 30) -> str:
        self.proc.wait(timeout)
        self._reader.join(timeout)
        return self.output


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, daemon: DaemonProcess | None = None) -> Any:
    """Poll until truthy; at the deadline fail with `what` and the daemon's last lines."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"the daemon exited ({daemon.proc.returncode}) while waiting for {what}:\n"
                                 + "".join(daemon.lines[-30:]))
        if time.monotonic() > deadline:
            tail = "".join(daemon.lines[-30:]) if daemon is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")
        time.sleep(0.05)


def journal_states(journal: Path) -> dict[str, dict[str, str]]:
    """relpath -> {destination: state} of current file versions, read straight
    from the journal (read-only; the daemon may be running)."""
    if not journal.exists():
        return {}
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT f.relpath, c.destination, c.state FROM copies c JOIN files f ON f.id = c.file_id "
            "WHERE f.current = 1"
        ).fetchall()
    except sqlite3.OperationalError:  # created a moment ago, no tables yet
        return {}
    finally:
        db.close()
    states: dict[str, dict[str, str]] = {}
    for relpath, destination, state in rows:
        states.setdefault(relpath, {})[destination] = state
    return states


def all_verified(journal: Path, files: int, destinations: int) -> bool:
    """True once `files` current versions each have `destinations` verified copies."""
    states = journal_states(journal)
    return len(states) == files and all(
        len(d) == destinations and set(d.values()) == {"verified"} for d in states.values()
    )


def integrity(journal: Path) -> str:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()
