"""Renames, moves and metadata-only changes in a watch folder, told apart from
new data by the file's bytes.

Moves. A path whose current version the journal knows and that left the disk
(a file event said it moved or was deleted, or a full scan did not see it) is
remembered with its size in `Vanished`. A file that becomes ready with the size
of a vanished path is hashed once (or its hash is taken from the offload's
ASC MHL check) and compared with that version's recorded xxh64: equal, and the
old path still gone, it is a move — handed on with `moved_from`, so the journal
records it and each destination makes the new copy from the one it holds.
Anything else is new data. A copy made inside the watch folder (the old path
still there) is new data too: telling copies apart would mean hashing every
new file that shares a size with a known one before sending it, and in a frame
sequence that is every frame, read twice.

Metadata-only changes. A version whose size and mtime are unchanged but whose
ctime moved (a chmod, an extended attribute, or a rewrite that restored the
mtime) is hashed and compared with the recorded xxh64: equal, only the ctime
is recorded; different, it goes on as a new version carrying the new hash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import structlog

from .hashing import hash_file
from .journal import Journal, SeenFile
from .known import KnownVersions

log = structlog.get_logger("triplicate.watch")


class Vanished:
    """Known paths that left the disk, by size."""

    def __init__(self) -> None:
        self._by_size: dict[int, set[str]] = {}
        self._size: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._size)

    def add(self, relpath: str, size: int) -> None:
        self.discard(relpath)
        self._size[relpath] = size
        self._by_size.setdefault(size, set()).add(relpath)

    def discard(self, relpath: str) -> None:
        size = self._size.pop(relpath, None)
        if size is not None:
            paths = self._by_size[size]
            paths.discard(relpath)
            if not paths:
                del self._by_size[size]

    def reset(self, gone: dict[str, int]) -> None:
        self._by_size.clear()
        self._size.clear()
        for relpath, size in gone.items():
            self.add(relpath, size)

    def candidates(self, size: int, relpath: str) -> list[str]:
        return sorted(p for p in self._by_size.get(size, ()) if p != relpath)


class ContentChecks:
    """Hashes the files whose bytes decide what they are, off the event loop,
    and hands each on (or not) when its check is done."""

    def __init__(
        self,
        root: Path,
        journal: Journal | None,
        known: KnownVersions,
        hand_on: Callable[[list[SeenFile]], None],
    ) -> None:
        self.root = root
        self.watch = str(root)
        self.journal = journal
        self.known = known
        self.hand_on = hand_on
        self.ctimes = known.ctimes  # read per offload with the versions, not all at start-up
        self.vanished = Vanished()
        self._tasks: set[asyncio.Task[None]] = set()
        self._offloads: Counter[str] = Counter()

    @property
    def idle(self) -> bool:
        return not self._tasks

    def busy(self, offload: str) -> bool:
        return self._offloads[offload] > 0

    def ctime_moved(self, relpath: str, ctime_ns: int | None) -> bool:
        recorded = self.ctimes.get(relpath)
        return ctime_ns is not None and recorded is not None and recorded != ctime_ns

    def gone(self, relpath: str) -> None:
        version = self.known.get(relpath)
        if version is not None:
            self.vanished.add(relpath, version[0])

    def forget(self, relpath: str) -> None:
        self.ctimes.pop(relpath, None)

    def take(self, item: SeenFile, same_version: bool) -> bool:
        """True when `item` is checked first (and handed on by the check)."""
        if self.journal is None:
            return False
        candidates = [] if same_version else self.vanished.candidates(item.size, item.relpath)
        if not same_version and not candidates:
            return False
        self._offloads[item.offload] += 1
        task = asyncio.get_running_loop().create_task(self._check(item, candidates))
        self._tasks.add(task)
        return True

    async def _check(self, item: SeenFile, candidates: list[str]) -> None:
        found: SeenFile | None = item
        try:
            xxh64 = item.xxh64 or await asyncio.to_thread(self._hash, item)
            if xxh64 is not None:
                found = self._judge(item, xxh64, candidates)
        except Exception as exc:  # noqa: BLE001 - the check only saves work: a file it cannot judge goes on as it is
            log.warning("content_check_failed", watch=self.watch, file=item.relpath, error=str(exc))
        finally:
            self._offloads[item.offload] -= 1
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        if found is not None:
            self.hand_on([found])

    def _hash(self, item: SeenFile) -> str | None:
        """None when the file is no longer the size it settled at (the copy will say so)."""
        xxh64, length = hash_file(self.root / item.on_disk)
        return xxh64 if length == item.size else None

    def _judge(self, item: SeenFile, xxh64: str, candidates: list[str]) -> SeenFile | None:
        assert self.journal is not None
        if not candidates:
            recorded = self.journal.current_version(self.watch, item.relpath)
            if recorded is not None and (recorded[0], recorded[1]) == (item.size, xxh64) and item.ctime_ns is not None:
                self.journal.set_ctime(self.watch, item.relpath, item.ctime_ns)
                log.info("file_metadata_changed", watch=self.watch, file=item.relpath, xxh64=xxh64)
                return None
            if recorded is not None and recorded[1] is not None:  # else nothing read it yet: this hash pins it
                log.info("file_rewritten_in_place", watch=self.watch, file=item.relpath, xxh64=xxh64,
                         recorded=recorded[1])
            return dataclasses.replace(item, xxh64=xxh64)
        for old in candidates:
            recorded = self.journal.current_version(self.watch, old)
            if recorded is None or (recorded[0], recorded[1]) != (item.size, xxh64):
                continue
            self.vanished.discard(old)
            if os.path.lexists(self.root / recorded[2]):
                continue  # it is back: this is a copy, and new data
            self.known.pop(old, None)
            self.ctimes.pop(old, None)
            log.info("file_moved", watch=self.watch, file=item.relpath, moved_from=old, size=item.size, xxh64=xxh64)
            return dataclasses.replace(item, xxh64=xxh64, moved_from=old)
        return dataclasses.replace(item, xxh64=xxh64)

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
