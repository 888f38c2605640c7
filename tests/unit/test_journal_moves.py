"""The journal's side of renames and moves, ctimes, and its schema migration."""

import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from triplicate import journal_schema
from triplicate.journal import Journal, SeenFile
from triplicate.known import KnownVersions

H = "0123456789abcdef"
OTHER = "fedcba9876543210"


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "state" / "journal.db")
    yield j
    j.close()


def seen(relpath: str, xxh64: str | None = None, moved_from: str | None = None, ctime_ns: int | None = 5) -> SeenFile:
    return SeenFile("/watch", relpath, 10, 1, xxh64=xxh64, ctime_ns=ctime_ns, moved_from=moved_from)


def verify_all(journal: Journal, destination: str, xxh64: str = H) -> None:
    for copy_id in journal.due_ids(destination, now=1e12, limit=100):
        job = journal.claim_id(copy_id)
        assert job is not None and journal.record_verified(job, xxh64, job.size)


def claim(journal: Journal, destination: str):  # type: ignore[no-untyped-def]
    [copy_id] = journal.due_ids(destination, now=1e12, limit=100)
    return journal.claim_id(copy_id)


def test_a_move_records_where_the_file_came_from(journal: Journal) -> None:
    journal.ingest([seen("A001/clip.mov")], ["nearline", "cloud"])
    verify_all(journal, "nearline")  # the cloud copy is still pending
    [new_id] = journal.ingest([seen("B002/renamed.mov", H, moved_from="A001/clip.mov")], ["nearline", "cloud"])
    rows = {r[0]: r[1:] for r in journal.db.execute("SELECT relpath, current, moved_from, id FROM files")}
    assert rows["A001/clip.mov"][0] == 0, "the old version is no longer the file"
    assert rows["B002/renamed.mov"][:2] == (1, rows["A001/clip.mov"][2])
    near = claim(journal, "nearline")
    assert near.file_id == new_id and near.copy_from == "A001/clip.mov"
    cloud = claim(journal, "cloud")
    assert cloud.file_id == new_id and cloud.copy_from is None, "no verified copy there to copy from"
    assert journal.copy_state_counts() == {"transferring": 2}
    states = dict(journal.db.execute(
        "SELECT c.destination, c.state FROM copies c JOIN files f ON f.id = c.file_id WHERE f.relpath = 'A001/clip.mov'"
    ).fetchall())
    assert states == {"nearline": "verified", "cloud": "superseded"}


def test_a_move_with_other_bytes_is_a_new_file(journal: Journal) -> None:
    journal.ingest([seen("A001/clip.mov")], ["nearline"])
    verify_all(journal, "nearline")
    journal.ingest([seen("A001/other.mov", OTHER, moved_from="A001/clip.mov")], ["nearline"])
    current = {r[0]: r[1] for r in journal.db.execute("SELECT relpath, moved_from FROM files WHERE current = 1")}
    assert current == {"A001/clip.mov": None, "A001/other.mov": None}
    assert claim(journal, "nearline").copy_from is None


def test_the_moved_away_copy_stays_in_its_offload_until_its_key_is_taken(journal: Journal) -> None:
    journal.ingest([seen("A001/clip.mov"), seen("A001/keep.mov")], ["nearline"])
    verify_all(journal, "nearline")
    offload_id = journal.db.execute("SELECT id FROM offloads WHERE name = 'A001'").fetchone()[0]
    journal.ingest([seen("B002/clip.mov", H, moved_from="A001/clip.mov")], ["nearline"])
    listed = [relpath for _, relpath, *_ in journal.offload_state(offload_id, "nearline")]
    assert listed == ["A001/clip.mov", "A001/keep.mov"], "a sealed generation lists it, and it is still there"
    journal.ingest([replace(seen("A001/clip.mov"), size=99)], ["nearline"])  # a new file under the old name
    rows = journal.offload_state(offload_id, "nearline")
    assert [(relpath, size) for _, relpath, size, *_ in rows] == [("A001/clip.mov", 99), ("A001/keep.mov", 10)]


def recorded_ctimes(journal: Journal) -> dict[str, int]:
    """The change times a fresh watcher would read for the watch folder."""
    return dict(KnownVersions(journal.path, "/watch").ctimes)


def test_ctime_is_recorded_and_updated(journal: Journal) -> None:
    journal.ingest([seen("A001/a.mov", ctime_ns=5)], ["nearline"])
    assert recorded_ctimes(journal) == {"A001/a.mov": 5}
    journal.set_ctime("/watch", "A001/a.mov", 7)
    assert recorded_ctimes(journal) == {"A001/a.mov": 7}
    assert journal.current_version("/watch", "A001/a.mov") == (10, None, "A001/a.mov")


V1_FILES = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    offload_id INTEGER NOT NULL REFERENCES offloads(id),
    relpath TEXT NOT NULL,
    disk_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    xxh64 TEXT,
    current INTEGER NOT NULL DEFAULT 1,
    first_seen REAL NOT NULL
);
"""


def _version_1_journal(path: Path) -> None:
    """A journal as version 1 wrote it, holding one verified copy."""
    schema = journal_schema.SCHEMA
    start = schema.index("CREATE TABLE IF NOT EXISTS files (")
    end = schema.index(");", start) + 2
    schema = schema[:start] + V1_FILES + schema[end:]
    schema = "\n".join(line for line in schema.splitlines() if "files_moved_from" not in line)
    schema = schema.replace(journal_schema.STATE_CHECK, journal_schema.STATE_CHECK_BEFORE_4)
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(schema)
    for trigger in ("generation_due_copy_insert", "generation_due_copy_update", "generation_due_file_gone"):
        db.execute(f"DROP TRIGGER {trigger}")  # version 3's
    db.execute("DROP TABLE generation_due")
    db.execute("INSERT INTO offloads (id, watch, name, first_seen) VALUES (1, '/watch', 'A001', 0)")
    db.execute("INSERT INTO files (id, offload_id, relpath, disk_path, size, mtime_ns, xxh64, first_seen) "
               "VALUES (1, 1, 'A001/a.mov', 'A001/a.mov', 10, 1, ?, 0)", (H,))
    db.execute("INSERT INTO copies (file_id, destination, state, updated_at) VALUES (1, 'nearline', 'verified', 0)")
    db.execute("PRAGMA user_version = 1")
    db.close()


def test_a_version_1_journal_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.db"
    _version_1_journal(path)
    j = Journal(path)
    try:
        assert j.db.execute("PRAGMA user_version").fetchone()[0] == journal_schema.SCHEMA_VERSION == 4
        assert _table_sql(j.db, "copies") == _fresh_table_sql(tmp_path, "copies"), "version 4's states check"
        with pytest.raises(sqlite3.IntegrityError):
            j.db.execute("UPDATE copies SET state = 'lost'")
        # complete at nearline, no generation there yet: the start writes it
        assert j.generations_due() == [(1, "nearline", "/watch", "A001")]
        columns = {r[1] for r in j.db.execute("PRAGMA table_info(files)")}
        assert {"ctime_ns", "moved_from"} <= columns
        assert dict(KnownVersions(path, "/watch")) == {"A001/a.mov": (10, 1)}
        assert recorded_ctimes(j) == {}, "version 1 recorded no ctimes"
        assert j.ingest([seen("A001/a.mov", ctime_ns=9)], ["nearline"]) == [], "the same version, not a new one"
        assert recorded_ctimes(j) == {"A001/a.mov": 9}
        j.ingest([seen("B002/a.mov", H, moved_from="A001/a.mov")], ["nearline"])
        assert claim(j, "nearline").copy_from == "A001/a.mov"
    finally:
        j.close()
    again = Journal(path)  # a second open finds it in order
    assert again.db.execute("PRAGMA user_version").fetchone()[0] == 4
    assert again.db.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    again.close()


def _table_sql(db: sqlite3.Connection, table: str) -> str:
    return db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]


def _fresh_table_sql(tmp_path: Path, table: str) -> str:
    fresh = Journal(tmp_path / "fresh" / "journal.db")
    try:
        return _table_sql(fresh.db, table)
    finally:
        fresh.close()


def test_no_check_constraint_holds_an_in_list() -> None:
    """quick_check, run at every start, builds a CHECK's IN list anew for each
    row it reads: on a million copies, 1.6 s of the start."""
    checks = re.findall(r"CHECK \((.*)\)", journal_schema.SCHEMA)
    assert checks and not [c for c in checks if re.search(r"\bIN\s*\(", c, re.IGNORECASE)]


class _Defensive:
    """A connection whose SQLite refuses edits of its schema table, as a
    build in defensive mode does."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.startswith("UPDATE sqlite_master"):
            raise sqlite3.OperationalError("table sqlite_master may not be modified")
        return self.db.execute(sql, *args)


def test_the_states_check_stays_as_it_was_where_sqlite_refuses_the_edit(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.db"
    _version_1_journal(path)
    db = sqlite3.connect(path, isolation_level=None)
    before = db.execute("PRAGMA schema_version").fetchone()[0]
    journal_schema.MIGRATIONS[4][0](_Defensive(db))  # type: ignore[operator]
    assert db.execute("PRAGMA writable_schema").fetchone()[0] == 0
    assert db.execute("PRAGMA schema_version").fetchone()[0] == before
    assert journal_schema.STATE_CHECK_BEFORE_4 in _table_sql(db, "copies")
    db.close()


def test_change_times_are_read_per_offload_with_the_versions(journal: Journal) -> None:
    journal.ingest([seen("A001/a.mov", ctime_ns=5), seen("B002/b.mov", ctime_ns=6)], ["nearline"])
    known = KnownVersions(journal.path, "/watch")
    assert known.ctimes.get("A001/a.mov") == 5
    assert set(known._offloads) == {"A001"}, "only the offload asked about is read"
    known.ctimes["A001/a.mov"] = 8  # the watcher records a new ctime of the same bytes
    assert known.ctimes["A001/a.mov"] == 8 and dict(known.ctimes) == {"A001/a.mov": 8, "B002/b.mov": 6}
