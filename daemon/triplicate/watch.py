"""Watching a folder for offloads and deciding when each file is ready.

Three sources of sightings feed one `Settler`: watchdog events, a full scan at
start-up, and a periodic rescan (events are lost on network shares and while
the daemon is down). A file is ready once it has held still for
`settle_seconds`. Files whose (size, mtime) the journal already knows are
skipped without being read, so a rescan costs one stat per file.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import stat
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .config import WatchConfig
from .journal import SeenFile

log = structlog.get_logger("triplicate.watch")

HISTORY_FOLDER = "ascmhl"
TICK_SECONDS = 0.25


def nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


class PathFilter:
    """Include/exclude globs, matched against every path segment, plus the
    offload's own ASC MHL history, which travels by another road (mhl stage)."""

    def __init__(self, include: list[str], exclude: list[str]) -> None:
        self.include = include
        self.exclude = exclude

    def wanted(self, relpath: str) -> bool:
        parts = relpath.split("/")
        if len(parts) > 2 and parts[1] == HISTORY_FOLDER:
            return False
        if any(fnmatch.fnmatchcase(part, pat) for part in parts for pat in self.exclude):
            return False
        return any(fnmatch.fnmatchcase(parts[-1], pat) or fnmatch.fnmatchcase(relpath, pat) for pat in self.include)


def scan_tree(root: Path, below: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative disk path, stat) of every regular file under root/below.
    Symbolic links are not followed: nothing outside the watch folder is read."""
    stack = [below]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(root / rel if rel else root))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as exc:
            log.warning("folder_unreadable", path=str(root / rel), error=exc.strerror)
            continue
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)
            elif stat.S_ISREG(st.st_mode):
                yield child, st


@dataclass
class _Candidate:
    signature: tuple[int, int, int]
    since: float  # monotonic time the signature was first seen
    due: float  # monotonic time of the next look


class Settler:
    """Tracks files that are not ready yet.

    Ready means: unchanged (size, mtime, ctime) for `settle` seconds of our own
    clock, or — for files that were already old when first seen — unchanged
    across two looks and last changed (mtime and ctime, which copy tools cannot
    backdate) more than `settle` seconds ago.
    """

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self.candidates: dict[str, _Candidate] = {}

    def __len__(self) -> int:
        return len(self.candidates)

    def offloads(self) -> set[str]:
        return {nfc(p).split("/", 1)[0] for p in self.candidates}

    def touch(self, disk_path: str, now: float, st: os.stat_result | None = None) -> None:
        """A sighting; with the stat of a scan, an old file is confirmed by one
        more look a tick later instead of a whole settle period."""
        cand = self.candidates.get(disk_path)
        if cand is None:
            sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns) if st is not None else (-1, -1, -1)
            self.candidates[disk_path] = _Candidate(sig, now, now + min(self.settle, TICK_SECONDS))
        else:
            cand.due = min(cand.due, now)

    def poll(self, root: Path, now: float) -> list[tuple[str, os.stat_result]]:
        """Look at every due candidate; return the ready ones (and forget them)."""
        ready = []
        wall = time.time()
        for disk_path, cand in list(self.candidates.items()):
            if cand.due > now:
                continue
            try:
                st = os.stat(root / disk_path, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                del self.candidates[disk_path]
                continue
            if not stat.S_ISREG(st.st_mode):
                del self.candidates[disk_path]
                continue
            sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if sig != cand.signature:
                cand.signature, cand.since = sig, now
            age = wall - max(st.st_mtime, st.st_ctime)
            held = now - cand.since
            if held >= self.settle or (held >= min(self.settle, TICK_SECONDS) and age >= self.settle):
                del self.candidates[disk_path]
                ready.append((disk_path, st))
            else:
                cand.due = now + min(TICK_SECONDS * 4, max(TICK_SECONDS, self.settle - held))
        return ready


class _EventBridge(FileSystemEventHandler):
    """Hands watchdog's thread events to the event loop; never blocks it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[str, bool], None]) -> None:
        self.loop = loop
        self.sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write", "deleted"):
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self.loop.call_soon_threadsafe(self.sink, os.fsdecode(path), event.is_directory)


class WatchFolder:
    """One [[watch]] folder: events + scans -> ready `SeenFile` batches."""

    def __init__(
        self,
        config: WatchConfig,
        known: dict[str, tuple[int, int]],
        on_ready: Callable[[list[SeenFile]], None],
    ) -> None:
        self.config = config
        self.root = config.path
        self.known = known
        self.on_ready = on_ready
        self.filter = PathFilter(config.include, config.exclude)
        self.settler = Settler(config.settle_seconds)
        self._observer: Observer | None = None
        self._wake = asyncio.Event()
        self._dirs: list[str] = []
        self.scans = 0

    @property
    def idle(self) -> bool:
        """Nothing seen that is still waiting to settle."""
        return not self.settler and not self._dirs

    def start_events(self) -> None:
        loop = asyncio.get_running_loop()
        observer = Observer()
        observer.schedule(_EventBridge(loop, self._on_event), str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def _on_event(self, path: str, is_dir: bool) -> None:
        try:
            rel = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return
        if rel in ("", "."):
            return
        if is_dir:
            self._dirs.append(rel)  # a folder moved in whole brings files no event names
        else:
            self._consider(rel, None)
        self._wake.set()

    def _consider(self, disk_path: str, st: os.stat_result | None) -> None:
        relpath = nfc(disk_path)
        if not self.filter.wanted(relpath):
            return
        if st is not None and self.known.get(relpath) == (st.st_size, st.st_mtime_ns):
            return
        self.settler.touch(disk_path, time.monotonic(), st)

    def scan(self, below: str = "") -> int:
        """Walk the tree and queue what is new or changed; returns files seen."""
        count = 0
        for disk_path, st in scan_tree(self.root, below):
            count += 1
            self._consider(disk_path, st)
        if not below:
            self.scans += 1
        return count

    async def full_scan(self) -> int:
        seen = await asyncio.to_thread(self.scan)
        self._wake.set()
        return seen

    def poll(self) -> None:
        """Scan folders that arrived whole, then hand ready files on."""
        while self._dirs:
            self.scan(self._dirs.pop())
        ready = self.settler.poll(self.root, time.monotonic())
        if not ready:
            return
        batch = []
        for disk_path, st in ready:
            relpath = nfc(disk_path)
            if self.known.get(relpath) == (st.st_size, st.st_mtime_ns):
                continue
            self.known[relpath] = (st.st_size, st.st_mtime_ns)
            batch.append(SeenFile(str(self.root), relpath, st.st_size, st.st_mtime_ns, disk_path))
        if batch:
            self.on_ready(batch)

    def forget(self, relpath: str, disk_path: str) -> None:
        """The journal dropped this version (it changed under a transfer):
        look at the file again."""
        self.known.pop(relpath, None)
        self.settler.touch(disk_path, time.monotonic())
        self._wake.set()

    async def run(self) -> None:
        """Poll candidates while there are any; sleep on events otherwise."""
        while True:
            self.poll()
            self._wake.clear()
            timeout = TICK_SECONDS if self.settler or self._dirs else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
