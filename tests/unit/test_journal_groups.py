"""Grouped commits: the daemon's per-file writes share transactions; what
another connection sees, what a crash can lose, and what commits at once."""

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest

from triplicate.journal import Journal, SeenFile


class Timers:
    """The event loop's call_later, held by hand."""

    def __init__(self) -> None:
        self.due: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self.due.append((delay, fn))

    def fire(self) -> None:
        due, self.due = self.due, []
        for _, fn in due:
            fn()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def journal(path: Path) -> Journal:
    """A journal whose groups commit only when told to (a timer never fires)."""
    journal = Journal(path)
    journal.group_commits(window=3600, call_later=lambda *_: None)
    return journal


def states_seen_elsewhere(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT state, COUNT(*) FROM copies GROUP BY state").fetchall())
    finally:
        db.close()


def ingest(journal: Journal, n: int) -> None:
    journal.ingest([SeenFile("/watch", f"A001/{i:03d}.dpx", 10, 1) for i in range(n)], ["nearline"])


def test_a_group_is_seen_by_others_once_its_timer_commits_it(path: Path) -> None:
    journal, timers = Journal(path), Timers()
    journal.group_commits(window=3600, call_later=timers.call_later)
    ingest(journal, 3)
    job = journal.claim_id(journal.due_ids("nearline", 1e12)[0])
    assert job is not None and journal.record_verified(job, "00000000000000aa", 10)
    assert journal.copy_state_counts() == {"verified": 1, "pending": 2}, "the writer reads its own group"
    assert states_seen_elsewhere(path) == {}, "nothing committed yet"
    assert [delay for delay, _ in timers.due] == [3600], "one timer per group"
    timers.fire()
    assert states_seen_elsewhere(path) == {"verified": 1, "pending": 2}
    journal.close()


def test_a_group_older_than_its_window_commits_with_its_next_write(path: Path) -> None:
    journal = Journal(path)
    journal.group_commits(window=0.0001)  # no timer: the age rule alone
    ingest(journal, 1)
    assert states_seen_elsewhere(path) == {"pending": 1}, "a write closing an old group commits it"
    journal.close()


def test_a_write_that_must_last_commits_the_group_with_it(path: Path, journal: Journal) -> None:
    ingest(journal, 2)
    job = journal.claim_id(journal.due_ids("nearline", 1e12)[0])
    assert job is not None
    assert states_seen_elsewhere(path) == {}
    journal.save_resume(job.copy_id, {"upload_id": "u1"})  # an upload begun at the destination
    assert states_seen_elsewhere(path) == {"transferring": 1, "pending": 1}
    journal.close()


def test_a_failed_write_rolls_back_alone(path: Path, journal: Journal) -> None:
    ingest(journal, 1)
    with pytest.raises(RuntimeError):
        with journal._tx(grouped=True):
            journal.db.execute("UPDATE copies SET state = 'failed'")
            raise RuntimeError("midway")
    journal.commit()
    assert states_seen_elsewhere(path) == {"pending": 1}, "the ingest stays, the failed write is gone"
    journal.close()


def test_a_failed_write_of_one_statement_leaves_nothing_of_itself_and_the_group_goes_on(
    path: Path, journal: Journal
) -> None:
    """The claim and the verified mark skip the savepoint: SQLite itself undoes
    a statement that fails, rows it had already changed included."""
    ingest(journal, 3)
    with pytest.raises(sqlite3.IntegrityError):
        with journal._tx(grouped=True, one_write=True):
            # row by row, the first rows pass before the third breaks the CHECK
            journal.db.execute("UPDATE copies SET state = CASE WHEN id < 3 THEN 'verified' ELSE 'lost' END")
    assert journal.db.in_transaction, "the group is still open"
    job = journal.claim_id(journal.due_ids("nearline", 1e12)[0])
    assert job is not None and job.attempts == 1
    journal.commit()
    assert states_seen_elsewhere(path) == {"pending": 2, "transferring": 1}
    journal.close()


def test_a_read_apart_sees_every_write_made_before_it(journal: Journal) -> None:
    ingest(journal, 4)

    def count(view: Journal) -> int:
        return int(view.db.execute("SELECT COUNT(*) FROM copies").fetchone()[0])

    assert asyncio.run(journal.read_apart(count)) == 4
    journal.close()


def test_closing_commits_the_open_group(path: Path, journal: Journal) -> None:
    ingest(journal, 2)
    journal.close()
    assert states_seen_elsewhere(path) == {"pending": 2}


def test_a_crash_loses_only_the_open_group_and_never_claims_a_copy_verified(path: Path) -> None:
    """A process dying with a group open: what it committed stays, what the
    group held is gone, and what is left is work to do again — never a copy
    said verified that was not."""
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from triplicate.journal import Journal, SeenFile
        journal = Journal(Path({str(path)!r}))
        journal.group_commits(window=3600, call_later=lambda *_: None)
        journal.ingest([SeenFile("/watch", f"A001/{{i}}.dpx", 10, 1) for i in range(3)], ["nearline"])
        job = journal.claim_id(journal.due_ids("nearline", 1e12)[0])
        journal.record_verified(job, "00000000000000aa", 10)
        journal.commit()
        for copy_id in journal.due_ids("nearline", 1e12, limit=2):
            job = journal.claim_id(copy_id)
            journal.record_verified(job, "00000000000000bb", 10)
        os._exit(0)  # no close, no commit: as a crash
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    journal = Journal(path)
    assert journal.recover() == 0
    assert journal.copy_state_counts() == {"verified": 1, "pending": 2}
    hashes = {r[0] for r in journal.db.execute("SELECT xxh64 FROM files WHERE xxh64 IS NOT NULL")}
    assert hashes == {"00000000000000aa"}
    journal.close()
