"""The durable journal: SQLite in WAL mode, the only truth about every copy.

One row in `files` per version of a source file (path, size, mtime); one row in
`copies` per (file version x destination) with its state:

    pending ──claim──▶ transferring ──▶ verified
       ▲                    │
       └──── retry later ───┤ (transient error, or a destination problem)
                            └──▶ failed  (the source itself cannot be read)

Copies of a version that turned out to be stale are marked `superseded`.
A file renamed or moved inside the watch folder with known content is a new
version whose `moved_from` names the old one; the old one stops being
current, its verified copies stay (a sealed ASC MHL generation lists them),
and each destination that holds one makes the new copy from it
(`Destination.copy`) instead of receiving the bytes again.
A row is claimed before work starts (attempts counted first), and its outcome is
written when work ends; after a crash, rows left `transferring` go back to
`pending` and resume.

Durability: WAL with synchronous=NORMAL. A crash of the process loses nothing
committed; a power cut may roll back the last commits, never corrupt the file.
The daemon groups its per-file writes (ingest, claims, outcomes) into shared
transactions committed at most GROUP_WINDOW apart (`group_commits`): a commit
costs the same for one row as for fifty, and at hundreds of small files a
second the commits were most of the journal's time. A crash may then also
lose the last window's writes. Either way the lost rows can only be "verified"
rows turning back into "pending" ones (work done again, found present at the
destination) or files seen again by the next scan, so no file is lost and
nothing is claimed verified that was not. Writes whose loss would cost more
(an ASC MHL generation's number, an upload's resume state, a milestone) commit
at once, and with them everything grouped before.

The tables, their triggers and the migrations from older journals are in
journal_schema.py; opening, creating and checking the file in journal_file.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .errors import JournalError
from .journal_file import QUICK_CHECK, IntegrityCheck, damaged, open_db

T = TypeVar("T")

# The longest a grouped write waits for its commit (see `Journal.group_commits`).
GROUP_WINDOW = 0.025


@dataclass(frozen=True, slots=True)  # one per file of an offload at once
class SeenFile:
    """A ready source file as the watcher saw it."""

    watch: str  # the watch folder, absolute
    relpath: str  # relative to the watch folder, POSIX, NFC; first segment is the offload
    size: int
    mtime_ns: int
    disk_path: str = ""  # relative path as spelled on disk (NFD on some Macs); "" = relpath
    xxh64: str | None = None  # known before any copy (checked against the offload's ASC MHL)
    ctime_ns: int | None = None
    moved_from: str | None = None  # relpath (same watch) of a current version with these bytes that left its path

    @property
    def on_disk(self) -> str:
        return self.disk_path or self.relpath

    @property
    def offload(self) -> str:
        return self.relpath.split("/", 1)[0]


@dataclass(frozen=True, slots=True)  # one per file of an offload at once
class CopyJob:
    """A claimed copy row with what is needed to work it."""

    copy_id: int
    file_id: int
    offload_id: int
    destination: str
    watch: str
    offload: str
    relpath: str
    disk_path: str
    size: int
    mtime_ns: int
    xxh64: str | None
    attempts: int
    copy_from: str | None = None  # key of a verified copy of the same bytes at this destination (a move)

    @property
    def source_path(self) -> Path:
        return Path(self.watch) / self.disk_path


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_db(path)
        self.window = 0.0  # 0: every write commits at once
        self.group_began: float | None = None  # monotonic start of the open group, if one is open
        self._call_later: Callable[[float, Callable[[], None]], object] | None = None

    def group_commits(
        self, window: float = GROUP_WINDOW, call_later: Callable[[float, Callable[[], None]], object] | None = None
    ) -> None:
        """From now on per-file writes share one transaction until it is
        `window` old; `call_later` (the event loop's) commits a group that no
        later write closes. Only for a journal written from one thread."""
        self.window, self._call_later = window, call_later
    def commit(self) -> None:
        """Commit the open group of writes, if any: before another connection
        (a snapshot, another process) must see them."""
        if self.group_began is not None:
            self.group_began = None
            if self.db.in_transaction:
                self.db.execute("COMMIT")

    def _commit_group(self, began: float) -> None:
        if self.group_began == began:
            self.commit()

    def close(self) -> None:
        self.commit()
        self.db.close()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Journal]:
        """This journal as committed now, on a connection of its own holding
        one read transaction: a consistent view for long reads (an offload's
        look, its report) made in a worker thread while the event loop goes on
        writing through `db` (WAL lets one writer and readers run together).
        The writer calls `commit()` before handing the read on, so that the
        view holds its grouped writes. Only reads; one thread at a time."""
        view = Journal.__new__(Journal)
        view.path = self.path
        view.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            view.db.execute("PRAGMA busy_timeout = 10000")
            view.db.execute("BEGIN")
            view.db.execute("SELECT COUNT(*) FROM offloads").fetchone()  # BEGIN is deferred: read now
            yield view
        finally:
            view.db.close()

    async def read_apart(self, read: Callable[[Journal], T]) -> T:
        """`read` run in a worker thread on a snapshot holding every write
        made so far (a look, a report, the status of 100,000 files)."""
        self.commit()

        def run() -> T:
            with self.snapshot() as view:
                return read(view)

        return await asyncio.to_thread(run)

    def _tx(self, grouped: bool = False, one_write: bool = False) -> "_Transaction":
        """A write as one transaction; `grouped` lets it share the open group
        (a per-file write whose loss costs at most the work again). A grouped
        `one_write` holds writes that stand alone: no savepoint around them."""
        return _Transaction(self, grouped and self.window > 0, one_write)

    # ---- start-up --------------------------------------------------------

    def recover(self, check: IntegrityCheck | None = None) -> int:
        """Check the file (or take the verdict of a check begun earlier), then
        rows a previous process left `transferring` go back to `pending`."""
        found = check.verdict() if check is not None else None
        if found is None:
            found = [r[0] for r in self.db.execute(QUICK_CHECK)]
        if found != ["ok"]:
            raise JournalError(damaged(self.path, " ".join(" ".join(found).split())[:300]))
        with self._tx():
            cur = self.db.execute(
                "UPDATE copies SET state = 'pending', updated_at = ? WHERE state = 'transferring'", (time.time(),)
            )
        return cur.rowcount

    def current_version(self, watch: str, relpath: str) -> tuple[int, str | None, str] | None:
        """(size, xxh64, disk path) of the current version of `relpath`, None if none."""
        row = self.db.execute(
            "SELECT f.size, f.xxh64, f.disk_path FROM files f JOIN offloads o ON o.id = f.offload_id "
            "WHERE o.watch = ? AND o.name = ? AND f.relpath = ? AND f.current = 1",
            (watch, relpath.split("/", 1)[0], relpath),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def set_ctime(self, watch: str, relpath: str, ctime_ns: int) -> None:
        """The file's ctime moved but its bytes are the recorded ones (chmod, a
        rename back, a metadata tool): the version stays."""
        with self._tx(grouped=True):
            self.db.execute(
                "UPDATE files SET ctime_ns = ? WHERE current = 1 AND relpath = ? AND offload_id = "
                "(SELECT id FROM offloads WHERE watch = ? AND name = ?)",
                (ctime_ns, relpath, watch, relpath.split("/", 1)[0]),
            )

    def make_due_now(self) -> None:
        with self._tx():
            self.db.execute("UPDATE copies SET next_attempt_at = 0 WHERE state = 'pending'")

    # ---- ingest ----------------------------------------------------------

    def ingest(self, seen: Iterable[SeenFile], destinations: list[str]) -> list[int]:
        """Record ready files in one transaction; a new version supersedes the
        old one. Returns the ids of new file versions."""
        now = time.time()
        new_ids: list[int] = []
        offloads: dict[tuple[str, str], int] = {}  # a batch is mostly one offload's files
        with self._tx(grouped=True):
            for item in seen:
                file_id = self._ingest_one(item, destinations, now, offloads)
                if file_id is not None:
                    new_ids.append(file_id)
        return new_ids

    def _ingest_one(self, item: SeenFile, destinations: list[str], now: float,
                    offloads: dict[tuple[str, str], int]) -> int | None:
        offload_id = offloads.get((item.watch, item.offload))
        if offload_id is None:
            offload_id = offloads[item.watch, item.offload] = self._offload_id(item.watch, item.offload, now)
        row = self.db.execute(
            "SELECT id, size, mtime_ns, xxh64 FROM files WHERE offload_id = ? AND relpath = ? AND current = 1",
            (offload_id, item.relpath),
        ).fetchone()
        same_bytes = row is not None and (item.xxh64 is None or row[3] in (None, item.xxh64))
        if row is not None and (row[1], row[2]) == (item.size, item.mtime_ns) and same_bytes:
            self.db.execute(
                "UPDATE files SET disk_path = ?, xxh64 = COALESCE(xxh64, ?), ctime_ns = COALESCE(?, ctime_ns) "
                "WHERE id = ?", (item.on_disk, item.xxh64, item.ctime_ns, row[0])
            )
            self._ensure_copies(row[0], destinations, now)
            return None
        if row is not None:
            self._supersede(row[0], now)
        moved_from = self._moved_from(item, now)
        cur = self.db.execute(
            "INSERT INTO files (offload_id, relpath, disk_path, size, mtime_ns, xxh64, first_seen, ctime_ns, moved_from) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (offload_id, item.relpath, item.on_disk, item.size, item.mtime_ns, item.xxh64, now, item.ctime_ns,
             moved_from),
        )
        file_id = int(cur.lastrowid or 0)
        self._ensure_copies(file_id, destinations, now)
        return file_id

    def _moved_from(self, item: SeenFile, now: float) -> int | None:
        """The version a move left behind, if it still is current and holds the
        same bytes: it stops being current (its verified copies stay)."""
        if item.moved_from is None or item.xxh64 is None:
            return None
        row = self.db.execute(
            "SELECT f.id FROM files f JOIN offloads o ON o.id = f.offload_id "
            "WHERE o.watch = ? AND o.name = ? AND f.relpath = ? AND f.current = 1 AND f.size = ? AND f.xxh64 = ?",
            (item.watch, item.moved_from.split("/", 1)[0], item.moved_from, item.size, item.xxh64),
        ).fetchone()
        if row is None:
            return None
        self._supersede(row[0], now)
        return int(row[0])

    def _offload_id(self, watch: str, name: str, now: float) -> int:
        self.db.execute(
            "INSERT OR IGNORE INTO offloads (watch, name, first_seen) VALUES (?, ?, ?)", (watch, name, now)
        )
        return int(self.db.execute("SELECT id FROM offloads WHERE watch = ? AND name = ?", (watch, name)).fetchone()[0])

    def _ensure_copies(self, file_id: int, destinations: list[str], now: float) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO copies (file_id, destination, updated_at) VALUES (?, ?, ?)",
            [(file_id, d, now) for d in destinations],
        )

    def _supersede(self, file_id: int, now: float) -> None:
        self.db.execute("UPDATE files SET current = 0 WHERE id = ?", (file_id,))
        self.db.execute(
            "UPDATE copies SET state = 'superseded', updated_at = ? WHERE file_id = ? AND state != 'verified'",
            (now, file_id),
        )

    def supersede(self, file_id: int) -> None:
        """The source changed under a transfer: this version is no longer the
        file; the next scan records the new one."""
        with self._tx(grouped=True):
            self._supersede(file_id, time.time())

    # ---- claiming and outcomes ----------------------------------------------

    def due_ids(self, destination: str, now: float, limit: int = 1) -> list[int]:
        """Pending copies at `destination` whose next attempt is due, oldest first."""
        rows = self.db.execute(
            "SELECT id FROM copies WHERE destination = ? AND state = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT ?",
            (destination, now, limit),
        )
        return [r[0] for r in rows]

    def due_among(self, destination: str, file_ids: list[int], now: float) -> list[int]:
        """Due pending copies at `destination` of these file versions, oldest first."""
        marks = ",".join("?" * len(file_ids))
        # the unary + keeps SQLite off copies_due: through it, this walked every
        # pending copy of the destination (O(backlog) per claim) to find a few files
        rows = self.db.execute(
            f"SELECT id FROM copies WHERE destination = ? AND file_id IN ({marks}) AND +state = 'pending' "
            "AND +next_attempt_at <= ? ORDER BY next_attempt_at, id",
            (destination, *file_ids, now),
        )
        return [r[0] for r in rows]

    def claim_id(self, copy_id: int, now: float | None = None) -> CopyJob | None:
        """pending -> transferring, attempts counted before the work starts."""
        now = time.time() if now is None else now
        # read first, then one UPDATE: no savepoint is needed (SQLite undoes a
        # failed statement by itself), and every statement the event loop runs
        # costs a GIL hand-off to the copy threads and back (2-3 per file saved)
        with self._tx(grouped=True, one_write=True):
            row = self.db.execute(_JOB_SELECT + " WHERE c.id = ? AND c.state = 'pending'", (copy_id,)).fetchone()
            if row is None:
                return None
            self.db.execute(
                "UPDATE copies SET state = 'transferring', attempts = attempts + 1, updated_at = ? WHERE id = ?",
                (now, copy_id),
            )
        *fields, attempts, copy_from = row
        fields += [attempts + 1, copy_from]  # attempts as the UPDATE left it
        return CopyJob(*fields)

    def next_due(self, destination: str) -> float | None:
        row = self.db.execute(
            "SELECT MIN(next_attempt_at) FROM copies WHERE destination = ? AND state = 'pending'", (destination,)
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def record_verified(self, job: CopyJob, xxh64: str, bytes_sent: int) -> bool:
        """Mark the copy verified; returns False (and marks nothing) when the
        file's hash recorded by another destination differs from `xxh64`."""
        now = time.time()
        # two single statements, no savepoint: should the second fail, the
        # first has only recorded the hash these bytes were read with
        with self._tx(grouped=True, one_write=True):
            self.db.execute("UPDATE files SET xxh64 = ? WHERE id = ? AND xxh64 IS NULL", (xxh64, job.file_id))
            marked = self.db.execute(
                "UPDATE copies SET state = 'verified', verified_at = ?, updated_at = ?, last_error = NULL, "
                "error_kind = NULL, bytes_sent = bytes_sent + ?, resume = NULL "
                "WHERE id = ? AND (SELECT xxh64 FROM files WHERE id = ?) = ?",
                (now, now, bytes_sent, job.copy_id, job.file_id, xxh64),
            )
        return marked.rowcount == 1

    def record_retry(self, copy_id: int, error: str, kind: str, next_attempt_at: float) -> None:
        with self._tx(grouped=True):
            self.db.execute(
                "UPDATE copies SET state = 'pending', last_error = ?, error_kind = ?, next_attempt_at = ?, "
                "updated_at = ? WHERE id = ? AND state = 'transferring'",
                (error, kind, next_attempt_at, time.time(), copy_id),
            )

    def record_failed(self, copy_id: int, error: str) -> None:
        with self._tx(grouped=True):
            self.db.execute(
                "UPDATE copies SET state = 'failed', last_error = ?, error_kind = 'permanent', updated_at = ? "
                "WHERE id = ? AND state = 'transferring'",
                (error, time.time(), copy_id),
            )

    def release(self, copy_id: int) -> None:
        """Work stopped by a shutdown: back to pending, due at once."""
        with self._tx(grouped=True):
            self.db.execute(
                "UPDATE copies SET state = 'pending', next_attempt_at = 0, updated_at = ? "
                "WHERE id = ? AND state = 'transferring'",
                (time.time(), copy_id),
            )

    def retry(self, destination: str | None = None, offload: str | None = None) -> int:
        """Failed and waiting rows become due now (the `retry` command)."""
        sql = (
            "UPDATE copies SET state = 'pending', next_attempt_at = 0, updated_at = ? "
            "WHERE (state = 'failed' OR (state = 'pending' AND last_error IS NOT NULL))"
        )
        args: list[Any] = [time.time()]
        if destination is not None:
            sql += " AND destination = ?"
            args.append(destination)
        if offload is not None:
            sql += " AND file_id IN (SELECT f.id FROM files f JOIN offloads o ON o.id = f.offload_id WHERE o.name = ?)"
            args.append(offload)
        with self._tx():
            return self.db.execute(sql, args).rowcount

    def verified_copies(self, destination: str, offload: str | None = None) -> list[tuple[int, str, int, str]]:
        """(copy id, key, size, xxh64) of every verified copy of a current version."""
        sql = (
            "SELECT c.id, f.relpath, f.size, f.xxh64 FROM copies c JOIN files f ON f.id = c.file_id "
            "JOIN offloads o ON o.id = f.offload_id "
            "WHERE c.destination = ? AND c.state = 'verified' AND f.current = 1"
        )
        args: tuple[Any, ...] = (destination,)
        if offload is not None:
            sql += " AND o.name = ?"
            args += (offload,)
        return [tuple(r) for r in self.db.execute(sql + " ORDER BY f.relpath", args)]  # type: ignore[misc]

    def requeue(self, copy_id: int, error: str) -> None:
        """A verified copy turned out bad: send it again."""
        with self._tx():
            self.db.execute(
                "UPDATE copies SET state = 'pending', verified_at = NULL, last_error = ?, error_kind = 'transient', "
                "next_attempt_at = 0, updated_at = ? WHERE id = ?",
                (error, time.time(), copy_id),
            )

    # ---- resume state --------------------------------------------------------

    def load_resume(self, copy_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT resume FROM copies WHERE id = ?", (copy_id,)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def save_resume(self, copy_id: int, state: dict[str, Any] | None) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE copies SET resume = ? WHERE id = ?",
                (None if state is None else json.dumps(state), copy_id),
            )

    # ---- offload completeness and ASC MHL generations ----------------------------

    def offload_state(self, offload_id: int, destination: str) -> Iterator[tuple[Any, ...]]:
        """Current files of an offload with their copy state at `destination`,
        and the verified copies there of versions that moved away (the copy
        stays where it is: it is what a sealed generation lists). One plain
        tuple at a time, in path order (id, relpath, size, mtime_ns, xxh64,
        state, verified_at): a 200,000-file generation holds no list of rows
        beside its records."""
        return self.db.execute(_OFFLOAD_STATE, (destination, offload_id))

    def verified_counts(self, offload_id: int) -> tuple[int, dict[str, int]]:
        """Current files of an offload, and per destination how many of them are
        verified there (kept by the schema's triggers: O(destinations))."""
        row = self.db.execute("SELECT files FROM offload_files WHERE offload_id = ?", (offload_id,)).fetchone()
        rows = self.db.execute(
            "SELECT destination, files FROM offload_verified WHERE offload_id = ? AND files > 0", (offload_id,)
        )
        return (0 if row is None else int(row[0])), {r[0]: int(r[1]) for r in rows}

    def changes(self, offload_id: int) -> int:
        """The offload's change stamp (see the schema's `offload_changes`)."""
        row = self.db.execute("SELECT changes FROM offload_changes WHERE offload_id = ?", (offload_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def offload(self, offload_id: int) -> tuple[str, str]:
        row = self.db.execute("SELECT watch, name FROM offloads WHERE id = ?", (offload_id,)).fetchone()
        return row[0], row[1]

    def offload_ids(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT id FROM offloads ORDER BY id")]

    def last_generation(self, offload_id: int, destination: str) -> tuple[int, str] | None:
        row = self.db.execute(
            "SELECT number, signature FROM generations WHERE offload_id = ? AND destination = ? "
            "ORDER BY id DESC LIMIT 1",
            (offload_id, destination),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def generations_due(self) -> list[tuple[int, str, str, str]]:
        """(offload id, destination, watch, offload name) where every current
        file is verified and something changed since the last look there
        (`generation_due`): from the counts the triggers keep, without
        reading any file's row."""
        return [(r[0], r[1], r[2], r[3]) for r in self.db.execute(
            "SELECT d.offload_id, d.destination, o.watch, o.name FROM generation_due d "
            "JOIN offload_files f ON f.offload_id = d.offload_id "
            "JOIN offload_verified v ON v.offload_id = d.offload_id AND v.destination = d.destination "
            "JOIN offloads o ON o.id = d.offload_id WHERE f.files > 0 AND v.files = f.files ORDER BY d.offload_id"
        )]

    def generation_stamp(self, offload_id: int, destination: str) -> int | None:
        """Taken before a look reads the offload; `generation_seen` with it
        afterwards clears the mark only if nothing changed meanwhile."""
        row = self.db.execute(
            "SELECT stamp FROM generation_due WHERE offload_id = ? AND destination = ?", (offload_id, destination)
        ).fetchone()
        return None if row is None else int(row[0])

    def generation_seen(self, offload_id: int, destination: str, stamp: int | None) -> None:
        if stamp is None:
            return
        with self._tx(grouped=True):
            self.db.execute(
                "DELETE FROM generation_due WHERE offload_id = ? AND destination = ? AND stamp = ?",
                (offload_id, destination, stamp),
            )

    def record_generation(self, offload_id: int, destination: str, number: int, filename: str, signature: str) -> None:
        with self._tx():
            self.db.execute(
                "INSERT INTO generations (offload_id, destination, number, filename, signature, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (offload_id, destination, number, filename, signature, time.time()),
            )

    # ---- destinations ---------------------------------------------------------

    def destination_state(self, name: str) -> tuple[str, str | None] | None:
        row = self.db.execute("SELECT state, error FROM destinations WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], row[1])

    def set_destination_state(self, name: str, state: str, error: str | None) -> None:
        with self._tx():
            self.db.execute(
                "INSERT INTO destinations (name, state, error, since) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET error = excluded.error, "
                "since = CASE WHEN state = excluded.state THEN since ELSE excluded.since END, state = excluded.state",
                (name, state, error, time.time()),
            )

    def copy_state_counts(self) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT c.state, COUNT(*) FROM copies c JOIN files f ON f.id = c.file_id "
            "WHERE f.current = 1 GROUP BY c.state"
        )
        return {r[0]: r[1] for r in rows}

    # ---- reading for status ------------------------------------------------------

    def has_folders(self, offload_id: int) -> bool:
        """Whether a current file of the offload is inside a folder (loose files
        have nowhere to hold an ASC MHL history or a report)."""
        row = self.db.execute(
            "SELECT 1 FROM files WHERE offload_id = ? AND current = 1 AND instr(relpath, '/') > 0 LIMIT 1", (offload_id,)
        ).fetchone()
        return row is not None

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[sqlite3.Row]:
        cur = self.db.cursor()
        cur.row_factory = sqlite3.Row
        yield from cur.execute(sql, args)


_JOB_SELECT = (
    "SELECT c.id, c.file_id, f.offload_id, c.destination, o.watch, o.name, f.relpath, f.disk_path, f.size, f.mtime_ns, "
    "f.xxh64, c.attempts, "
    # the old key of a move, when this destination holds a verified copy of it
    "(SELECT m.relpath FROM files m JOIN copies mc ON mc.file_id = m.id AND mc.destination = c.destination "
    "AND mc.state = 'verified' WHERE m.id = f.moved_from AND m.xxh64 = f.xxh64) "
    "FROM copies c JOIN files f ON f.id = c.file_id JOIN offloads o ON o.id = f.offload_id"
)

# A version that moved away whose copy (c) is verified, and whose key no current
# version of the offload has taken over since.
_MOVED_AWAY = (
    "c.state = 'verified' AND EXISTS (SELECT 1 FROM files n WHERE n.moved_from = f.id) "
    "AND NOT EXISTS (SELECT 1 FROM files k WHERE k.offload_id = f.offload_id AND k.relpath = f.relpath "
    "AND k.current = 1)"
)

_OFFLOAD_STATE = (
    "SELECT f.id, f.relpath, f.size, f.mtime_ns, f.xxh64, c.state, c.verified_at FROM files f "
    "JOIN copies c ON c.file_id = f.id AND c.destination = ? "
    "WHERE f.offload_id = ? AND (f.current = 1 OR (" + _MOVED_AWAY + ")) ORDER BY f.relpath"
)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception. Grouped: a
    savepoint inside the journal's open group (opened if none is), rolled
    back alone on an exception; the group commits once it is old enough.
    Grouped writes that stand alone (one_write) skip the savepoint."""

    def __init__(self, journal: Journal, grouped: bool, one_write: bool = False) -> None:
        self.journal, self.db, self.grouped = journal, journal.db, grouped
        self.savepoint = grouped and not one_write

    def __enter__(self) -> None:
        j = self.journal
        if not self.grouped:
            j.commit()
            self.db.execute("BEGIN IMMEDIATE")
            return
        if j.group_began is None:
            self.db.execute("BEGIN IMMEDIATE")
            j.group_began = began = time.monotonic()
            if j._call_later is not None:
                j._call_later(j.window, lambda: j._commit_group(began))
        if self.savepoint:
            self.db.execute("SAVEPOINT write")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self.grouped:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
            return
        j = self.journal
        if not self.db.in_transaction:  # SQLite rolled the whole group back itself (a full disk)
            j.group_began = None
            return
        if self.savepoint:
            if exc_type:
                self.db.execute("ROLLBACK TO write")
            self.db.execute("RELEASE write")
        if j.group_began is not None and time.monotonic() - j.group_began >= j.window:
            j.commit()


def open_journal(path: Path) -> Journal:
    return Journal(path)
