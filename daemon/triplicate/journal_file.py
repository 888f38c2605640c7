"""The journal's SQLite file: opened in WAL mode, created whole or not at all,
migrated from an older schema in one transaction, refused with one sentence
when it cannot be used, and checked for damage at start-up."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from .errors import JournalError
from .journal_schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

QUICK_CHECK = "PRAGMA quick_check(3)"


class IntegrityCheck:
    """The journal's integrity check, begun before the daemon has loaded.

    quick_check reads the whole file: 1.4-3.4 s for 240 MiB, the largest part
    of a start with a big journal. SQLite lets other threads run while it
    reads, so it runs on a connection of its own in a thread while the rest
    of the daemon is imported and built; `Journal.recover` takes its verdict
    before the first write. A check that cannot run here (no journal yet, no
    access) leaves the verdict to recover, which says why in its own words."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._found: list[str] | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def begin(cls, path: Path) -> IntegrityCheck:
        check = cls(path)
        try:
            usable = path.stat().st_size > 0
        except OSError:
            usable = False
        if usable:
            check._thread = threading.Thread(target=check._run, name="journal-check", daemon=True)
            check._thread.start()
        return check

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path)
            try:
                db.execute("PRAGMA busy_timeout = 10000")
                self._found = [r[0] for r in db.execute(QUICK_CHECK)]
            finally:
                db.close()
        except (sqlite3.Error, OSError):
            self._found = None  # recover() runs the check itself and words the problem

    def verdict(self) -> list[str] | None:
        """quick_check's lines ("ok" alone when intact), or None when it could not run."""
        if self._thread is None:
            return None
        self._thread.join()
        return self._found


def open_db(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            _refuse_unusable(path)
        else:
            _create(path)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {path} was written by a newer triplicate (schema {version}); upgrade triplicate"
            )
        counted = _has_table(db, "offload_verified")
        if 0 < version < SCHEMA_VERSION:
            _migrate(db, version)
        db.executescript(SCHEMA)
        if not counted:
            _count_offloads(db)
        if version != SCHEMA_VERSION:  # only then: opening never writes to a journal that is in order
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        raise JournalError(
            f"journal {path} cannot be used ({exc}); it is damaged or not a triplicate journal — "
            "move it aside to start a new one (copies already at the destinations are checked, not re-sent)"
        ) from None
    except OSError as exc:
        raise JournalError(f"journal {path} cannot be created: {exc.strerror}; check the folder") from None
    return db


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a journal written by an older triplicate up to this schema, in one
    transaction with its new version number: a crash leaves it old or new."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for sql in MIGRATIONS[step]:
                if callable(sql):
                    sql(db)
                else:
                    db.execute(sql)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def damaged(path: Path, what: str) -> str:
    return (f"journal {path} is damaged ({what}); restore it from a backup, or move it aside to start a new one "
            "(copies already at the destinations are checked, not re-sent)")


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _count_offloads(db: sqlite3.Connection) -> None:
    """The per-offload counts of a journal written before they were kept,
    counted whole in one transaction (the triggers keep them from then on)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("DELETE FROM offload_files")
        db.execute("DELETE FROM offload_verified")
        db.execute("INSERT INTO offload_files SELECT offload_id, COUNT(*) FROM files WHERE current = 1 GROUP BY offload_id")
        db.execute(
            "INSERT INTO offload_verified SELECT f.offload_id, c.destination, COUNT(*) FROM copies c "
            "JOIN files f ON f.id = c.file_id WHERE c.state = 'verified' AND f.current = 1 "
            "GROUP BY f.offload_id, c.destination"
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _refuse_unusable(path: Path) -> None:
    """An existing journal that cannot be used must stop the start, never be
    replaced: an empty file is a truncated journal (triplicate never leaves one
    behind, see _create), not a new one."""
    try:
        with open(path, "r+b"):
            pass
    except PermissionError as exc:
        raise JournalError(
            f"journal {path} cannot be read and written by this user ({exc.strerror}); "
            "give the daemon's user read and write access to it and to its folder"
        ) from None
    if path.stat().st_size == 0:
        raise JournalError(damaged(path, "the file is empty: it was truncated"))


def _create(path: Path) -> None:
    """A new journal appears whole or not at all: built under a temporary name
    and linked into place (never over a journal another process made)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    finally:
        db.close()  # checkpoints: everything is in the main file
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: theirs is used
    except OSError:  # a file system without hard links
        if not path.exists():
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
