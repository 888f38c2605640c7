"""The journal's schema: its tables, indexes and triggers, and the steps that
bring a journal written by an older triplicate up to it (journal_file.py runs
them). journal.py explains what the rows mean."""

from __future__ import annotations

import sqlite3
from typing import Callable

SCHEMA_VERSION = 4

# A copy's states, as the copies table checks them. quick_check, run at every
# start, evaluates CHECK constraints row by row, and SQLite builds an IN list
# anew for each row: on a million copies that was 1.6 s of a 2.6 s check. The
# same test as a chain of comparisons costs 0.13 s.
STATES = ("pending", "transferring", "verified", "failed", "superseded")
STATE_CHECK = " OR ".join(f"state = '{state}'" for state in STATES)
STATE_CHECK_BEFORE_4 = "state IN (" + ", ".join(f"'{state}'" for state in STATES) + ")"

GENERATION_DUE = """
-- manifests.py: per offload and destination, a stamp moved by every change a generation there records
-- (a copy verified, a file gone), kept until a look has seen that stamp: a stop between an offload's
-- last copy and its generation is made good at the next start, whichever generation it was
CREATE TABLE IF NOT EXISTS generation_due (
    offload_id INTEGER NOT NULL,
    destination TEXT NOT NULL,
    stamp INTEGER NOT NULL,
    PRIMARY KEY (offload_id, destination)
) WITHOUT ROWID;
"""

# a copy verified moves the stamp of its offload at its destination (inserted or updated)
_DUE_FOR_NEW_COPY = """\
    INSERT INTO generation_due (offload_id, destination, stamp)
        SELECT offload_id, new.destination, 1 FROM files WHERE id = new.file_id AND current = 1
        ON CONFLICT (offload_id, destination) DO UPDATE SET stamp = stamp + 1;
"""



def _state_check_as_comparisons(db: sqlite3.Connection) -> None:
    """The copies' CHECK rewritten in place, as SQLite's ALTER TABLE page
    describes for a change that leaves the stored rows valid: the schema text
    edited, its version moved so that every connection reads it again."""
    version = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema = ON")
    try:
        db.execute("UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'copies'",
                   (STATE_CHECK_BEFORE_4, STATE_CHECK))
    except sqlite3.DatabaseError:
        return  # a build of SQLite in defensive mode: the old check stays, equivalent and only slower
    finally:
        db.execute("PRAGMA writable_schema = OFF")
    db.execute(f"PRAGMA schema_version = {version + 1}")


# What each version added, with how an older journal gains it
# (journal_file._migrate): ctime_ns of each version (a rewrite that restores size and
# mtime still moves the ctime), and moved_from (files.id of the version a
# rename or move came from); then the generation_due table (above); then the
# states' check in a form quick_check evaluates quickly.
MIGRATIONS: dict[int, tuple[str | Callable[[sqlite3.Connection], None], ...]] = {
    2: (
        "ALTER TABLE files ADD COLUMN ctime_ns INTEGER",
        "ALTER TABLE files ADD COLUMN moved_from INTEGER REFERENCES files(id)",
    ),
    3: (
        GENERATION_DUE,
        # what an older journal can show of a stop before a generation: an offload complete at a
        # destination that has never had one there (a later generation cut short is not seen)
        "INSERT INTO generation_due (offload_id, destination, stamp) "
        "SELECT f.offload_id, c.destination, 1 FROM files f JOIN copies c ON c.file_id = f.id "
        "WHERE f.current = 1 GROUP BY f.offload_id, c.destination HAVING SUM(c.state != 'verified') = 0 "
        "AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.offload_id = f.offload_id "
        "AND g.destination = c.destination)",
    ),
    4: (_state_check_as_comparisons,),
}


def _stamp_trigger(name: str, event: str, table: str) -> str:
    """A trigger moving the change stamp of the offload a row of `table`
    belongs to (before and after an update: a row can change offloads)."""
    rows = {"INSERT": ["new"], "UPDATE": ["old", "new"], "DELETE": ["old"]}[event]
    bumps = "".join(
        f"    INSERT INTO offload_changes (offload_id, changes) VALUES ({row}.offload_id, 1)\n"
        "        ON CONFLICT (offload_id) DO UPDATE SET changes = changes + 1;\n"
        for row in rows
    )
    return f"CREATE TRIGGER IF NOT EXISTS offload_changes_{name} AFTER {event} ON {table}\nBEGIN\n{bumps}END;\n"


SCHEMA = GENERATION_DUE + """
CREATE TABLE IF NOT EXISTS offloads (
    id INTEGER PRIMARY KEY,
    watch TEXT NOT NULL,
    name TEXT NOT NULL,
    first_seen REAL NOT NULL,
    UNIQUE (watch, name)
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    offload_id INTEGER NOT NULL REFERENCES offloads(id),
    relpath TEXT NOT NULL,
    disk_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    xxh64 TEXT,
    current INTEGER NOT NULL DEFAULT 1,
    first_seen REAL NOT NULL,
    ctime_ns INTEGER,
    moved_from INTEGER REFERENCES files(id)
);
CREATE INDEX IF NOT EXISTS files_current ON files (offload_id, relpath) WHERE current = 1;
CREATE INDEX IF NOT EXISTS files_moved_from ON files (moved_from) WHERE moved_from IS NOT NULL;
CREATE TABLE IF NOT EXISTS copies (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    destination TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (""" + STATE_CHECK + """),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    error_kind TEXT,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    verified_at REAL,
    bytes_sent INTEGER NOT NULL DEFAULT 0,
    resume TEXT,
    UNIQUE (file_id, destination)
);
CREATE INDEX IF NOT EXISTS copies_due ON copies (destination, state, next_attempt_at);
-- recover(): the rows a stop left in flight, found without reading every copy
CREATE INDEX IF NOT EXISTS copies_transferring ON copies (id) WHERE state = 'transferring';
CREATE TABLE IF NOT EXISTS destinations (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    error TEXT,
    since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY,
    offload_id INTEGER NOT NULL REFERENCES offloads(id),
    destination TEXT NOT NULL,
    number INTEGER NOT NULL,
    filename TEXT NOT NULL,
    signature TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- milestones.py: when an offload was last found safe to format, its report written
CREATE TABLE IF NOT EXISTS milestones (
    offload_id INTEGER NOT NULL REFERENCES offloads(id),
    kind TEXT NOT NULL,
    signature TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (offload_id, kind)
);
-- milestones.py: per offload, its current files and how many of them each destination holds verified,
-- so a look costs O(destinations) however large the offload. Kept by triggers in the transaction of
-- every write to `files` or `copies`; journals from before them are counted once when opened.
CREATE TABLE IF NOT EXISTS offload_files (
    offload_id INTEGER PRIMARY KEY,
    files INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS offload_verified (
    offload_id INTEGER NOT NULL,
    destination TEXT NOT NULL,
    files INTEGER NOT NULL,
    PRIMARY KEY (offload_id, destination)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS offload_files_insert AFTER INSERT ON files WHEN new.current = 1
BEGIN
    INSERT INTO offload_files (offload_id, files) VALUES (new.offload_id, 1)
        ON CONFLICT (offload_id) DO UPDATE SET files = files + 1;
END;
CREATE TRIGGER IF NOT EXISTS offload_files_update AFTER UPDATE OF offload_id, current ON files
    WHEN old.current IS NOT new.current OR old.offload_id IS NOT new.offload_id
BEGIN
    UPDATE offload_files SET files = files - 1 WHERE offload_id = old.offload_id AND old.current = 1;
    INSERT INTO offload_files (offload_id, files) SELECT new.offload_id, 1 WHERE new.current = 1
        ON CONFLICT (offload_id) DO UPDATE SET files = files + 1;
    UPDATE offload_verified SET files = files - 1 WHERE offload_id = old.offload_id AND old.current = 1
        AND destination IN (SELECT destination FROM copies WHERE file_id = old.id AND state = 'verified');
    INSERT INTO offload_verified (offload_id, destination, files)
        SELECT new.offload_id, destination, 1 FROM copies WHERE file_id = new.id AND state = 'verified' AND new.current = 1
        ON CONFLICT (offload_id, destination) DO UPDATE SET files = files + 1;
END;
CREATE TRIGGER IF NOT EXISTS offload_files_delete AFTER DELETE ON files WHEN old.current = 1
BEGIN
    UPDATE offload_files SET files = files - 1 WHERE offload_id = old.offload_id;
END;
CREATE TRIGGER IF NOT EXISTS offload_verified_insert AFTER INSERT ON copies WHEN new.state = 'verified'
BEGIN
    INSERT INTO offload_verified (offload_id, destination, files)
        SELECT offload_id, new.destination, 1 FROM files WHERE id = new.file_id AND current = 1
        ON CONFLICT (offload_id, destination) DO UPDATE SET files = files + 1;
END;
CREATE TRIGGER IF NOT EXISTS offload_verified_update AFTER UPDATE OF state, file_id, destination ON copies
    WHEN (old.state = 'verified' OR new.state = 'verified')
        AND (old.state IS NOT new.state OR old.file_id IS NOT new.file_id OR old.destination IS NOT new.destination)
BEGIN
    UPDATE offload_verified SET files = files - 1 WHERE old.state = 'verified' AND destination = old.destination
        AND offload_id = (SELECT offload_id FROM files WHERE id = old.file_id AND current = 1);
    INSERT INTO offload_verified (offload_id, destination, files)
        SELECT offload_id, new.destination, 1 FROM files WHERE id = new.file_id AND current = 1 AND new.state = 'verified'
        ON CONFLICT (offload_id, destination) DO UPDATE SET files = files + 1;
END;
CREATE TRIGGER IF NOT EXISTS offload_verified_delete AFTER DELETE ON copies WHEN old.state = 'verified'
BEGIN
    UPDATE offload_verified SET files = files - 1 WHERE destination = old.destination
        AND offload_id = (SELECT offload_id FROM files WHERE id = old.file_id AND current = 1);
END;
-- offload_checks.py: readiness of offloads held back by their rule (ASC MHL, marker)
CREATE TABLE IF NOT EXISTS offload_readiness (
    offload_id INTEGER PRIMARY KEY REFERENCES offloads(id),
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT,
    updated_at REAL NOT NULL
);
-- offload_checks.py: source files that do not match their offload's ASC MHL, until an operator decides
CREATE TABLE IF NOT EXISTS source_problems (
    offload_id INTEGER NOT NULL REFERENCES offloads(id),
    relpath TEXT NOT NULL,
    disk_path TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    xxh64 TEXT,
    found_at REAL NOT NULL,
    accepted_at REAL,
    released_at REAL,
    PRIMARY KEY (offload_id, relpath)
);
-- milestones.py: a stamp per offload that moves with every write a look reads (its files and their
-- hashes, which copies are verified, ASC MHL generations, readiness), so that a look which left nothing
-- to do is not taken again until one of them changed
CREATE TABLE IF NOT EXISTS offload_changes (
    offload_id INTEGER PRIMARY KEY,
    changes INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS generation_due_copy_insert AFTER INSERT ON copies WHEN new.state = 'verified'
BEGIN
""" + _DUE_FOR_NEW_COPY + """END;
CREATE TRIGGER IF NOT EXISTS generation_due_copy_update AFTER UPDATE OF state, file_id ON copies
    WHEN new.state = 'verified' AND (old.state IS NOT 'verified' OR old.file_id IS NOT new.file_id)
BEGIN
""" + _DUE_FOR_NEW_COPY + """END;
CREATE TRIGGER IF NOT EXISTS generation_due_file_gone AFTER UPDATE OF current ON files
    WHEN old.current = 1 AND new.current = 0
BEGIN
    INSERT INTO generation_due (offload_id, destination, stamp)
        SELECT offload_id, destination, 1 FROM offload_verified WHERE offload_id = old.offload_id
        ON CONFLICT (offload_id, destination) DO UPDATE SET stamp = stamp + 1;
END;
CREATE TRIGGER IF NOT EXISTS offload_changes_file_update AFTER UPDATE OF offload_id, relpath, current, xxh64 ON files
    WHEN old.offload_id IS NOT new.offload_id OR old.relpath IS NOT new.relpath OR old.current IS NOT new.current
        OR old.xxh64 IS NOT new.xxh64
BEGIN
    INSERT INTO offload_changes (offload_id, changes) VALUES (old.offload_id, 1)
        ON CONFLICT (offload_id) DO UPDATE SET changes = changes + 1;
    INSERT INTO offload_changes (offload_id, changes) VALUES (new.offload_id, 1)
        ON CONFLICT (offload_id) DO UPDATE SET changes = changes + 1;
END;
CREATE TRIGGER IF NOT EXISTS offload_changes_copy_insert AFTER INSERT ON copies
BEGIN
    INSERT INTO offload_changes (offload_id, changes) SELECT offload_id, 1 FROM files WHERE id = new.file_id
        ON CONFLICT (offload_id) DO UPDATE SET changes = changes + 1;
END;
CREATE TRIGGER IF NOT EXISTS offload_changes_copy_update AFTER UPDATE OF state, file_id, destination ON copies
    WHEN (old.state = 'verified') IS NOT (new.state = 'verified') OR old.file_id IS NOT new.file_id
        OR old.destination IS NOT new.destination
BEGIN
    INSERT INTO offload_changes (offload_id, changes) SELECT offload_id, 1 FROM files WHERE id = old.file_id
        ON CONFLICT (offload_id) DO UPDATE SET changes = changes + 1;
    INSERT INTO offload_changes (offload_id, changes) SELECT offload_id, 1 FROM files WHERE id = new.file_id
        ON CONFLICT (offload_id) DO UPDATE SET changes = changes + 1;
END;
CREATE TRIGGER IF NOT EXISTS offload_changes_copy_delete AFTER DELETE ON copies
BEGIN
    INSERT INTO offload_changes (offload_id, changes) SELECT offload_id, 1 FROM files WHERE id = old.file_id
        ON CONFLICT (offload_id) DO UPDATE SET changes = changes + 1;
END;
""" + "".join(
    _stamp_trigger(name, event, table)
    for name, event, table in (
        ("file_insert", "INSERT", "files"),
        ("generation", "INSERT", "generations"),
        *((f"readiness_{e.lower()}", e, "offload_readiness") for e in ("INSERT", "UPDATE", "DELETE")),
        *((f"problem_{e.lower()}", e, "source_problems") for e in ("INSERT", "UPDATE", "DELETE")),
    )
)
