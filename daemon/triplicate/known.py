"""The versions of a watch folder's files the journal already holds, read one
offload at a time when the watcher first asks about a file of it.

A journal can hold millions of current versions, nearly all of them of
offloads long gone from the folder. Reading them all before the first copy
took seconds at every start; the watcher only asks about files it sees, so an
offload's versions are read on the first question about one of its files and
kept from then on, updated by the watcher as before. The scan asks from a
worker thread, so reads use a connection of their own, under a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path

Version = tuple[int, int]  # (size, mtime_ns)

_OFFLOAD_SQL = (
    "SELECT f.relpath, f.size, f.mtime_ns FROM offloads o JOIN files f ON f.offload_id = o.id AND f.current = 1 "
    "WHERE o.watch = ? AND o.name = ?"
)
_ALL_SQL = (
    "SELECT o.name, f.relpath, f.size, f.mtime_ns FROM offloads o JOIN files f ON f.offload_id = o.id "
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
        self._complete = False  # every offload read (the whole mapping was asked for once)
        self._lock = threading.Lock()

    def _of(self, relpath: str) -> dict[str, Version]:
        offload = offload_of(relpath)
        versions = self._offloads.get(offload)
        if versions is None:
            with self._lock:
                versions = self._offloads.get(offload)
                if versions is None:
                    versions = self._offloads[offload] = {
                        r[0]: (r[1], r[2]) for r in self._query(_OFFLOAD_SQL, (self.watch, offload))
                    }
        return versions

    def _query(self, sql: str, args: tuple[str, ...]) -> list[tuple]:
        db = sqlite3.connect(self.journal_path)
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            return db.execute(sql, args).fetchall()
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
            for name, relpath, size, mtime_ns in self._query(_ALL_SQL, (self.watch,)):
                found.setdefault(name, {})[relpath] = (size, mtime_ns)
            for name, versions in found.items():
                self._offloads.setdefault(name, versions)
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
