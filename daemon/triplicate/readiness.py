"""When a settled file may be sent: the `[[watch]] ready` rules.

The watcher's Settler decides when a file has stopped changing; a gate decides
when it may go:

- `stable` (StableGate): at once, file by file.
- `marker` (MarkerGate): once its offload has a marker file — a file matching
  `marker` at the top of the offload folder, or "<offload>.<ext>" beside it in
  the watch folder. The marker itself goes only with `send_marker`.
- `mhl` (mhl_gate.MhlGate): once the offload's own ASC MHL history is complete
  and every file matches it.

A gate hands files on through `GateContext.release`; it may hold files for as
long as it likes, and it tells the watcher whether it still has work that a
one-shot run must wait for (`idle`) and which offloads are not complete yet
(`busy`).
"""

from __future__ import annotations

import fnmatch
import os
import unicodedata
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from . import offload_checks
from .config import WatchConfig
from .journal import Journal, SeenFile

log = structlog.get_logger("triplicate.readiness")

LOOK_SECONDS = 1.0
"""How often a gate looks again at what it holds (markers, decisions)."""


@dataclass(frozen=True, slots=True)  # one per file of an offload at once
class Settled:
    """A file that has stopped changing."""

    relpath: str  # NFC, relative to the watch folder
    disk_path: str  # as spelled on disk
    size: int
    mtime_ns: int
    ctime_ns: int | None = None

    @property
    def offload(self) -> str:
        return self.relpath.split("/", 1)[0]

    @property
    def version(self) -> tuple[int, int]:
        return self.size, self.mtime_ns


@dataclass
class GateContext:
    config: WatchConfig
    root: Path
    journal: Journal | None  # None in tests that run a watcher alone
    known: MutableMapping[str, tuple[int, int]]  # relpath -> version already handed on (the journal's)
    release: Callable[[list[SeenFile]], None]
    arriving: Callable[[str], bool]  # offload -> files of it are still settling
    look_again: Callable[[str], None]  # disk path -> settle it again (it changed)

    def seen(self, f: Settled, xxh64: str | None = None) -> SeenFile:
        return SeenFile(str(self.root), f.relpath, f.size, f.mtime_ns, f.disk_path, xxh64, f.ctime_ns)


class Gate:
    """The `stable` rule, and the base of the others."""

    rule = "stable"

    def __init__(self, ctx: GateContext) -> None:
        self.ctx = ctx
        self._states: dict[str, tuple[str, str | None]] = {}

    def settled(self, files: list[Settled]) -> None:
        self.ctx.release([self.ctx.seen(f) for f in files])

    def tick(self, now: float) -> None:
        """Periodic look at what is held; called by the watcher's loop."""

    def holds(self, relpath: str, version: tuple[int, int]) -> bool:
        """True when this version is held on purpose (no need to settle it again)."""
        return False

    @property
    def idle(self) -> bool:
        """Nothing a one-shot run has to wait for."""
        return True

    def busy(self, offload: str) -> bool:
        """Files of `offload` are held for a judgement still to come."""
        return False

    def next_look(self) -> float | None:
        """Seconds until `tick` has something to look at, None for never."""
        return None

    def stop(self) -> None:
        """The watcher stops: drop work in progress."""

    def set_state(self, offload: str, state: str, detail: str | None) -> bool:
        """Record an offload's readiness in the journal when it changed; True if it did."""
        if self._states.get(offload) == (state, detail):
            return False
        self._states[offload] = (state, detail)
        if self.ctx.journal is not None:
            offload_checks.set_state(self.ctx.journal, str(self.ctx.root), offload, self.rule, state, detail)
        return True


class MarkerGate(Gate):
    rule = "marker"

    def __init__(self, ctx: GateContext) -> None:
        super().__init__(ctx)
        self.pattern = ctx.config.marker or ""
        self.pending: dict[str, dict[str, Settled]] = {}
        self.disk_names: dict[str, str] = {}
        self.marked: set[str] = set()
        self._last_look = 0.0

    def settled(self, files: list[Settled]) -> None:
        release = []
        for f in files:
            target = self._marks(f.relpath)
            if target is not None:
                self.marked.add(target)
                if self.ctx.config.send_marker:
                    release.append(f)
                continue
            self.disk_names.setdefault(f.offload, f.disk_path.split("/", 1)[0])
            self.pending.setdefault(f.offload, {})[f.relpath] = f
        if release:
            self.ctx.release([self.ctx.seen(f) for f in release])
        self._release_marked()

    def _marks(self, relpath: str) -> str | None:
        """The offload a marker file marks, None if `relpath` is no marker."""
        parts = relpath.split("/")
        if len(parts) == 2 and fnmatch.fnmatchcase(parts[1], self.pattern):
            return parts[0]
        if len(parts) == 1 and fnmatch.fnmatchcase(parts[0], self.pattern):
            return Path(parts[0]).stem  # "A001.done" beside the folder "A001"
        return None

    def _release_marked(self) -> None:
        for offload in list(self.pending):
            if offload in self.marked or self._marker_on_disk(offload):
                self.marked.add(offload)
                files = self.pending.pop(offload)
                self.ctx.release([self.ctx.seen(f) for f in files.values()])
                if self.set_state(offload, "ready", None):
                    log.info("offload_marked", offload=offload, files=len(files), watch=str(self.ctx.root))
            elif self.set_state(offload, "waiting", f"waiting for a marker file matching {self.pattern!r}"):
                log.info("offload_waiting_for_marker", offload=offload, marker=self.pattern, watch=str(self.ctx.root))

    def _marker_on_disk(self, offload: str) -> bool:
        """Markers the settler never hands on (excluded names, or not settled yet)."""
        folder = self.ctx.root / self.disk_names.get(offload, offload)
        for where, inside in ((folder, True), (self.ctx.root, False)):
            try:
                names = [e.name for e in os.scandir(where) if e.is_file(follow_symlinks=False)]
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                target = f"{offload}/{_nfc(name)}" if inside else _nfc(name)
                if self._marks(target) == offload:
                    return True
        return False

    def tick(self, now: float) -> None:
        if self.pending and now - self._last_look >= LOOK_SECONDS:
            self._last_look = now
            self._release_marked()

    def busy(self, offload: str) -> bool:
        return offload in self.pending

    def next_look(self) -> float | None:
        return LOOK_SECONDS if self.pending else None


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def make_gate(ctx: GateContext) -> Gate:
    if ctx.config.ready == "marker":
        return MarkerGate(ctx)
    if ctx.config.ready == "mhl":
        from .mhl_gate import MhlGate

        return MhlGate(ctx)
    return Gate(ctx)
