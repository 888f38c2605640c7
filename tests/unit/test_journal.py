from pathlib import Path

import pytest

from triplicate.errors import JournalError
from triplicate.journal import Journal, SeenFile
from triplicate.known import KnownVersions

from tests.sqlite_steps import counting_steps


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "state" / "journal.db")
    yield j
    j.close()


def seen(relpath: str, size: int = 10, mtime_ns: int = 1) -> SeenFile:
    return SeenFile("/watch", relpath, size, mtime_ns)


def test_wal_mode(journal: Journal) -> None:
    assert journal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ingest_creates_one_copy_per_destination(journal: Journal) -> None:
    assert len(journal.ingest([seen("A001/a.mov"), seen("A001/b.mov")], ["nearline", "cloud"])) == 2
    assert journal.copy_state_counts() == {"pending": 4}


def test_same_version_is_not_ingested_twice(journal: Journal) -> None:
    journal.ingest([seen("A001/a.mov")], ["nearline"])
    assert journal.ingest([seen("A001/a.mov")], ["nearline"]) == []
    assert journal.copy_state_counts() == {"pending": 1}


def test_new_version_supersedes_unfinished_copies(journal: Journal) -> None:
    journal.ingest([seen("A001/a.mov", size=10)], ["nearline"])
    journal.ingest([seen("A001/a.mov", size=20)], ["nearline"])
    assert journal.copy_state_counts() == {"pending": 1}
    job = journal.claim_id(journal.due_ids("nearline", now=1e12)[0])
    assert job is not None and job.size == 20


def test_claim_counts_attempt_first_and_crash_recovery_resumes(journal: Journal, tmp_path: Path) -> None:
    journal.ingest([seen("A001/a.mov")], ["nearline"])
    job = journal.claim_id(journal.due_ids("nearline", now=1e12)[0])
    assert job is not None and job.attempts == 1
    assert journal.claim_id(job.copy_id) is None, "a claimed row cannot be claimed twice"
    journal.close()
    reopened = Journal(tmp_path / "state" / "journal.db")  # as after a crash
    assert reopened.recover() == 1
    again = reopened.claim_id(reopened.due_ids("nearline", now=1e12)[0])
    assert again is not None and again.attempts == 2
    reopened.close()


def test_verified_records_hash_once(journal: Journal) -> None:
    journal.ingest([seen("A001/a.mov")], ["nearline", "cloud"])
    a = journal.claim_id(journal.due_ids("nearline", 1e12)[0])
    b = journal.claim_id(journal.due_ids("cloud", 1e12)[0])
    assert a and b
    assert journal.record_verified(a, "1111111111111111", 10)
    assert not journal.record_verified(b, "2222222222222222", 10), "a second read with another hash must not verify"
    assert journal.copy_state_counts() == {"verified": 1, "transferring": 1}


def test_retry_backoff_and_failed(journal: Journal) -> None:
    journal.ingest([seen("A001/a.mov"), seen("A001/b.mov")], ["nearline"])
    ids = journal.due_ids("nearline", 1e12, limit=2)
    a, b = journal.claim_id(ids[0]), journal.claim_id(ids[1])
    assert a and b
    journal.record_retry(a.copy_id, "disk full", "transient", next_attempt_at=2e12)
    journal.record_failed(b.copy_id, "permission denied")
    assert journal.due_ids("nearline", 1e12) == []
    assert journal.next_due("nearline") == 2e12
    assert journal.retry("nearline") == 2
    assert len(journal.due_ids("nearline", 0, limit=5)) == 2


def test_resume_state_round_trip(journal: Journal) -> None:
    journal.ingest([seen("A001/a.mov")], ["s3"])
    copy_id = journal.due_ids("s3", 1e12)[0]
    journal.save_resume(copy_id, {"upload_id": "u1", "parts": [[1, "etag"]]})
    assert journal.load_resume(copy_id) == {"upload_id": "u1", "parts": [[1, "etag"]]}


def test_damaged_journal_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(JournalError) as info:
        Journal(path)
    assert str(path) in str(info.value) and "move it aside" in str(info.value)
    assert path.read_bytes().startswith(b"this is not sqlite"), "a damaged journal is never replaced silently"


def test_recovery_finds_rows_in_flight_by_index(journal: Journal) -> None:
    plan = journal.db.execute(
        "EXPLAIN QUERY PLAN UPDATE copies SET state = 'pending' WHERE state = 'transferring'"
    ).fetchall()
    assert "copies_transferring" in " ".join(str(row[-1]) for row in plan), plan


def test_copies_of_files_in_flight_are_found_without_walking_the_backlog(journal: Journal) -> None:
    # every claim asks this of the files other destinations are copying; a
    # plan through copies_due read every pending copy of the destination
    ids = journal.ingest([seen(f"A001/f{i:05d}.dpx") for i in range(5000)], ["nearline", "cloud"])
    with counting_steps(journal.db, 10) as steps:
        found = journal.due_among("cloud", ids[-16:], now=1e12)
    assert len(found) == 16
    assert steps.count < 200, f"{steps.count * 10} SQLite steps for 16 files among 5000 pending"


def test_known_versions_are_read_per_offload_on_first_question(journal: Journal) -> None:
    journal.ingest([seen("A001/a.mov", 10, 1), seen("A001/sub/b.mov", 20, 2), seen("B002/c.mov", 30, 3),
                    seen("loose.wav", 40, 4)], ["nearline"])
    journal.ingest([seen("A001/a.mov", 11, 5)], ["nearline"])  # a newer version supersedes the first
    journal.ingest([SeenFile("/other", "A001/a.mov", 99, 9)], ["nearline"])  # another watch folder
    known = KnownVersions(journal.path, "/watch")
    assert known.get("A001/a.mov") == (11, 5)
    assert "A001/sub/b.mov" in known and "A001/none.mov" not in known
    assert set(known._offloads) == {"A001"}, "only the offload asked about is read"
    assert known.get("loose.wav") == (40, 4)
    known["B002/d.mov"] = (1, 1)
    assert known.pop("B002/c.mov") == (30, 3) and known.get("B002/c.mov") is None
    assert dict(known) == {"A001/a.mov": (11, 5), "A001/sub/b.mov": (20, 2), "B002/d.mov": (1, 1),
                           "loose.wav": (40, 4)}


def _counted(journal: Journal) -> tuple[dict[int, int], dict[tuple[int, str], int]]:
    files = {r[0]: r[1] for r in journal.db.execute("SELECT offload_id, files FROM offload_files WHERE files != 0")}
    verified = {(r[0], r[1]): r[2] for r in journal.db.execute(
        "SELECT offload_id, destination, files FROM offload_verified WHERE files != 0")}
    return files, verified


def _recounted(journal: Journal) -> tuple[dict[int, int], dict[tuple[int, str], int]]:
    files = {r[0]: r[1] for r in journal.db.execute(
        "SELECT offload_id, COUNT(*) FROM files WHERE current = 1 GROUP BY offload_id")}
    verified = {(r[0], r[1]): r[2] for r in journal.db.execute(
        "SELECT f.offload_id, c.destination, COUNT(*) FROM copies c JOIN files f ON f.id = c.file_id "
        "WHERE c.state = 'verified' AND f.current = 1 GROUP BY f.offload_id, c.destination")}
    return files, verified


def _verify_all(journal: Journal, destination: str, hashes: dict[int, str]) -> None:
    for copy_id in journal.due_ids(destination, 1e12, limit=100):
        job = journal.claim_id(copy_id)
        assert job is not None
        assert journal.record_verified(job, hashes.setdefault(job.file_id, f"{job.file_id:016x}"), job.size)


def test_offload_counts_follow_every_kind_of_write(journal: Journal) -> None:
    hashes: dict[int, str] = {}
    journal.ingest([seen("A001/a.mov"), seen("A001/b.mov"), seen("B002/c.mov")], ["nearline", "cloud"])
    _verify_all(journal, "nearline", hashes)
    a = next(o for o in journal.offload_ids() if journal.offload(o)[1] == "A001")
    assert journal.verified_counts(a) == (2, {"nearline": 2})
    _verify_all(journal, "cloud", hashes)
    journal.ingest([seen("A001/a.mov", size=99), seen("A001/d.mov")], ["nearline", "cloud"])  # a new version, a new file
    assert journal.verified_counts(a) == (3, {"nearline": 1, "cloud": 1})
    [bad] = [c for c, key, _, _ in journal.verified_copies("cloud", "B002")]
    journal.requeue(bad, "read back differs")
    job = journal.claim_id(journal.due_ids("nearline", 1e12)[0])
    assert job is not None
    journal.record_failed(job.copy_id, "permission denied")
    journal.retry("nearline")
    job = journal.claim_id(journal.due_ids("nearline", 1e12)[0])
    assert job is not None
    journal.supersede(job.file_id)
    _verify_all(journal, "cloud", hashes)
    assert _counted(journal) == _recounted(journal)
    assert journal.verified_counts(a)[0] == 2, "a superseded version is no file of the offload"


def test_offload_counts_of_an_older_journal_are_made_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path)
    journal.ingest([seen("A001/a.mov"), seen("A001/b.mov"), seen("C003/e.mov")], ["nearline"])
    _verify_all(journal, "nearline", {})
    expected = _recounted(journal)
    for name in ("offload_files", "offload_verified"):
        journal.db.execute(f"DROP TABLE {name}")  # as a journal written before the counts were kept
    for (trigger,) in journal.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        journal.db.execute(f"DROP TRIGGER {trigger}")
    journal.close()
    reopened = Journal(path)
    assert _counted(reopened) == expected and expected[1]
    reopened.close()


def test_known_versions_as_a_whole_are_read_once(journal: Journal) -> None:
    journal.ingest([seen("A001/a.mov", 10, 1), seen("B002/c.mov", 30, 3)], ["nearline"])
    known = KnownVersions(journal.path, "/watch")
    assert known.get("A001/a.mov") == (10, 1)
    known["A001/a.mov"] = (11, 2)  # handed on since: the journal's row is not read over it
    assert sorted(known.items()) == [("A001/a.mov", (11, 2)), ("B002/c.mov", (30, 3))]
    journal.ingest([seen("C003/d.mov", 40, 4)], ["nearline"])
    assert known.get("C003/d.mov") == (40, 4), "an offload recorded after the whole read is still found"
