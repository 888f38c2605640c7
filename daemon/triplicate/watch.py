"""Watching a folder for offloads and deciding when each file has settled.

Three sources of sightings feed one `Settler`: file events (watchdog), a full
scan at start-up, and a periodic rescan (events are lost on network shares and
while the daemon is down). Where events cannot be trusted the folder is polled
instead: `polling = true`, or "auto" on a network file system (mounts.py), or
when inotify runs out of watches. A file has settled once it has held still
for `settle_seconds`; the readiness gate (readiness.py) then decides when it
may be sent. Files whose (size, mtime, ctime) the journal already knows are
skipped without being read, so a scan costs one stat per file and no hashing;
a rename, a move or a metadata-only change is told apart from new data by
hashing that one file (moves.py).

Keys are Unicode NFC: the same name spelled NFC or NFD (macOS) is one file.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import stat
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from . import mounts
from .config import WatchConfig
from .journal import Journal, SeenFile
from .known import KnownVersions
from .moves import ContentChecks
from .readiness import GateContext, Settled, make_gate
from .ready_log import ReadyLog

log = structlog.get_logger("triplicate.watch")

HISTORY_FOLDER = "ascmhl"
TICK_SECONDS = 0.25
PROBE_SECONDS = 5.0  # at most this often, ask the kernel whether inotify watches ran out


def nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def _compile(patterns: list[str]) -> re.Pattern[str]:
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class PathFilter:
    """Include/exclude globs. Excludes match any path segment (a folder named
    `.Trashes` excludes all below it); includes match the file name or the
    whole relative path. The offload's own ASC MHL history is never a file
    to send: it travels by another road (history.py)."""

    def __init__(self, include: list[str], exclude: list[str]) -> None:
        self.include = include
        self.exclude = exclude
        self._include = _compile(include)
        self._exclude = _compile(exclude)

    def wanted(self, relpath: str) -> bool:
        parts = relpath.split("/")
        if len(parts) > 2 and parts[1] == HISTORY_FOLDER:
            return False
        if any(self._exclude.match(part) for part in parts):
            return False
        return self.wanted_name(relpath, parts[-1])

    def wanted_name(self, relpath: str, name: str) -> bool:
        """For a file whose folders are already known to be wanted (a scan)."""
        if self._exclude.match(name):
            return False
        return bool(self._include.match(name) or self._include.match(relpath))

    def prune(self, reldir: str, name: str) -> bool:
        """True for a folder a scan does not enter."""
        return bool(self._exclude.match(name)) or (name == HISTORY_FOLDER and reldir.count("/") == 1)


Stat = tuple[int, int, int]
"""(size, mtime_ns, ctime_ns): what the watcher keeps of a stat. An
os.stat_result is ~500 bytes with its numbers, and a start-up scan of
100,000 new files held two lists of them at once."""


def stat_of(st: os.stat_result) -> Stat:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def scan_tree(
    root: Path, below: str = "", prune: Callable[[str, str], bool] | None = None
) -> Iterator[tuple[str, Stat]]:
    """(relative disk path, Stat) of every regular file under root/below.
    Symbolic links are not followed: nothing outside the watch folder is read.
    `prune(reldir, name)` skips folders."""
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
                if prune is None or not prune(child, entry.name):
                    stack.append(child)
            elif stat.S_ISREG(st.st_mode):
                yield child, stat_of(st)


@dataclass
class _Candidate:
    signature: Stat
    since: float  # monotonic time the signature was first seen
    due: float  # monotonic time of the next look
    offload: str


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
        self._per_offload: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.candidates)

    def offloads(self) -> set[str]:
        return set(self._per_offload)

    def count(self, offload: str) -> int:
        return self._per_offload.get(offload, 0)

    def touch(self, disk_path: str, now: float, sig: Stat | None = None) -> None:
        """A sighting; with the stat of a scan, an old file is confirmed by one
        more look a tick later instead of a whole settle period."""
        cand = self.candidates.get(disk_path)
        if cand is None:
            sig = sig or (-1, -1, -1)
            offload = nfc(disk_path.split("/", 1)[0])
            self.candidates[disk_path] = _Candidate(sig, now, now + min(self.settle, TICK_SECONDS), offload)
            self._per_offload[offload] = self._per_offload.get(offload, 0) + 1
        else:
            cand.due = min(cand.due, now)

    def _drop(self, disk_path: str) -> None:
        cand = self.candidates.pop(disk_path)
        left = self._per_offload[cand.offload] - 1
        if left:
            self._per_offload[cand.offload] = left
        else:
            del self._per_offload[cand.offload]

    def poll(self, root: Path, now: float) -> list[tuple[str, Stat]]:
        """Look at every due candidate; return the ready ones (and forget them)."""
        ready = []
        wall = time.time()
        for disk_path, cand in list(self.candidates.items()):
            if cand.due > now:
                continue
            try:
                st = os.stat(root / disk_path, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                self._drop(disk_path)
                continue
            if not stat.S_ISREG(st.st_mode):
                self._drop(disk_path)
                continue
            sig = stat_of(st)
            if sig != cand.signature:
                cand.signature, cand.since = sig, now
            age = wall - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9
            held = now - cand.since
            if held >= self.settle or (held >= min(self.settle, TICK_SECONDS) and age >= self.settle):
                self._drop(disk_path)
                ready.append((disk_path, cand.signature))
            else:
                cand.due = now + min(TICK_SECONDS * 4, max(TICK_SECONDS, self.settle - held))
        return ready


WATCHED_EVENTS = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent,
    DirCreatedEvent, DirMovedEvent, DirDeletedEvent,
    *([] if sys.platform == "linux" else [DirModifiedEvent]),
]
"""What the watcher asks the kernel for. Not opens and read-only closes: every
destination opens each source file to read it, and those events cost the
watcher thread (and the GIL the copies need) a wake-up each, for nothing.
On Linux not a folder's "modified" either: inotify names every file, and
watchdog adds a "modified" of the parent folder to each file's event; a
folder event means a scan of that folder (files moved in with a folder have
no events of their own), so 1,000 frames landing in one folder were 1,000
scans of it, N² stats on the event loop. Elsewhere (FSEvents) a folder's
event may be all the system reports when it coalesces, so it stays."""


class _EventBridge(FileSystemEventHandler):
    """Hands watchdog's thread events to the event loop; never blocks it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sink: Callable[[str, bool], None], gone: Callable[[str, bool], None]
    ) -> None:
        self.loop = loop
        self.sink = sink
        self.gone = gone

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("moved", "deleted"):  # the old path of a move may reappear elsewhere
            self.loop.call_soon_threadsafe(self.gone, os.fsdecode(event.src_path), event.is_directory)
        if event.event_type in ("opened", "closed_no_write", "deleted"):
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self.loop.call_soon_threadsafe(self.sink, os.fsdecode(path), event.is_directory)


class WatchFolder:
    """One [[watch]] folder: events or polling + scans -> settled files ->
    readiness gate -> ready `SeenFile` batches."""

    def __init__(
        self,
        config: WatchConfig,
        known: KnownVersions,
        on_ready: Callable[[list[SeenFile]], None],
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.root = config.path
        self.known = known
        self.on_ready = on_ready
        self.filter = PathFilter(config.include, config.exclude)
        self.settler = Settler(config.settle_seconds)
        self.gate = make_gate(GateContext(
            config, self.root, journal, known, self._release, self.arriving, self._look_again,
        ))
        self.ready_log = ReadyLog(str(self.root))
        self.checks = ContentChecks(self.root, journal, known, self._hand_on)
        self.mode = "events"  # or "polling"
        self._observer: BaseObserver | None = None
        self._wake = asyncio.Event()
        self._dirs: set[str] = set()  # folders to scan at the next poll, once however many events named them
        self._next_poll = 0.0
        self._probe_at: float | None = None
        self.scans = 0

    # ---- what others ask ---------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing seen that is still waiting to settle or to be checked."""
        return not self.settler and not self._dirs and self.gate.idle and self.checks.idle

    def arriving(self, offload: str) -> bool:
        """Files of `offload` are still settling (or a folder of it is unscanned)."""
        return (self.settler.count(offload) > 0 or self.checks.busy(offload)
                or any(nfc(d.split("/", 1)[0]) == offload for d in self._dirs))

    def unsettled(self, offload: str) -> bool:
        """The offload is not complete yet as far as the watcher knows: files
        settling, or held by the readiness rule for a judgement to come."""
        return self.arriving(offload) or self.gate.busy(offload)

    # ---- starting and stopping ------------------------------------------------------

    def start_events(self) -> None:
        """Watch with events where they can be trusted; else poll."""
        fstype = mounts.filesystem_type(self.root)
        polling = self.config.polling
        if polling is True:
            self._use_polling(fstype, "polling = true in the config")
        elif polling == "auto" and mounts.is_network(fstype):
            self._use_polling(fstype, f"{fstype} is a network file system; its events cannot be trusted")
        else:
            self._start_observer(fstype)

    def _start_observer(self, fstype: str | None) -> None:
        try:  # watchdog takes its inotify instance when built, its watches when started
            observer = Observer()
            bridge = _EventBridge(asyncio.get_running_loop(), self._on_event, self._on_gone)
            observer.schedule(bridge, str(self.root), recursive=True, event_filter=WATCHED_EVENTS)
            observer.daemon = True
            observer.start()
        except OSError as exc:
            self._inotify_exhausted(mounts.limit_sysctl(exc), str(exc), fstype)
            return
        self._observer = observer
        if mounts.inotify_watches_exhausted(self.root):
            self._inotify_exhausted(mounts.WATCH_LIMIT_SYSCTL, "no inotify watch left for new folders", fstype)
            return
        log.info("watch_started", watch=str(self.root), mode="events", filesystem=fstype)

    def _use_polling(self, fstype: str | None, reason: str) -> None:
        self.mode = "polling"
        self._next_poll = time.monotonic() + self.config.poll_seconds
        log.info("watch_started", watch=str(self.root), mode="polling", filesystem=fstype, reason=reason,
                 poll_seconds=self.config.poll_seconds)

    def _inotify_exhausted(self, sysctl: str | None, error: str, fstype: str | None) -> None:
        """One warning, then polling for this folder."""
        self._stop_observer()
        self.mode = "polling"
        self._next_poll = time.monotonic() + self.config.poll_seconds
        log.warning(
            "inotify_limit_reached", watch=str(self.root), error=error, sysctl=sysctl or mounts.WATCH_LIMIT_SYSCTL,
            mode="polling", poll_seconds=self.config.poll_seconds, filesystem=fstype,
            fix=f"raise {sysctl or mounts.WATCH_LIMIT_SYSCTL} (sysctl -w {sysctl or mounts.WATCH_LIMIT_SYSCTL}=1048576, "
                "and in /etc/sysctl.d/ to keep it) and restart triplicate to use events again",
        )

    def _stop_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def stop(self) -> None:
        self._stop_observer()
        self.gate.stop()
        self.checks.stop()
        self.ready_log.maybe_flush(time.monotonic(), force=True)

    # ---- sightings -------------------------------------------------------------------

    def _on_event(self, path: str, is_dir: bool) -> None:
        try:
            rel = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return
        if rel in ("", "."):
            return
        if is_dir:
            self._dirs.add(rel)  # a folder moved in whole brings files no event names
            if self._probe_at is None:
                self._probe_at = time.monotonic() + PROBE_SECONDS  # new folders take inotify watches
        else:
            self._consider(rel)
        self._wake.set()

    def _on_gone(self, path: str, is_dir: bool) -> None:
        """A path moved away or was deleted: what the journal knows under it
        may turn up elsewhere (moves.py)."""
        try:
            rel = nfc(Path(path).relative_to(self.root).as_posix())
        except ValueError:
            return
        if not is_dir:
            self.checks.gone(rel)
            return
        for relpath in [r for r in self.known if r.startswith(rel + "/")]:
            self.checks.gone(relpath)

    def _consider(self, disk_path: str) -> None:
        """A file an event named: settled (and judged against what is known)
        once it stops changing."""
        if self.filter.wanted(nfc(disk_path)):
            self.settler.touch(disk_path, time.monotonic())

    def _unchanged(self, relpath: str, sig: Stat) -> bool:
        size, mtime_ns, ctime_ns = sig
        if self.known.get(relpath) == (size, mtime_ns):
            return not self.checks.ctime_moved(relpath, ctime_ns)
        return self.gate.holds(relpath, (size, mtime_ns))

    def changes(
        self, below: str = "", seen: set[str] | None = None
    ) -> tuple[int, list[tuple[str, Stat]], float]:
        """Walk the tree: (files seen, the new or changed ones, CPU seconds the
        walk took); `seen` collects the wanted paths. Reads only; safe in a
        worker thread."""
        cpu = time.thread_time()
        count = 0
        found = []
        for disk_path, sig in scan_tree(self.root, below, self.filter.prune):
            count += 1
            relpath = nfc(disk_path)
            # below the top, the folders of `below` itself were never pruned
            wanted = self.filter.wanted(relpath) if below else self.filter.wanted_name(relpath, relpath.rsplit("/", 1)[-1])
            if not wanted:
                continue
            if seen is not None:
                seen.add(relpath)
            if not self._unchanged(relpath, sig):
                found.append((disk_path, sig))
        return count, found, time.thread_time() - cpu

    def _queue(self, found: list[tuple[str, Stat]]) -> None:
        now = time.monotonic()
        for disk_path, sig in found:
            self.settler.touch(disk_path, now, sig)

    def scan(self, below: str = "") -> int:
        """Walk the tree and queue what is new or changed; returns files seen."""
        count, found, _ = self.changes(below)
        self._queue(found)
        if not below:
            self.scans += 1
        return count

    def _walk_and_compare(self) -> tuple[int, list[tuple[str, Stat]], float, dict[str, int]]:
        """A full scan's walk, and relpath -> size of the known versions it did
        not see; in the scan's thread, as going through every known version
        reads a big journal's whole folder (seconds of event loop otherwise)."""
        seen: set[str] = set()
        count, found, cpu = self.changes("", seen)
        return count, found, cpu, {r: v[0] for r, v in self.known.items() if r not in seen}

    async def full_scan(self, reason: str = "scan") -> int:
        started = time.monotonic()
        count, found, cpu, gone = await asyncio.to_thread(self._walk_and_compare)
        self.checks.vanished.reset(gone)
        self._queue(found)
        self.scans += 1
        fields = {"watch": str(self.root), "files": count, "new": len(found), "mode": self.mode, "reason": reason,
                  "seconds": round(time.monotonic() - started, 3), "cpu_seconds": round(cpu, 3)}
        (log.debug if reason == "poll" else log.info)("scan_finished", **fields)
        self._wake.set()
        return count

    # ---- handing on ------------------------------------------------------------------

    def poll(self) -> None:
        """Scan folders that arrived whole, hand settled files to the gate, and
        let the gate look at what it holds."""
        while self._dirs:
            folder = self._dirs.pop()
            log.debug("folder_scanned", watch=str(self.root), folder=folder, files=self.scan(folder))
        now = time.monotonic()
        settled = [Settled(nfc(d), d, *sig) for d, sig in self.settler.poll(self.root, now)]
        # a version handed on meanwhile (a scan racing a release) is not judged again
        settled = [f for f in settled if not self._handed_on(f.relpath, f.version, f.ctime_ns)]
        if settled:
            self.gate.settled(settled)
        self.gate.tick(now)
        self.ready_log.maybe_flush(now, force=self.idle)

    def _handed_on(self, relpath: str, version: tuple[int, int], ctime_ns: int | None) -> bool:
        return self.known.get(relpath) == version and not self.checks.ctime_moved(relpath, ctime_ns)

    def _release(self, batch: list[SeenFile]) -> None:
        fresh = []
        for item in batch:
            version = (item.size, item.mtime_ns)
            if self._handed_on(item.relpath, version, item.ctime_ns):
                continue
            checked = self.checks.take(item, same_version=self.known.get(item.relpath) == version)
            self.known[item.relpath] = version
            if item.ctime_ns is not None:
                self.checks.ctimes[item.relpath] = item.ctime_ns
            if not checked:
                fresh.append(item)
        self._hand_on(fresh)

    def _hand_on(self, fresh: list[SeenFile]) -> None:
        if fresh:
            self.ready_log.add(fresh, time.monotonic())
            self.on_ready(fresh)
            self._wake.set()

    def forget(self, relpath: str, disk_path: str) -> None:
        """The journal dropped this version (it changed under a transfer):
        look at the file again."""
        self.known.pop(relpath, None)
        self.checks.forget(relpath)
        self._look_again(disk_path)

    def _look_again(self, disk_path: str) -> None:
        self.settler.touch(disk_path, time.monotonic())
        self._wake.set()

    # ---- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Poll candidates while there are any; otherwise sleep until an event,
        the gate's next look, or the next polling scan."""
        while True:
            self.poll()
            await self._housekeep()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._timeout())
            except TimeoutError:
                pass

    async def _housekeep(self) -> None:
        now = time.monotonic()
        if self.mode == "polling" and now >= self._next_poll:
            await self.full_scan("poll")
            self._next_poll = time.monotonic() + self.config.poll_seconds
        if self._observer is not None and not self._observer.is_alive():
            self._inotify_exhausted(None, "the file event thread stopped", None)
        if self._probe_at is not None and now >= self._probe_at:
            self._probe_at = None
            if self._observer is not None and mounts.inotify_watches_exhausted(self.root):
                self._inotify_exhausted(mounts.WATCH_LIMIT_SYSCTL, "no inotify watch left for new folders", None)
                await self.full_scan("events lost")

    def _timeout(self) -> float | None:
        if self.settler or self._dirs or not self.gate.idle:
            return TICK_SECONDS
        waits = [self.gate.next_look(), self.ready_log.due_in(time.monotonic())]
        now = time.monotonic()
        if self.mode == "polling":
            waits.append(max(0.0, self._next_poll - now))
        if self._probe_at is not None:
            waits.append(max(0.0, self._probe_at - now))
        known = [w for w in waits if w is not None]
        return min(known) if known else None
