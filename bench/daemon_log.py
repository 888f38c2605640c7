"""Following a running daemon's JSON log (stderr) line by line, with the time
each line arrived, so a case can wait for an event without sleeping blind."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, Any


class LogFollower:
    def __init__(self, proc: subprocess.Popen[str], stream: IO[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put((time.time(), line))

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> tuple[float, dict[str, Any]]:
        """(arrival time, event) of the first event matching; RuntimeError at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                arrived, line = self.lines.get(timeout=0.05)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise RuntimeError(f"the process exited ({self.proc.returncode}) before {what}") from None
                continue
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.seen.append((arrived, event))
            if match(event):
                return arrived, event
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def event_time(event: dict[str, Any]) -> float:
    """The event's own timestamp (structlog ISO, UTC) as epoch seconds."""
    from datetime import datetime

    return datetime.fromisoformat(event["timestamp"]).timestamp()
