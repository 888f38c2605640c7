"""One log line per offload for files handed on, however many there are.

A frame sequence settles a few hundred files at a time; logging each batch (or
each file) would bury everything else. Files handed on are summed per offload
and logged at most every `FLUSH_SECONDS`, with frame sequences named once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from .journal import SeenFile
from .sequences import group

log = structlog.get_logger("triplicate.watch")

FLUSH_SECONDS = 2.0


@dataclass
class _Pending:
    files: int = 0
    bytes: int = 0
    paths: list[str] = field(default_factory=list)


class ReadyLog:
    def __init__(self, watch: str) -> None:
        self.watch = watch
        self._pending: dict[str, _Pending] = {}
        self._since: float | None = None

    def add(self, batch: list[SeenFile], now: float) -> None:
        for item in batch:
            p = self._pending.setdefault(item.offload, _Pending())
            p.files += 1
            p.bytes += item.size
            p.paths.append(item.relpath.split("/", 1)[-1])
        if batch and self._since is None:
            self._since = now

    def due_in(self, now: float) -> float | None:
        """Seconds until the next flush is due, None when nothing waits."""
        return None if self._since is None else max(0.0, self._since + FLUSH_SECONDS - now)

    def maybe_flush(self, now: float, force: bool = False) -> None:
        if self._since is None or (not force and now - self._since < FLUSH_SECONDS):
            return
        for offload, p in sorted(self._pending.items()):
            log.info("files_ready", offload=offload, files=p.files, bytes=p.bytes, watch=self.watch,
                     sequences=group(p.paths).lines(5))
        self._pending.clear()
        self._since = None
