"""The versions of a watch folder's files the journal already holds, read one
offload at a time when the watcher first asks about a file of it.

A journal can hold millions of current versions, nearly all of them of
offloads long gone from the folder. Reading them all before the first copy
took seconds at every start; the watcher only asks about files it sees, so an
offload's versions are read on the first question about one of its files and
kept from then on, updated by the watcher as before. The scan asks from a
worker thread, so reads use a connection of their own, under a lock. The
change times the versions recorded come in the same read (`ctimes`), for
telling a rewrite that restored size and mtime from an unchanged file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

Version = tuple[int, int]  # (size, mtime_ns)

_OFFLOAD_SQL = (
    "SELECT f.relpath, f.size, f.mtime_ns, f.ctime_ns FROM offloads o JOIN files f ON f.offload_id = o.id AND f.current = 1 "
    "WHERE o.watch = ? AND o.name = ?"
)
_ALL_SQL = (
    "SELECT o.name, f.relpath, f.size, f.mtime_ns, f.ctime_ns FROM offloads o JOIN files f ON f.offload_id = o.id "
    "AND f.current = 1 WHERE o.watch = ?"
)


def offload_of(relpath: str) -> str:
    """The offload a relative path belongs to: its first segment (a loose file is its own)."""
    return relpath.partition("/")[0]


class KnownVersions(MutableMapping[str, Version]):
    """relpath -> version handed on, for one watch folder."""

    def __init__(self, journal_path: Path, watch: str) -> None:
        self.journal_path = journal_path
        self.watch = watch
        self._offloads: dict[str, dict[str, Version]] = {}
        self._ctimes: dict[str, dict[str, int]] = {}  # offload -> relpath -> ctime_ns recorded (journal v2+)
        self._complete = False  # every offload read (the whole mapping was asked for once)
        self._lock = threading.Lock()
        self.ctimes = KnownCtimes(self)

    def _of(self, relpath: str) -> dict[str, Version]:
        offload = offload_of(relpath)
        versions = self._offloads.get(offload)
        if versions is None:
            with self._lock:
                versions = self._offloads.get(offload)
                if versions is None:
                    versions, ctimes = {}, {}
                    for relpath, size, mtime_ns, ctime_ns in self._query(_OFFLOAD_SQL, (self.watch, offload)):
                        versions[relpath] = (size, mtime_ns)
                        if ctime_ns is not None:
                            ctimes[relpath] = ctime_ns
                    self._offloads[offload], self._ctimes[offload] = versions, ctimes
        return versions

    def ctimes_of(self, relpath: str) -> dict[str, int]:
        """The recorded change times of `relpath`'s offload (read with its versions)."""
        self._of(relpath)
        return self._ctimes[offload_of(relpath)]

    def _query(self, sql: str, args: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
        """Rows one at a time: a list of 200,000 row tuples cost 27 MiB for a
        moment, at the moment the start-up scan's maps are built."""
        db = sqlite3.connect(self.journal_path)
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            yield from db.execute(sql, args)
        finally:
            db.close()

    def _load_all(self) -> None:
        """Every offload of the folder: a rescan's look for what vanished goes
        through the whole mapping. Read once; offloads seen later are read
        on their first question as before."""
        if self._complete:
            return
        with self._lock:
            found: dict[str, dict[str, Version]] = {}
            ctimes: dict[str, dict[str, int]] = {}
            for name, relpath, size, mtime_ns, ctime_ns in self._query(_ALL_SQL, (self.watch,)):
                found.setdefault(name, {})[relpath] = (size, mtime_ns)
                if ctime_ns is not None:
                    ctimes.setdefault(name, {})[relpath] = ctime_ns
            for name, versions in found.items():
                if name not in self._offloads:  # one read already: the watcher has kept it up to date
                    self._offloads[name] = versions
                    self._ctimes[name] = ctimes.get(name, {})
            self._complete = True

    def __getitem__(self, relpath: str) -> Version:
        return self._of(relpath)[relpath]

    def get(self, relpath: str, default: Version | None = None) -> Version | None:  # type: ignore[override]
        return self._of(relpath).get(relpath, default)

    def __contains__(self, relpath: object) -> bool:
        return isinstance(relpath, str) and relpath in self._of(relpath)

    def __setitem__(self, relpath: str, version: Version) -> None:
        self._of(relpath)[relpath] = version

    def __delitem__(self, relpath: str) -> None:
        del self._of(relpath)[relpath]

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        for versions in list(self._offloads.values()):
            yield from list(versions)

    def items(self) -> list[tuple[str, Version]]:  # type: ignore[override]
        """Every (relpath, version) at once: one lookup per offload, not per file."""
        self._load_all()
        return [pair for versions in list(self._offloads.values()) for pair in list(versions.items())]

    def __len__(self) -> int:
        self._load_all()
        return sum(len(v) for v in self._offloads.values())


class KnownCtimes(MutableMapping[str, int]):
    """relpath -> ctime_ns recorded for the version the watcher knows, read
    per offload together with the versions."""

    def __init__(self, known: KnownVersions) -> None:
        self.known = known

    def __getitem__(self, relpath: str) -> int:
        return self.known.ctimes_of(relpath)[relpath]

    def get(self, relpath: str, default: int | None = None) -> int | None:  # type: ignore[override]
        return self.known.ctimes_of(relpath).get(relpath, default)

    def __setitem__(self, relpath: str, ctime_ns: int) -> None:
        self.known.ctimes_of(relpath)[relpath] = ctime_ns

    def __delitem__(self, relpath: str) -> None:
        del self.known.ctimes_of(relpath)[relpath]

    def __iter__(self) -> Iterator[str]:
        self.known._load_all()
        for ctimes in list(self.known._ctimes.values()):
            yield from list(ctimes)

    def __len__(self) -> int:
        self.known._load_all()
        return sum(len(c) for c in self.known._ctimes.values())
