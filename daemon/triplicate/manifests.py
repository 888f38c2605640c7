"""Writing the ASC MHL generation of an offload at a destination once every
file of it is verified there.

A generation is written when an offload is complete at a destination and its
content (paths and hashes) differs from what the last generation recorded;
so a restart, a rescan or a second `run --once` never adds an empty generation,
and files that arrive later in the same offload get a generation of their own.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import structlog

from . import __version__, milestones
from .destinations.base import Destination
from .errors import PermanentError, TransientError
from .history import write_generation
from .journal import Journal
from .mhl import MhlFile, ProcessInfo
from .report import REPORT_FILENAME
from .watch import HISTORY_FOLDER

log = structlog.get_logger("triplicate.mhl")


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class ManifestWriter:
    def __init__(self, journal: Journal, destinations: dict[str, Destination]) -> None:
        self.journal = journal
        self.destinations = destinations
        self._locks = {name: asyncio.Lock() for name in destinations}
        self._tasks: set[asyncio.Task[bool]] = set()
        self._queued: set[tuple[int, str]] = set()  # looks scheduled but not started: one is enough
        # a generation of 100,000 files takes ~60 MiB while it is composed: one at a time, not one per destination
        self._composing = asyncio.Semaphore(1)
        self.on_written: Callable[[int], None] = lambda offload_id: None  # a generation was recorded
        self.written = 0

    def track(self, destination: str) -> None:
        """A destination added by a config reload."""
        self._locks.setdefault(destination, asyncio.Lock())

    def schedule(self, offload_id: int, destination: str) -> None:
        # A frame sequence verifies thousands of files per offload; each look
        # reads the whole offload, so looks not yet started are not repeated.
        if (offload_id, destination) in self._queued:
            return
        self._queued.add((offload_id, destination))
        task = asyncio.create_task(self.write_if_complete(offload_id, destination))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def wait_current(self) -> None:
        """Until the generations being written now have landed (not later ones)."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def write_if_complete(self, offload_id: int, destination: str) -> bool:
        """Write a generation if the offload is complete and changed; True if written."""
        async with self._locks[destination]:
            self._queued.discard((offload_id, destination))  # copies verified from now on schedule a new look
            if self._incomplete(offload_id, destination):
                return False
            return await self._write(offload_id, destination)

    async def _write(self, offload_id: int, destination: str) -> bool:
        watch, offload = self.journal.offload(offload_id)
        last = self.journal.last_generation(offload_id, destination)
        stamp = self.journal.generation_stamp(offload_id, destination)
        found = await self.journal.read_apart(
            lambda view: _generation_files(view, offload_id, destination, offload, last and last[1]))
        if found is None:
            self.journal.generation_seen(offload_id, destination, stamp)
            return False
        files, signature = found
        upstream = Path(watch) / offload / HISTORY_FOLDER
        dlog = log.bind(offload=offload, destination=destination)
        try:
            result = await write_generation(
                self.destinations[destination], offload, files, _process_info(),
                upstream if upstream.is_dir() else None, composing=self._composing,
            )
        except (TransientError, PermanentError, OSError) as exc:
            dlog.error("mhl_generation_failed", error=str(exc))
            return False
        self.journal.record_generation(offload_id, destination, result.number, result.filename, signature)
        self.journal.generation_seen(offload_id, destination, stamp)
        self.on_written(offload_id)
        self.written += 1
        dlog.info("mhl_generation_written", generation=result.number, manifest=result.filename, files=len(files))
        return True

    def _incomplete(self, offload_id: int, destination: str) -> bool:
        """True while a current file of the offload is not verified at
        `destination`, from the counts the journal's triggers keep. A look
        follows every verified copy: one reading the files until the first
        unverified one read past every verified one, N² over an offload
        copied in path order (bench/RESULTS.md, change 45)."""
        files, verified = self.journal.verified_counts(offload_id)
        return verified.get(destination, 0) < files

    async def sweep(self) -> None:
        """Every offload held whole at a destination that changed there since
        its last look (the end of a one-shot run, each rescan). Looking at
        every offload instead cost a million-copy journal 0.2 s per offload,
        on the event loop, for nothing."""
        for offload_id, destination, _, _ in self.journal.generations_due():
            if destination in self.destinations:
                await self.write_if_complete(offload_id, destination)


def _generation_files(
    view: Journal, offload_id: int, destination: str, offload: str, last: str | None,
) -> tuple[list[MhlFile], str] | None:
    """The records of the generation the offload needs at `destination`, and
    their signature: None when not every file is verified there, when every
    file is loose (no folder to hold a history), or when the `last`
    generation lists these very files. Read in path order from a snapshot, in
    a worker thread: a first pass signs, a second makes the records (each
    checks its path) only when a generation is due, so no list of rows is
    held beside them."""
    if not view.has_folders(offload_id):
        return None
    complete = True

    def signed() -> Iterator[tuple[str, str]]:
        nonlocal complete
        for _, relpath, _, _, xxh64, state, _ in view.offload_state(offload_id, destination):
            if state != "verified":
                complete = False
                return
            yield relpath, xxh64

    signature = milestones.signature_in_order(signed())
    if not complete or signature == last:
        return None
    files = [
        MhlFile(path=relpath[len(offload) + 1:], size=size, xxh64=xxh64, hashed_at=_utc(verified_at),
                mtime=datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc))
        for _, relpath, size, mtime_ns, xxh64, _, verified_at in view.offload_state(offload_id, destination)
    ]
    return files, signature


def _process_info() -> ProcessInfo:
    # the chain-of-custody report is written beside the media once the offload
    # meets 3-2-1; without this pattern `ascmhl-debug verify` calls it a new file
    return ProcessInfo(tool_version=__version__, hostname=socket.gethostname(), ignore=(REPORT_FILENAME,))
